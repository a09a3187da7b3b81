"""Tests of the rework model calibrated on failure trials and of the plan priced by it (scar.planner.calibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scar.core.bounds import iteration_cost_bound
from scar.planner.calibration import BOUND, ReworkModel, fit_rework_model
from scar.planner.inputs import PlanInputs
from scar.planner.plan import GeometricMovement, plan

C, D0 = 0.9, 10.0


def synthetic_trials(scale: float, n: int, seed: int = 0) -> pd.DataFrame:
    """Partial-recovery trials whose rework is ``scale`` x the bound plus noise, and traditional
    ones (which the fit must ignore) with a much larger rework."""
    rng = np.random.default_rng(seed)
    norms = rng.uniform(0.1, 5.0, n)
    its = rng.integers(1, 40, n)
    bound = np.array([iteration_cost_bound(d, int(t), C, D0) for d, t in zip(norms, its)])
    rework = scale * bound + rng.normal(0, 0.3, n)
    partial = pd.DataFrame({"recovery_policy": "partial", "perturbation_norm": norms, "failure_iteration": its, "rework": rework})
    full = partial.assign(recovery_policy="full", rework=100.0)
    return pd.concat([partial, full], ignore_index=True)


def test_fit_recovers_a_known_scale():
    model = fit_rework_model(synthetic_trials(0.3, 200), C, D0)
    assert model.source == "trials" and model.n_trials == 200
    assert model.scale == pytest.approx(0.3, abs=0.02)
    assert model.scale_low < 0.3 < model.scale_high
    assert model.rework(2.0, 10, C, D0) == pytest.approx(model.scale * iteration_cost_bound(2.0, 10, C, D0))


def test_too_few_trials_fall_back_to_the_bound():
    model = fit_rework_model(synthetic_trials(0.3, 5), C, D0, min_trials=10)
    assert model == ReworkModel(n_trials=5) and model.scale == 1.0 and model.source == "bound"
    with pytest.raises(ValueError, match="perturbation_norm"):
        fit_rework_model(pd.DataFrame({"rework": [1.0]}), C, D0)


def test_calibrated_plan_ranks_candidates_by_the_calibrated_cost():
    # Failures are frequent and the bound prices each partial recovery's rework high, so priced
    # by the bound short intervals win; at a tenth of it, checkpoint I/O dominates and long ones do.
    inputs = PlanInputs(
        model_bytes=1e6, write_seconds_per_byte=2e-6, seconds_per_iteration=1.0, mtbf_iterations=5.0,
        failure_fraction=0.5, c=C, initial_distance=D0, run_iterations=60,
    )  # fmt: skip
    movement = GeometricMovement(C, D0, 60)
    kw = dict(strategies=["full_partial"], intervals=[2, 4, 8, 16, 32], r_values=[1.0])
    by_bound = plan(inputs, movement, **kw)
    calibrated = plan(inputs, movement, rework_model=ReworkModel(0.1, 0.05, 0.15, 50, "trials"), **kw)
    assert int(calibrated.best["C"]) > int(by_bound.best["C"])
    t = calibrated.table
    assert list(t["rank"]) == list(range(1, len(t) + 1))
    assert (np.diff(t["cost_per_iteration"]) >= 0).all()
    assert np.allclose(t["expected_rework"], 0.1 * t["expected_rework_bound"])
    # The bound's ranking beside it is the ranking of the plan priced by the bound.
    order = t.sort_values("rank_bound")["C"].tolist()
    assert order == by_bound.table["C"].tolist()
    assert plan(inputs, movement, rework_model=BOUND, **kw).table.equals(by_bound.table)


def test_scar_plan_prices_rework_by_the_given_trials(capsys, tmp_path):
    from scar.cli import main

    synthetic_trials(0.3, 60).to_csv(tmp_path / "batch0.csv", index=False)
    args = ["plan", "--n-params", "1e6", "--checkpoint-seconds", "20", "--seconds-per-iteration", "10", "--mtbf", "50",
            "--failure-fraction", "0.25", "--c", str(C), "--initial-distance", str(D0), "--run-iterations", "60"]  # fmt: skip
    assert main([*args, "--trials", str(tmp_path / "batch*.csv")]) == 0
    out = capsys.readouterr().out
    assert "x bound (95% CI" in out and "60 partial-recovery trials" in out
    assert main([*args, "--trials", str(tmp_path / "none*.csv")]) == 2
    assert "--trials: no file matches" in capsys.readouterr().err
