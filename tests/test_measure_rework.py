"""Tests of the one recovery measurement (scar.measure.rework)."""

from __future__ import annotations

import numpy as np
import pytest

from scar.measure.engine import InProcessEngine
from scar.measure.rework import RunLimits, measure_rework, run_until_target
from scar.models import make_model


@pytest.fixture(scope="module")
def quadratic():
    from scar.measure.trajectory import run_baseline

    model = make_model("quadratic", {"curvature_min": 1.0, "curvature_max": 1.0, "step_size": 0.1})
    return model, run_baseline(model, None, seed=0, max_iters=120, tol=0.001, final_window=5)


class _Counting(InProcessEngine):
    steps = 0

    def step(self):
        type(self).steps += 1
        return super().step()


def test_the_baseline_own_state_takes_the_shortcut_without_stepping(quadratic):
    model, base = quadratic
    engine = _Counting(model, None, base.seed)
    T = base.k_base // 2
    engine.load(base.state_at(T), T)
    _Counting.steps = 0
    out = measure_rework(engine, base, RunLimits(cap=10 * base.k_base))
    assert _Counting.steps == 0
    assert (out.k_pert, out.rework, out.rework_fractional, out.censored) == (base.k_base, 0, 0.0, False)


def test_a_full_rollback_of_a_deterministic_model_costs_exactly_the_iterations_lost(quadratic):
    # The closed form: a whole-job rollback from T to s replays s+1..T exactly (same state, same
    # streams) and reaches the target T - s iterations late.
    model, base = quadratic
    engine = InProcessEngine(model, None, base.seed)
    for T, s in [(10, 8), (20, 0), (base.k_base - 1, base.k_base - 9)]:
        engine.load(base.state_at(T), T)
        engine.rollback(base.state_at(s), s)
        out = measure_rework(engine, base, RunLimits(cap=10 * base.k_base), failed_at=T)
        assert out.rework == T - s
        assert out.rework_fractional == pytest.approx(T - s, abs=1e-9)


def test_a_censored_run_reports_the_cap_as_a_lower_bound(quadratic):
    model, base = quadratic
    engine = InProcessEngine(model, None, base.seed)
    state = base.state_at(0)
    state["x"] *= 1.01  # not the baseline's own state: no shortcut
    engine.load(state, 0)
    limits = RunLimits(cap=base.k_base // 2)
    out = measure_rework(engine, base, limits)
    assert out.censored and out.censor_reason == "cap"
    assert out.rework == limits.cap - base.k_base
    cols = out.columns()
    assert np.isnan(cols["k_pert"]) and cols["censored"] and cols["censor_reason"] == "cap"


def test_divergence_stops_the_run(quadratic):
    model, base = quadratic
    engine = InProcessEngine(model, None, base.seed)
    state = base.state_at(1)
    state["x"] *= 1e3
    engine.load(state, 1)
    run = run_until_target(engine, target=base.target, limits=RunLimits(cap=1000, diverge_above=float(base.losses[0])))
    assert run.censored and run.censor_reason == "diverged" and run.last_iteration == 1
