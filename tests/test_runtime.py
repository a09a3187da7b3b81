"""Tests of the live runtime (scar.runtime): shard processes killed by SIGKILL, recovered by Ray
and SCAR, against the simulation of the same failure.

One Ray instance for the module (``num_cpus=2``, no dashboard): its start costs ~5 s and ~1 GB.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the live runtime needs ray (pip install -e '.[test]' installs it)")

from scar.checkpoint.strategy import get_strategy  # noqa: E402
from scar.core.blocks import BlockLayout  # noqa: E402
from scar.datasets import load_dataset  # noqa: E402
from scar.measure.trajectory import run_baseline  # noqa: E402
from scar.measure.trials import TrialSettings, TrialSpec, trial_failure  # noqa: E402
from scar.models import make_model  # noqa: E402
from scar.runtime.engine import LiveEngine, ShardsDown  # noqa: E402
from scar.runtime.faults import process_gone  # noqa: E402
from scar.runtime.live import live_trial  # noqa: E402
from scar.runtime.placement import ShardMap  # noqa: E402

N_NODES = 4


@pytest.fixture(scope="module")
def ray_session():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def mlr():
    model = make_model("mlr", {"learning_rate": 0.1, "batch_size": 50, "l2": 1e-3})
    data = model.prepare(load_dataset("mnist", "embedded", max_samples=600))
    baseline = run_baseline(model, data, seed=0, max_iters=30, tol=0.02)
    return model, data, baseline


@pytest.fixture(scope="module")
def engine(ray_session, mlr, tmp_path_factory):
    model, data, baseline = mlr
    eng = LiveEngine(model, data, baseline.seed, baseline.state_at(0), n_nodes=N_NODES, home=tmp_path_factory.mktemp("live"))
    yield eng
    eng.close()


def test_a_process_reaped_while_its_stat_is_read_is_gone(monkeypatch) -> None:
    import os

    import scar.runtime.faults as faults

    class Reaped:  # /proc/<pid>/stat opened, then the process reaped: the read fails with ESRCH
        def __init__(self, *_):
            pass

        def read_text(self):
            raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(faults, "Path", Reaped)
    assert faults.process_gone(os.getpid())


def test_shard_map_partitions_every_row() -> None:
    layout = BlockLayout(("a", "b"), (10, 3), (2, 5))
    m = ShardMap.build(layout, 4, "hashed", seed=3)
    for n, rows in zip(layout.names, layout.n_rows):
        got = np.sort(np.concatenate([m.rows[j][n] for j in range(4)]))
        assert np.array_equal(got, np.arange(rows))
    idx = {"a": np.array([0, 5, 9]), "b": np.array([1])}
    for j in range(4):
        local = m.local_rows(j, idx)
        for n in idx:
            assert np.array_equal(m.rows[j][n][local[n]], np.intersect1d(idx[n], m.rows[j][n]))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["scar", "traditional"])
def test_killed_shard_is_gone_and_the_run_recovers_as_simulated(engine, mlr, strategy) -> None:
    model, data, baseline = mlr
    settings = TrialSettings.from_names([strategy], (0.25,), interval=4, n_nodes=N_NODES)
    spec = TrialSpec(trial=0, position=0.6, fraction=0.25, seed=7)
    row = live_trial(engine, model, data, baseline, spec, settings, settings.strategies[0], dataset="mnist", run=f"t-{strategy}")
    assert row["reproduced_baseline"], "the live run before the failure is not the in-process baseline"
    assert row["process_gone"] and row["restored_exact"] and row["survivors_kept"]
    # Identical arithmetic: the live rework is the simulated one, exactly.
    assert row["live_rework"] == row["simulated_rework"]
    assert row["live_rework_fractional"] == row["simulated_rework_fractional"]
    failure, _, _ = trial_failure(baseline, spec, settings)
    if strategy == "traditional":
        assert row["restored_to"] == (failure.iteration - 1) // 4 * 4  # the last full save before T
    else:
        assert row["restored_to"] == failure.iteration


@pytest.mark.slow
def test_a_step_on_a_dead_shard_reports_it_and_partial_recovery_keeps_survivors(engine, mlr) -> None:
    model, data, baseline = mlr
    engine.load(baseline.state_at(0), 0)
    engine.begin(get_strategy("scar").with_r(0.25), get_strategy("scar").with_r(0.25).policy(4), "dead-step")
    for _ in range(5):
        engine.step()
    before = engine.server_state()
    image = {n: a.copy() for n, a in engine.checkpointer.image.values.items()}
    pid = engine.pids[1]
    engine.kill_nodes((1,))
    assert process_gone(pid)
    with pytest.raises(ShardsDown) as err:
        engine.step()
    assert err.value.nodes == (1,) and not err.value.completed and engine.iteration == 5
    rec = engine.recover()
    assert rec.nodes == (1,) and engine.pids[1] != pid and os.getpid() != engine.pids[1]
    after = engine.server_state()
    lost = engine.map.row_masks_of((1,))
    assert np.array_equal(after["W"][lost["W"]], image["W"][lost["W"]])
    assert np.array_equal(after["W"][~lost["W"]], before["W"][~lost["W"]])
    engine.step()  # the run goes on
    assert engine.iteration == 6


@pytest.mark.slow
def test_stage_writes_live_vs_simulated(ray_session, mlr, tmp_path) -> None:
    from scar.checkpoint.strategy import resolve_strategies
    from scar.stages.config import Experiment
    from scar.stages.runtime import RuntimeSettings, live_vs_simulated

    model, _, baseline = mlr
    load_dataset("mnist", "embedded", max_samples=600).save(tmp_path / "mnist.npz")
    baseline.save(tmp_path / "baseline.npz")
    exp = Experiment("mlr", "mnist", model.get_params(), 30, 0.02)
    settings = RuntimeSettings(experiments=("mlr/mnist",), strategies=("scar",), n_failures=1, n_nodes=N_NODES)
    table = live_vs_simulated(
        [{"experiment": exp, "dataset": tmp_path / "mnist.npz", "baseline": tmp_path / "baseline.npz"}],
        settings, TrialSettings(interval=4), resolve_strategies(["scar"], [0.25], 4), tmp_path / "live.csv",
        window=(0.1, 0.9), seed=0,
    )  # fmt: skip
    assert len(table) == 1 and (tmp_path / "live.csv").exists()
    row = table.iloc[0]
    assert row["live_rework"] == row["simulated_rework"] and row["restored_exact"] and row["survivors_kept"]
    assert ray.is_initialized(), "the stage shut down a Ray instance it did not start"


@pytest.mark.slow
def test_data_parallel_mlr_is_deterministic_and_recovers(ray_session, mlr, tmp_path) -> None:
    model, data, _ = mlr
    x0 = model.init_state(data, 0)
    eng = LiveEngine(model, data, 0, x0, n_nodes=N_NODES, home=tmp_path, mode="data_parallel", n_workers=2, worker_cpus=0)
    try:
        # The baseline of the data-parallel run, recorded on the engine itself (no checkpoints).
        base = run_baseline(model, data, seed=0, max_iters=15, tol=0.05, engine=eng)
        assert base.losses[base.k_base] < base.losses[0]
        settings = TrialSettings.from_names(["scar", "traditional"], (0.25,), interval=4, n_nodes=N_NODES)
        spec = TrialSpec(trial=0, position=0.6, fraction=0.25, seed=7)
        for strategy in settings.strategies:
            row = live_trial(eng, model, data, base, spec, settings, strategy, run=f"dp-{strategy.name}", simulate=False)
            # The pushes of an iteration are summed in worker order: a rerun is the same bits.
            assert row["reproduced_baseline"]
            assert row["process_gone"] and row["restored_exact"] and row["survivors_kept"]
            assert np.isfinite(row["live_rework"]) and np.isnan(row["simulated_rework"])
    finally:
        eng.close()


@pytest.mark.slow
def test_soak_under_the_punisher_reaches_the_target(engine, mlr) -> None:
    from scar.runtime.soak import soak

    model, data, baseline = mlr
    strategy = get_strategy("scar").with_r(0.25)
    result = soak(
        engine, baseline.state_at(0), strategy, interval=4, target=baseline.target, max_iters=3 * baseline.k_base,
        mtbf=0.5, seed=1, run="soak",
    )  # fmt: skip
    assert result.kills >= 1, "the punisher killed nothing: lengthen the run or shorten the mtbf"
    assert len(result.recoveries) >= 1 and result.reached is not None
    assert result.final_objective <= baseline.target


@pytest.mark.slow
def test_data_parallel_als_is_the_in_process_run_and_recovers_as_simulated(ray_session, tmp_path) -> None:
    model = make_model("mf", {"rank": 5, "l2": 0.05})
    data = model.prepare(load_dataset("movielens", "embedded"))
    baseline = run_baseline(model, data, seed=0, max_iters=12, tol=0.01)
    eng = LiveEngine(
        model, data, 0, baseline.state_at(0), n_nodes=N_NODES, home=tmp_path, mode="data_parallel", n_workers=2,
        worker_cpus=0,
    )  # fmt: skip
    try:
        # sensitive_partial: the live checkpointer ranks rows by the model's restore cost too.
        strategies = ["scar", "traditional", "sensitive_partial"]
        settings = TrialSettings.from_names(strategies, (0.25,), interval=4, n_nodes=N_NODES)
        spec = TrialSpec(trial=0, position=0.5, fraction=0.25, seed=3)
        for strategy in settings.strategies:
            row = live_trial(
                eng, model, data, baseline, spec, settings, strategy, dataset="movielens", run=f"als-{strategy.name}"
            )
            # Two workers solving ranges of rows are one ALS sweep, bit for bit.
            assert row["reproduced_baseline"] and row["restored_exact"] and row["survivors_kept"]
            assert row["live_rework"] == row["simulated_rework"]
            # The live checkpoints follow the simulation's policy, the model's sensitivity included.
            assert eng.checkpointer is not None
            assert eng.checkpointer.policy.config() == settings.policy(strategy, model, data).config()
    finally:
        eng.close()
