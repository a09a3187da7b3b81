"""The checkpoint planner: hand-checkable optima, Young/Daly as a special case, bad input named;
the `scar plan` command; the simulation of whole runs under failures on the quadratic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scar.checkpoint.strategy import get_strategy
from scar.cli import main
from scar.planner.inputs import PlannerSettings
from scar.planner.plan import (
    GeometricMovement,
    PlanInputs,
    TrajectoryMovement,
    candidates,
    plan,
    score,
    young_daly_interval,
)


def _inputs(**kw) -> PlanInputs:
    base = dict(
        model_bytes=1000.0, write_seconds_per_byte=0.002, seconds_per_iteration=1.0, mtbf_iterations=20.0,
        failure_fraction=0.25, c=0.9, initial_distance=10.0, run_iterations=73,
    )  # fmt: skip
    return PlanInputs(**(base | kw))


def S(name: str, r: float = 1.0):
    return get_strategy(name).with_r(r)


class _Stub:
    """A movement with a fixed ``||delta||^2`` for full and for partial recovery."""

    def __init__(self, full: float, partial: float, n: int = 72) -> None:
        self.full, self.partial, self.n = full, partial, n

    def delta_squared(self, strategy, interval, fraction):
        T = np.arange(1, self.n + 1)
        if strategy.name == "traditional":
            return np.full(T.size, self.full), T - ((T - 1) // interval) * interval
        return np.full(T.size, self.partial), np.zeros_like(T)

    def saves_per_iteration(self, strategy, interval):
        return 1.0 / interval


def test_young_daly_interval():
    assert young_daly_interval(2.0, 20.0) == 9  # sqrt(80) = 8.94
    assert young_daly_interval(0.0, 20.0) == 1
    assert young_daly_interval(50.0, 1.0) == 10


def test_traditional_with_huge_perturbations_recovers_young_daly():
    """Full rollback costs the whole distance back to the checkpoint ((C + 1) / 2 on average):
    cost(C) = 2 / C + ((C + 1) / 2 + 2) / 20, minimised at C = sqrt(2 * 2 * 20) ~ 8.9."""
    p = plan(_inputs(), _Stub(full=1e12, partial=1e12), strategies=["traditional"], intervals=[4, 8, 9, 12, 24])
    assert int(p.best["C"]) == 9 == p.young_daly_interval
    for row in p.table.itertuples():
        C = row.C
        assert row.expected_rework == pytest.approx((C + 1) / 2)
        assert row.cost_per_iteration == pytest.approx(2 / C + ((C + 1) / 2 + 2) / 20)
    assert p.saving == pytest.approx(0.0)


def test_free_partial_recovery_wins_with_the_longest_interval():
    # Partial recovery causing no perturbation costs only its checkpoints and the restore of the
    # lost quarter: 2 / C + 0.5 / 20, least at the largest C; traditional pays the rollback.
    p = plan(_inputs(), _Stub(full=1e12, partial=0.0), strategies=["traditional", "full_partial"], intervals=[4, 8, 16, 32])
    assert (p.best["strategy"], int(p.best["C"])) == ("full_partial", 32)
    assert p.best["cost_per_iteration"] == pytest.approx(2 / 32 + 0.25 * 2 / 20)
    ref = 2 / 9 + (5 + 2) / 20
    assert p.young_daly["cost_per_iteration"] == pytest.approx(ref)
    assert p.saving == pytest.approx(1 - (2 / 32 + 0.025) / ref)


def test_expected_rework_is_the_bound_at_the_estimated_norm():
    inputs = _inputs()
    row = score(inputs, _Stub(full=4.0, partial=1.0), S("scar", 0.5), 8)
    T = np.arange(1, 73)
    expected = np.mean([math.log1p(1.0 / (0.9**t * 10.0)) / math.log(1 / 0.9) for t in T])
    assert row["expected_rework"] == pytest.approx(expected)
    assert row["expected_delta_norm"] == pytest.approx(1.0)


def test_bad_input_names_the_option():
    for kw, option in [
        (dict(c=1.2), "--c"),
        (dict(mtbf_iterations=0), "--mtbf"),
        (dict(failure_fraction=1.5), "--failure-fraction"),
        (dict(model_bytes=-1), "--model-bytes"),
        (dict(seconds_per_iteration=float("nan")), "--seconds-per-iteration"),
        (dict(run_iterations=1), "--run-iterations"),
    ]:
        with pytest.raises(ValueError, match=option):
            _inputs(**kw)
    with pytest.raises(ValueError, match="--r-values"):
        candidates(["scar"], [8], [0.0])
    with pytest.raises(ValueError, match="no valid"):
        plan(_inputs(), strategies=["scar"], intervals=[3], r_values=[0.5])
    with pytest.raises(ValueError, match="unknown strategy"):
        plan(_inputs(), strategies=["magic"])


def test_candidates_skip_r_one_for_fractional_policies_and_non_whole_r_times_c():
    got = [(s.name, C, s.r) for s, C in candidates(["traditional", "scar"], [4, 6], [1.0, 0.5, 0.25])]
    assert ("traditional", 4, 1.0) in got and ("scar", 4, 0.25) in got
    assert ("scar", 6, 0.25) not in got and ("scar", 4, 1.0) not in got


def test_geometric_movement_full_rollback():
    m = GeometricMovement(c=0.5, initial_distance=8.0, run_iterations=10)
    d2, stale = m.delta_squared(S("traditional", 1.0), 4, 0.25)
    # T = 6: last save at 4, ||x_6 - x_4|| = 8 * 0.5^4 * (1 - 0.5^2) = 0.375
    assert math.sqrt(d2[5]) == pytest.approx(0.375)
    assert stale[5] == 2
    d2p, _ = m.delta_squared(S("full_partial", 1.0), 4, 0.25)
    np.testing.assert_allclose(d2p, 0.25 * d2)


def test_trajectory_movement_matches_a_replay_by_hand(quadratic_baseline):
    _, b = quadratic_baseline
    m = TrajectoryMovement({"x": b.snapshots["x"]})
    d2, stale = m.delta_squared(S("traditional", 1.0), 5, 0.25)
    x = b.snapshots["x"]
    assert d2[11] == pytest.approx(float(np.sum((x[12] - x[10]) ** 2)))  # T = 12, last save at 10
    assert stale[11] == 2
    d2p, _ = m.delta_squared(S("full_partial", 1.0), 5, 0.25)
    np.testing.assert_allclose(d2p, 0.25 * d2)
    # Priority saves the blocks that moved most: never a larger perturbation than round robin on average.
    pri, _ = m.delta_squared(S("scar", 0.25), 8, 0.25)
    rr, _ = m.delta_squared(S("round_robin_partial", 0.25), 8, 0.25)
    assert pri.mean() <= rr.mean()


def test_trajectory_movement_counts_the_saves_of_a_run(quadratic_baseline):
    # A failure-free run of K iterations saves after iterations C, 2C, ... <= K: none when C > K.
    _, b = quadratic_baseline
    m, K = TrajectoryMovement({"x": b.snapshots["x"]}), b.k_base
    assert m.saves_per_iteration(S("traditional", 1.0), 5) == pytest.approx((K // 5) / K)
    assert m.saves_per_iteration(S("full_partial", 1.0), K + 1) == 0.0
    # r = 1/4 of the blocks every C/4 iterations: a full checkpoint's bytes every C iterations.
    assert m.saves_per_iteration(S("round_robin_partial", 0.25), 8) == pytest.approx((K // 2) / 4 / K, rel=0.05)


def test_planner_settings_name_the_key():
    with pytest.raises(ValueError, match="planner.mtbf"):
        PlannerSettings(mtbf=0)
    with pytest.raises(ValueError, match="planner.strategies"):
        PlannerSettings(strategies=("traditional", "bogus"))


def test_scar_plan_command(capsys, tmp_path, quadratic_baseline):
    args = ["plan", "--n-params", "1e6", "--checkpoint-seconds", "20", "--seconds-per-iteration", "10", "--mtbf", "50",
            "--failure-fraction", "0.25", "--c", "0.95", "--initial-distance", "5", "--run-iterations", "200"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "recommended" in out and "Young/Daly's C* = 14" in out  # sqrt(2 * 2 * 50) = 14.1
    assert main(args[:-2] + ["--run-iterations", "-3"]) == 2
    assert "--run-iterations" in capsys.readouterr().err
    assert main(["plan", "--mtbf", "50", "--failure-fraction", "0.25"]) == 2
    assert "missing --c" in capsys.readouterr().err
    assert main(args + ["--write-seconds-per-byte", "1e-6"]) == 2
    assert "exactly one" in capsys.readouterr().err
    # From a baseline file: c, ||x_0 - x*||, K, size and trajectory read from it.
    _, b = quadratic_baseline
    path = tmp_path / "baseline.npz"
    b.save(path)
    assert (
        main(["plan", "--baseline", str(path), "--checkpoint-seconds", "0.001", "--mtbf", "30", "--failure-fraction", "0.5"]) == 0
    )
    assert "from the baseline trajectory" in capsys.readouterr().out
    assert main(["plan", "--baseline", str(tmp_path / "nope.npz"), "--mtbf", "3", "--failure-fraction", "0.5"]) == 2
    assert "--baseline" in capsys.readouterr().err
