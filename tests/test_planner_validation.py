"""Tests of whole runs simulated under failures and the validation of a plan (scar.planner.simulation, scar.planner.validation)."""

from __future__ import annotations

import numpy as np

from scar.checkpoint.strategy import get_strategy
from scar.measure.trials import TrialSettings
from scar.planner.inputs import PlannerSettings
from scar.planner.plan import (
    PlanInputs,
    plan_for_baseline,
)
from scar.planner.simulation import simulate_run
from scar.planner.validation import settings_to_check, summarize_validation, validate_plan


def test_simulation_without_failures_is_the_baseline(quadratic_baseline):
    model, b = quadratic_baseline
    inputs = PlanInputs(
        model_bytes=float(b.snapshots["x"][0].nbytes), write_seconds_per_byte=0.0, seconds_per_iteration=1.0,
        mtbf_iterations=1e9, failure_fraction=0.25, c=b.contraction.c, initial_distance=b.contraction.initial_distance,
        run_iterations=b.k_base,
    )  # fmt: skip
    run = simulate_run(model, None, b, get_strategy("traditional"), 4, inputs, TrialSettings())
    assert (run.iterations, run.n_failures, run.censored) == (b.k_base, 0, False)
    assert run.cost == b.k_base
    assert run.checkpoint_bytes == (b.k_base // 4) * b.snapshots["x"][0].nbytes


def test_validation_runs_and_summarises(quadratic_baseline):
    model, b = quadratic_baseline
    settings = PlannerSettings(mtbf=15, intervals=(4, 8, 16), n_replicates=2, n_other=1)
    p = plan_for_baseline(settings, b)
    checked = settings_to_check(p, 1)
    assert checked[0][3] == "recommended" and checked[1][3] == "traditional at Young/Daly"
    runs = validate_plan(model, None, b, p, TrialSettings(), n_replicates=2, n_other=1, experiment=("quadratic", "none"))
    assert len(runs) == 2 * len(checked)
    assert (runs["n_failures"] > 0).any()
    summary = summarize_validation(runs)
    ref = summary[summary["role"] == "traditional at Young/Daly"]
    assert float(ref["simulated_saving"].iloc[0]) == 0.0
    assert np.isfinite(summary["relative_error"]).all()
    # The multi-perturbation bound of each run, from the norms its recoveries caused.
    assert (runs["bound_multi"] >= 0).all()
    quiet = runs[runs["n_failures"] == 0]
    assert (quiet["bound_multi"] == 0).all() and (quiet["rework"] == 0).all()
    assert summary["bound_multi_held"].between(0, 1).all()
