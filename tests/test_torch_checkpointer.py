"""scar.torch: the drop-in checkpointer over an nn.Module and its optimizer."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from scar.checkpoint.stores import DirectoryStore, InMemoryStore
from scar.torch import SCALARS, PersistError, TorchCheckpointer


def _mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _train(model, opt, ck, steps: int, start: int = 0) -> None:
    """``steps`` optimizer steps on batches drawn from the step number (a rerun sees the same)."""
    for t in range(start + 1, start + steps + 1):
        g = torch.Generator().manual_seed(t)
        x = torch.randn(32, 6, generator=g)
        y = torch.randint(0, 3, (32,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if ck is not None:
            ck.step()


def _records(path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.glob("ckpt-*.rec"))}


def _live(ck: TorchCheckpointer) -> dict[str, np.ndarray]:
    return {n: np.array(a, copy=True) for n, a in ck.model.arrays().items()}


def test_partial_recover_restores_exactly_the_lost_rows(tmp_path):
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ck = TorchCheckpointer(model, opt, DirectoryStore(tmp_path), interval=8, fraction=0.25, n_nodes=4)
    _train(model, opt, ck, 13)
    ck.wait()
    saved = DirectoryStore(tmp_path).read().values
    before = _live(ck)
    rows = ck.rows_on([1, 3])
    with torch.no_grad():  # the lost nodes' rows are garbage
        for name, p in model.named_parameters():
            p.view(len(p) if p.dim() > 1 else 1, -1)[rows[name]] = float("nan")
            for key in ("exp_avg", "exp_avg_sq"):
                opt.state[p][key].view(len(p) if p.dim() > 1 else 1, -1)[rows[name]] = float("nan")
    assert ck.recover([1, 3]) == 13
    after = _live(ck)
    for name in before:
        lost = np.zeros(before[name].shape[0], dtype=bool)
        if name != SCALARS:
            lost[rows[name.split("@")[0]]] = True
        np.testing.assert_array_equal(after[name][lost], saved[name][lost])  # from the checkpoint
        np.testing.assert_array_equal(after[name][~lost], before[name][~lost])  # survivors untouched
    assert any(r.size for r in rows.values()) and not np.array_equal(saved["0.weight"], before["0.weight"])
    ck.close()


def test_full_recover_restores_everything_and_restarts_at_the_last_save():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ck = TorchCheckpointer(model, opt, policy="full", interval=5, background=False)
    _train(model, opt, ck, 7)
    image = {n: a.copy() for n, a in ck.checkpointer.image.values.items()}
    assert ck.recover([0], mode="full") == 5
    after = _live(ck)
    for name in image:
        np.testing.assert_array_equal(after[name], image[name])
    assert float(opt.state[model[0].weight]["step"]) == 5.0  # the scalar state rolled back too
    _train(model, opt, ck, 2, start=5)  # the rerun continues the checkpointer's count
    assert ck.iteration == 7


def test_optimizer_rows_ride_with_their_parameter_rows_within_the_budget():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    store = InMemoryStore()
    ck = TorchCheckpointer(model, opt, store, interval=8, fraction=0.25, background=False)
    full = store.bytes_written
    _train(model, opt, ck, 2)
    image = ck.checkpointer.image
    for name in ck.model.param_names:
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(image.saved_at[f"{name}@{key}"], image.saved_at[name])
    scalars = image.values[SCALARS].nbytes
    assert store.bytes_written - full - scalars <= 0.25 * (full - scalars)
    assert (image.saved_at[SCALARS] == 2).all()  # saved with every save


def test_state_before_the_first_step_is_zero_and_sgd_momentum_is_row_aligned():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ck = TorchCheckpointer(model, opt, interval=4, fraction=0.25, background=False)
    assert ck.model.groups()["0.weight"] == ("0.weight@momentum_buffer",)
    assert SCALARS not in ck.checkpointer.image.values  # SGD keeps no scalar state
    assert not ck.checkpointer.image.values["0.weight@momentum_buffer"].any()
    _train(model, opt, ck, 4)
    assert ck.checkpointer.image.values["0.weight@momentum_buffer"].any()


def test_state_dict_round_trip_resumes_with_identical_records(tmp_path):
    def run(path, split):
        model = _mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        ck = TorchCheckpointer(model, opt, DirectoryStore(path, keep_history=True), interval=8, fraction=0.25)
        _train(model, opt, ck, 11 if split else 20)
        if not split:
            ck.close()
            return
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "scar": ck.state_dict()}, buf)
        ck.close()
        buf.seek(0)
        saved = torch.load(buf, weights_only=False)
        model = _mlp(seed=1)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        ck = TorchCheckpointer(model, opt, DirectoryStore(path, keep_history=True), interval=8, fraction=0.25, resume=True)
        ck.load_state_dict(saved["scar"])
        assert ck.iteration == 11
        _train(model, opt, ck, 9, start=11)
        ck.close()

    run(tmp_path / "a", split=False)
    run(tmp_path / "b", split=True)
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert len(a) == 11 and a == b


def test_torch_distributed_checkpoint_saves_and_loads_it_as_stateful(tmp_path):
    import warnings

    import torch.distributed.checkpoint as dcp

    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with TorchCheckpointer(model, opt, DirectoryStore(tmp_path / "s"), interval=8, fraction=0.25) as ck:
        _train(model, opt, ck, 5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no process group: DCP says it runs single-process
            dcp.save({"scar": ck}, checkpoint_id=tmp_path / "dcp")
    ck = TorchCheckpointer(model, opt, DirectoryStore(tmp_path / "s"), interval=8, fraction=0.25, resume=True)
    assert ck.iteration == 4  # the store's newest record
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load({"scar": ck}, checkpoint_id=tmp_path / "dcp")
    assert ck.iteration == 5 and ck.last_save == 4
    _train(model, opt, ck, 1, start=5)
    assert ck.last_save == 6
    ck.close()


def test_attach_steps_after_every_optimizer_step():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ck = TorchCheckpointer(model, opt, interval=4, fraction=0.5, background=False)
    ck.attach()
    _train(model, opt, None, 5)
    assert ck.iteration == 5 and ck.last_save == 4
    ck.detach()
    _train(model, opt, None, 1)
    assert ck.iteration == 5


def test_background_persist_matches_synchronous_writes_byte_for_byte(tmp_path):
    for name, background in (("sync", False), ("async", True)):
        model = _mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        with TorchCheckpointer(
            model, opt, DirectoryStore(tmp_path / name, keep_history=True), interval=8, fraction=0.25, background=background
        ) as ck:
            _train(model, opt, ck, 17)
    sync, background = _records(tmp_path / "sync"), _records(tmp_path / "async")
    assert len(sync) == 9 and sync == background


class _FailingStore(DirectoryStore):
    """Dies in the middle of its ``fail_at``-th record (its temp file half written)."""

    def __init__(self, path, fail_at):
        super().__init__(path)
        self.fail_at, self.n = fail_at, 0

    def _write_atomically(self, name, header, chunks):
        self.n += 1
        if self.n == self.fail_at:
            (self.path / f".tmp-{name}.part").write_bytes(b"half a record")
            raise OSError("disk gone")
        return super()._write_atomically(name, header, chunks)


def test_a_failed_background_persist_leaves_the_previous_checkpoint_and_is_raised(tmp_path):
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ck = TorchCheckpointer(model, opt, _FailingStore(tmp_path, fail_at=3), interval=8, fraction=0.25)
    _train(model, opt, ck, 3)  # saves at 0, 2; the third record (iteration 4) will fail
    ck.wait()
    before = DirectoryStore(tmp_path).read()
    with pytest.raises(PersistError, match="iteration 4"):
        _train(model, opt, ck, 2, start=3)
        ck.wait()
    after = DirectoryStore(tmp_path).read()  # the previous checkpoint, intact
    for name in before.values:
        np.testing.assert_array_equal(after.values[name], before.values[name])
    assert ck.checkpointer.last_save == 2  # continued from the store's newest record
    _train(model, opt, ck, 2, start=ck.iteration)
    ck.close()
    assert DirectoryStore(tmp_path).last_record().iteration == 6


def test_a_failed_recover_leaves_module_and_optimizer_unchanged(monkeypatch):
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ck = TorchCheckpointer(model, opt, policy="full", interval=4, background=False)
    _train(model, opt, ck, 6)
    before = _live(ck)

    def interrupted(values):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.model, "write_scalars", interrupted)  # the last write of a full recovery
    with pytest.raises(KeyboardInterrupt):
        ck.recover([0], mode="full")
    after = _live(ck)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    assert ck.iteration == 6


def test_frequency_saves_the_embedding_rows_looked_up():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(40, 4)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    ck = TorchCheckpointer(emb, opt, policy="frequency", interval=4, fraction=0.25, n_nodes=4, background=False)
    hot = torch.tensor([3, 7, 7, 11, 20, 33, 35, 39, 1, 2, 5])
    for _ in range(4):
        opt.zero_grad()
        emb(hot).sum().backward()
        opt.step()
        ck.step()
    saved = np.flatnonzero(ck.checkpointer.image.saved_at["weight"] == 4)
    np.testing.assert_array_equal(saved, np.unique(hot.numpy()))  # budget 10 rows: exactly those looked up
    # An explicit report overrides the hooks.
    for _ in range(4):
        opt.step()
        ck.step(touched={"weight": np.arange(30, 40)})
    np.testing.assert_array_equal(np.flatnonzero(ck.checkpointer.image.saved_at["weight"] == 8), np.arange(30, 40))


def test_bad_input_is_named(tmp_path):
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with pytest.raises(ValueError, match="not a parameter of module"):
        TorchCheckpointer(model, torch.optim.Adam(_mlp().parameters()))
    ck = TorchCheckpointer(model, opt, DirectoryStore(tmp_path / "a"), interval=8, fraction=0.25, n_nodes=4)
    with pytest.raises(ValueError, match=r"lost node 4 out of range.*4 nodes"):
        ck.recover([4])
    with pytest.raises(ValueError, match="unknown recovery policy"):
        ck.recover([0], mode="everything")
    ck.close()
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        TorchCheckpointer(model, opt, DirectoryStore(tmp_path / "a"), interval=8, fraction=0.25, n_nodes=4)
    other = torch.nn.Sequential(torch.nn.Linear(6, 17), torch.nn.Tanh(), torch.nn.Linear(17, 3))
    with pytest.raises(ValueError, match=r"another model: array '0.weight' is \(16, 6\) float32 there, \(17, 6\)"):
        TorchCheckpointer(other, torch.optim.Adam(other.parameters()), DirectoryStore(tmp_path / "a"), resume=True)
    with pytest.raises(ValueError, match="budget"):
        TorchCheckpointer(model, opt, interval=100, fraction=0.01)
    ck = TorchCheckpointer(model, opt, interval=8, fraction=0.25, background=False)
    model[0].weight = torch.nn.Parameter(torch.zeros(16, 7))
    with pytest.raises(ValueError, match=r"parameter '0.weight' is now \(16, 7\)"):
        ck.step()
    with pytest.raises(ValueError, match="'0.weight' is now"):
        ck.recover([0])


@pytest.mark.slow
def test_the_example_loop_recovers_partially_and_rolls_back_exactly(capsys):
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("torch_training", REPO / "examples" / "torch_training.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(["--fail-at", "50", "--interval", "20", "--target-step", "120", "--cap", "600"])
    assert all(r["reached"] for r in results.values())
    assert results["traditional (full, rollback)"]["extra"] == 50 - 40  # reran the steps since its last save, exactly
    assert results["SCAR (priority r=1/4, partial)"]["lost_rows"] > 0
    assert "extra" in capsys.readouterr().out


def test_optimizer_state_keys_come_from_a_probe_and_unknown_state_is_refused():
    model = torch.nn.Linear(8, 8)
    opt = torch.optim.Adam(model.parameters(), amsgrad=True)
    ck = TorchCheckpointer(model, opt, interval=4, fraction=0.5, n_nodes=2, background=False)
    assert ck.model.groups()["weight"] == ("weight@exp_avg", "weight@exp_avg_sq", "weight@max_exp_avg_sq")
    assert ck.model.describe()["scalars"] == ["weight@step", "bias@step"]
    opt = torch.optim.Adafactor(model.parameters())  # a factored second moment for 2-D parameters
    ck = TorchCheckpointer(model, opt, interval=4, fraction=0.5, n_nodes=2, background=False)
    model(torch.ones(1, 8)).sum().backward()
    opt.step()
    with pytest.raises(ValueError, match=r"Adafactor keeps state \['col_var', 'row_var'\] for parameter 'weight'"):
        ck.step()
