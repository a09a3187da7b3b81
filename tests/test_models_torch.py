"""The torch models (cnn, ncf): common random numbers, bit-for-bit recovery, declared shapes,
the rows the recommender reports and the frequency policy on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from conftest import greedy_fill
from scar.checkpoint.strategy import get_strategy
from scar.datasets import Dataset, declared_dims
from scar.measure.engine import InProcessEngine, iteration_rng
from scar.measure.trajectory import Baseline, run_baseline
from scar.measure.trials import TrialSettings, TrialSpec, run_trial
from scar.models import make_model

CNN = {"batch_size": 20, "batches_per_iteration": 2, "channels": [2, 4], "hidden": 8, "learning_rate": 0.1}
NCF = {"dim": 8, "hidden": 8, "batch_size": 200, "batches_per_iteration": 3, "learning_rate": 0.02}


def _images(n=80, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    X = rng.random((n, 28, 28)) * 0.3
    for c in range(10):  # a bright patch per class, where the class says
        X[y == c, 4 + 2 * c : 8 + 2 * c, 4 + 2 * c : 8 + 2 * c] = 1.0
    X = X.reshape(n, 784)
    return Dataset("mnist", {"X": X, "y": y}, "synthetic", "test images")


def _ratings(n_users=60, n_items=90, n=2000, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, n_users, n)
    item = (rng.random(n) ** 2 * n_items).astype(np.int64)  # some items far more popular, as in real ratings
    rating = np.clip(np.round(3 + rng.standard_normal(n)), 1, 5)
    shape = np.array([n_users, n_items])
    return Dataset("movielens", {"user": user, "item": item, "rating": rating, "shape": shape}, "synthetic", "test ratings")


@pytest.fixture(scope="module", params=["cnn", "ncf"])
def torch_run(request):
    name = request.param
    model = make_model(name, CNN if name == "cnn" else NCF)
    data = model.prepare(_images() if name == "cnn" else _ratings())
    with threadpool_limits(1):
        baseline = run_baseline(model, data, seed=3, max_iters=10, tol=0.1, n_boot=20)
    return model, data, baseline


def test_same_seed_same_trajectory_bit_for_bit(torch_run):
    model, data, baseline = torch_run
    with threadpool_limits(1):
        again = run_baseline(model, data, seed=3, max_iters=10, tol=0.1, n_boot=20)
    assert np.array_equal(baseline.losses, again.losses)
    for n, a in baseline.snapshots.items():
        assert np.array_equal(a, again.snapshots[n]), n
    other = run_baseline(model, data, seed=4, max_iters=10, tol=0.1, n_boot=20)
    assert not np.array_equal(baseline.losses, other.losses)


def test_recovered_identical_state_reproduces_the_baseline(torch_run):
    """Kill half the rows at T, restore them from an image equal to x_T: the run continues as
    the baseline did, bit for bit (common random numbers, deterministic kernels)."""
    model, data, baseline = torch_run
    T = baseline.k_base // 2
    engine = InProcessEngine(model, data, baseline.seed)
    engine.load(baseline.state_at(T), T)
    lost = {n: np.arange(a.shape[0]) % 2 == 0 for n, a in engine.server_state().items()}
    image = {n: np.array(a) for n, a in baseline.server_state_at(T).items()}
    engine.kill(lost)
    engine.restore("partial", image, lost)
    with threadpool_limits(1):
        for k in range(T + 1, baseline.k_base + 1):
            engine.step()
            assert engine.objective() == baseline.losses[k]
            assert engine.same_state_as(baseline.state_at(k)), k


def test_declared_shapes_match_the_state():
    for name, params, dataset in (("cnn", CNN, "mnist"), ("ncf", NCF, "movielens")):
        model = make_model(name, params)
        dims = declared_dims(dataset, "embedded", {})
        shapes = model.server_shapes(dims)
        if name == "cnn":
            data = model.prepare(_images())
        else:
            data = model.prepare(_ratings(dims["n_users"], dims["n_items"]))
        state = model.init_state(data, 0)
        assert shapes == {n: state[n].shape for n in model.server_params}


def test_cnn_rows_hold_their_momentum():
    """A server row is [weights | bias | their momentum]: after steps the momentum half is the
    heavy-ball buffer, and a recovery that restores the row restores its momentum."""
    model = make_model("cnn", CNN)
    data = model.prepare(_images())
    state = model.init_state(data, 0)
    before = {n: state[n].copy() for n in model.server_params}
    model.step(state, data, iteration_rng(0, 1))
    for n in model.server_params:
        half = state[n].shape[1] // 2
        assert not np.any(before[n][:, half:]), "momentum starts at zero"
        moved = before[n][:, :half] - state[n][:, :half]
        assert np.any(state[n][:, half:]) and np.any(moved)
    # No weight decay on the bias: with l2 = 0 and one minibatch, w moves by lr * m exactly.
    one = make_model("cnn", {**CNN, "batches_per_iteration": 1, "l2": 0.0})
    s0 = one.init_state(data, 0)
    s1 = {n: a.copy() for n, a in s0.items()}
    one.step(s1, data, iteration_rng(0, 1))
    for n in one.server_params:
        half = s1[n].shape[1] // 2
        np.testing.assert_allclose(
            s0[n][:, :half] - s1[n][:, :half], CNN["learning_rate"] * s1[n][:, half:], rtol=1e-5, atol=1e-7
        )


def test_recommender_reports_the_rows_it_looks_up():
    model = make_model("ncf", NCF)
    data = model.prepare(_ratings())
    state = model.init_state(data, 0)
    before = {n: state[n].copy() for n in model.server_params}
    touched = model.touched_rows(data, iteration_rng(0, 5))
    model.step(state, data, iteration_rng(0, 5))
    for n in ("user_emb", "item_emb"):
        changed = np.flatnonzero(np.any(state[n] != before[n], axis=1))
        assert np.array_equal(changed, np.unique(touched[n])), n
    assert touched["user_emb"].size == NCF["batch_size"] * NCF["batches_per_iteration"]
    # The MLP is read once per minibatch.
    assert np.array_equal(np.bincount(touched["mlp1"]), np.full(NCF["hidden"], NCF["batches_per_iteration"]))


def test_baseline_records_access_counts_and_keeps_them(tmp_path, torch_run):
    model, data, baseline = torch_run
    if model.name == "cnn":
        assert baseline.touched == {} and baseline.touched_at(1) is None  # dense: every row
        return
    k = 2
    expected = model.touched_rows(data, iteration_rng(baseline.seed, k))
    for n in model.server_params:
        assert baseline.touched[n].shape == (baseline.k_base + 1, baseline.snapshots[n].shape[1])
        assert not baseline.touched[n][0].any()
        assert np.array_equal(np.sort(baseline.touched_at(k)[n]), np.sort(expected[n]))
    baseline.save(tmp_path / "b.npz")
    loaded = Baseline.load(tmp_path / "b.npz")
    assert all(np.array_equal(loaded.touched[n], baseline.touched[n]) for n in model.server_params)


def test_frequency_partial_through_run_trial(torch_run):
    """frequency_partial is measured on the recommender (finite rework, the same bytes per save
    budget as the other fractional strategies) and skipped on the dense CNN."""
    model, data, baseline = torch_run
    names = ["frequency_partial", "round_robin_partial", "scar"]
    settings = TrialSettings.from_names(names, [0.25], interval=4, n_nodes=4)
    with threadpool_limits(1):
        rows = run_trial(model, data, baseline, TrialSpec(0, 0.6, 0.5, 1), settings)
    by = {r["strategy"]: r for r in rows}
    if model.name == "cnn":
        assert "frequency_partial" not in by and set(by) == {"round_robin_partial", "scar"}
        return
    f = by["frequency_partial"]
    assert np.isfinite(f["rework_fractional"]) and f["lost_blocks"] > 0 and f["perturbation_norm"] > 0
    assert f["checkpoint_bytes"] == pytest.approx(by["round_robin_partial"]["checkpoint_bytes"], rel=0.1)
    assert get_strategy("frequency_partial").checkpoint == "frequency"


def test_frequency_policy_saves_the_most_accessed_rows(torch_run):
    """Replayed with the recorded accesses, the frequency policy's first partial save takes the
    rows looked up most often since the start."""
    from scar.checkpoint.checkpointer import replay
    from scar.core.blocks import BlockLayout

    model, _, baseline = torch_run
    if model.name == "cnn":
        return
    C = 4
    policy = get_strategy("frequency_partial").with_r(0.25).policy(C)
    ckpt = replay(policy, baseline.server_state_at, 2, touched_at=baseline.touched_at)  # the save after iteration 1
    layout = BlockLayout.from_arrays(baseline.server_state_at(0))
    counts = np.concatenate([baseline.touched[n][1] for n in layout.names])
    saved = np.concatenate([ckpt.image.saved_at[n] for n in layout.names]) == 1
    # Most accessed first (all were saved at 0: ties by id), filling the budget as the rule says.
    expected = greedy_fill(np.argsort(-counts, kind="stable"), layout.block_sizes, policy.budget(layout))
    assert saved.any() and np.array_equal(saved, expected)
    assert counts[saved].mean() > counts[~saved].mean()


def test_torch_threads_follow_threadpool_limits():
    with threadpool_limits(1):
        assert torch.get_num_threads() == 1


def test_planner_replays_and_simulates_with_the_accesses(torch_run):
    """The planner's replay of frequency_partial uses the recorded accesses (without them it is
    a round robin by age, another image), and a simulated run under failures counts them live."""
    from scar.planner.plan import PlanInputs, TrajectoryMovement
    from scar.planner.simulation import simulate_run

    model, data, b = torch_run
    if model.name == "cnn":
        return
    snaps = {n: b.snapshots[n] for n in b.server_params}
    freq = get_strategy("frequency_partial").with_r(0.25)
    with_counts = TrajectoryMovement(snaps, seed=b.seed, touched_at=b.touched_at).delta_squared(freq, 4, 0.5)[0]
    dense = TrajectoryMovement(snaps, seed=b.seed).delta_squared(freq, 4, 0.5)[0]
    assert np.all(np.isfinite(with_counts)) and not np.array_equal(with_counts, dense)
    inputs = PlanInputs(
        model_bytes=float(sum(a[0].nbytes for a in snaps.values())), write_seconds_per_byte=0.0, seconds_per_iteration=1.0,
        mtbf_iterations=3.0, failure_fraction=0.25, c=0.9, initial_distance=1.0, run_iterations=b.k_base,
    )  # fmt: skip
    with threadpool_limits(1):
        run = simulate_run(model, data, b, freq, 4, inputs, TrialSettings(n_nodes=4), replicate=1)
    assert run.n_failures > 0 and run.iterations >= b.k_base and run.checkpoint_bytes > 0
