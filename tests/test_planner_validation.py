"""Tests of whole runs simulated under failures and the validation of a plan (scar.planner.simulation, scar.planner.validation)."""

from __future__ import annotations

import numpy as np
import pytest

from scar.checkpoint.strategy import get_strategy
from scar.measure.baseline_engine import BaselineEngine
from scar.measure.engine import InProcessEngine
from scar.measure.trials import TrialSettings
from scar.planner.inputs import PlannerSettings
from scar.planner.plan import (
    PlanInputs,
    plan_for_baseline,
)
from scar.planner.simulation import simulate_run
from scar.planner.validation import planner_verdicts, settings_to_check, summarize_validation, validate_plan


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


def test_validation_simulates_every_candidate_and_judges_the_recommendation(quadratic_baseline):
    model, b = quadratic_baseline
    settings = PlannerSettings(mtbf=15, strategies=("traditional", "scar"), intervals=(4, 16), r_values=(0.5,), n_replicates=2)
    p = plan_for_baseline(settings, b)
    checked = settings_to_check(p)
    # Every candidate, and traditional at Young/Daly's interval (not among them here).
    assert len(checked) == len(p.table) + 1
    assert checked[0][1] == "recommended" and checked[-1][1] == "traditional at Young/Daly"
    runs = validate_plan(model, None, b, p, TrialSettings(), n_replicates=2, experiment=("quadratic", "none"))
    assert len(runs) == 2 * len(checked)
    assert set(runs.loc[runs["role"] != "traditional at Young/Daly", "rank"]) == set(range(1, len(p.table) + 1))
    assert (runs["n_failures"] > 0).any()
    summary = summarize_validation(runs)
    ref = summary[summary["young_daly"]]
    assert float(ref["simulated_saving"].iloc[0]) == 0.0
    assert np.isfinite(summary["relative_error"]).all() and np.isfinite(summary["relative_error_bound"]).all()
    # The multi-perturbation bound of each run, from the norms its recoveries caused.
    assert (runs["bound_multi"] >= 0).all()
    quiet = runs[runs["n_failures"] == 0]
    assert (quiet["bound_multi"] == 0).all() and (quiet["rework"] == 0).all()
    assert summary["bound_multi_held"].between(0, 1).all()
    verdicts = planner_verdicts(runs)
    assert list(verdicts["pricing"]) == ["calibrated", "bound"]
    cheapest = summary.loc[summary["simulated_cost"].idxmin()]
    for v in verdicts.itertuples():
        rec = summary[summary["setting"] == v.recommended].iloc[0]
        assert v.cheapest == cheapest["setting"]
        assert v.excess == pytest.approx(rec["simulated_cost"] / cheapest["simulated_cost"] - 1.0)
        assert v.excess_ci_low <= v.excess <= v.excess_ci_high
        assert v.within_tolerance == (v.excess <= 0.05)


def test_baseline_engine_gives_the_same_runs_without_the_baseline_steps(quadratic_baseline):
    model, b = quadratic_baseline
    inputs = PlannerSettings(mtbf=8).inputs(b)
    for name, C in (("traditional", 4), ("scar", 8)):
        strategy = get_strategy(name).with_r(0.25) if name == "scar" else get_strategy(name)
        for rep in range(3):
            plain = simulate_run(
                model, None, b, strategy, C, inputs, TrialSettings(), replicate=rep, engine=InProcessEngine(model, None, b.seed)
            )
            engine = BaselineEngine(InProcessEngine(model, None, b.seed), b)
            cached = simulate_run(model, None, b, strategy, C, inputs, TrialSettings(), replicate=rep, engine=engine)
            assert cached == plain and plain.n_failures > 0
            if name == "traditional":
                assert engine.steps_computed == 0  # a rollback replays the baseline exactly
            else:
                assert 0 < engine.steps_computed < plain.iterations - plain.failure_iterations[0] + 1
