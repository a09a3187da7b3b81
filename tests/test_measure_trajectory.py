"""The measurement of rework, checked in closed form on the quadratic model (scar.measure.trajectory).

With one curvature ``lambda`` for every row, gradient descent gives ``x_k = c^k x_0`` exactly,
``c = 1 - eta * lambda``, ``x* = 0`` and ``f(x) = lambda / 2 * ||x||^2``. The loss is monotone
in ``||x||``, so a loss target is a distance target ``rho``, and

    K(x_0) = ceil(log(||x_0|| / rho) / log(1/c)).

A perturbation of norm ``a`` at iteration ``T`` pointing away from ``x*`` gives
``||y_T|| = c^T ||x_0|| + a``, hence ``K_pert = ceil(u + B)`` with ``u = log(||x_0|| / rho) /
log(1/c)`` and ``B = log_{1/c}(1 + a / (c^T ||x_0||))``, the paper's bound. So
``rework = ceil(u + B) - ceil(u)``, which lies in ``[floor(B), ceil(B)]``: the bound holds and is
tight up to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import run_from
from scar.core.bounds import iteration_cost_bound
from scar.measure.engine import iteration_rng
from scar.measure.trajectory import first_at_or_below, run_baseline
from scar.models import Quadratic
from scar.models.base import Model

SEED = 3
ETA, LAM = 0.1, 1.0
C_TRUE = 1.0 - ETA * LAM  # 0.9
MAX_ITERS = 400
TOL = 0.01


def _frac_distance(v: float) -> float:
    """Distance of ``v`` to the nearest integer (the closed forms need it away from 0)."""
    return abs(v - round(v))


@pytest.fixture(scope="module")
def model():
    return Quadratic(n_blocks=8, width=3, curvature_min=LAM, curvature_max=LAM, step_size=ETA, init_scale=10.0)


@pytest.fixture(scope="module")
def baseline(model):
    return run_baseline(model, None, seed=SEED, max_iters=MAX_ITERS, tol=TOL)


def test_model_is_exactly_linear(model, baseline):
    assert model.contraction_rate == pytest.approx(C_TRUE, abs=1e-15)
    x0 = baseline.state_at(0)["x"]
    assert np.linalg.norm(x0) == pytest.approx(10.0, rel=1e-12)
    for k in (1, 7, baseline.k_base):
        np.testing.assert_allclose(baseline.state_at(k)["x"], C_TRUE**k * x0, rtol=1e-12)


def test_baseline_target_and_k_base_in_closed_form(baseline):
    losses = baseline.losses
    assert losses.shape == (MAX_ITERS + 1,)
    # target = loss_final + tol * (loss_0 - loss_final), loss_final = mean of the last 10 losses.
    loss_final = float(np.mean(losses[-10:]))
    assert baseline.loss_final == pytest.approx(loss_final, rel=1e-12)
    assert baseline.target == pytest.approx(loss_final + TOL * (losses[0] - loss_final), rel=1e-12)
    # f_k = f_0 c^{2k}: the first k with f_k <= target is ceil(log(f_0 / target) / (2 log(1/c))).
    u = math.log(losses[0] / baseline.target) / (2.0 * math.log(1.0 / C_TRUE))
    assert _frac_distance(u) > 1e-6  # far from a rounding tie, so the closed form is exact
    assert baseline.k_base == math.ceil(u)
    assert baseline.k_base == 22  # log(100) / (2 log(1/0.9)) = 21.85
    assert losses[baseline.k_base] <= baseline.target < losses[baseline.k_base - 1]
    assert first_at_or_below(losses, baseline.target) == baseline.k_base
    assert baseline.snapshots["x"].shape == (baseline.k_base + 1, 8, 3)
    assert baseline.max_iters == MAX_ITERS


def test_contraction_fit_recovers_c(baseline):
    # The distances are to x_N (N = 400), not to x* = 0: ||x_k - x_N|| = ||x_0|| c^k (1 - c^(N-k)).
    # The fit window is [0, k_base], where c^(N-k) <= 0.9^378 ~ 5e-18, below double precision,
    # so log ||x_k - x_N|| is exactly linear in k there and the fit is exact up to rounding.
    est = baseline.contraction
    assert est is not None
    fit = est.fit
    assert (fit.start, fit.stop) == (0, baseline.k_base + 1)
    # Exactly geometric distances: the bootstrap interval is the point itself.
    assert est.c_low == pytest.approx(fit.c, abs=1e-9) and est.c_high == pytest.approx(fit.c, abs=1e-9)
    assert fit.c == pytest.approx(C_TRUE, abs=1e-6)
    assert fit.initial_distance == pytest.approx(10.0, rel=1e-6)
    assert baseline.distances[-1] == 0.0
    assert baseline.distances[0] == pytest.approx(10.0, rel=1e-12)


def _continue(model, baseline, state, T, cap=10_000):
    return run_from(model, None, state, start=T, target=baseline.target, cap=cap, seed=baseline.seed)


@pytest.mark.parametrize("T", [1, 5, 12, 21])
@pytest.mark.parametrize("a", [1e-3, 0.05, 0.7, 3.0, 25.0, 400.0])
def test_worst_case_perturbation_attains_the_bound(model, baseline, T, a):
    x0_norm = float(np.linalg.norm(baseline.state_at(0)["x"]))
    state = baseline.state_at(T)
    x_T = state["x"]
    state["x"] = x_T + a * x_T / np.linalg.norm(x_T)  # away from x* = 0
    run = _continue(model, baseline, state, T)
    assert not run.censored and run.censor_reason == ""
    rework = run.k_reached - baseline.k_base
    B = iteration_cost_bound(a, T, C_TRUE, x0_norm)
    assert math.floor(B - 1e-9) <= rework <= math.ceil(B + 1e-9)
    assert rework >= 0
    # And exactly the closed form ceil(u + B) - ceil(u), u = log(||x_0|| / rho) / log(1/c).
    rho = math.sqrt(2.0 * baseline.target / LAM)
    u = math.log(x0_norm / rho) / math.log(1.0 / C_TRUE)
    if _frac_distance(u + B) > 1e-6:
        assert rework == math.ceil(u + B) - math.ceil(u)


@pytest.mark.parametrize("T", [2, 10, 20])
@pytest.mark.parametrize("a", [0.01, 1.0, 30.0])
def test_bound_holds_for_perturbations_in_any_direction(model, baseline, T, a):
    x0_norm = float(np.linalg.norm(baseline.state_at(0)["x"]))
    rng = np.random.default_rng(T * 1000 + int(a * 100))
    state = baseline.state_at(T)
    delta = rng.standard_normal(state["x"].shape)
    state["x"] = state["x"] + a * delta / np.linalg.norm(delta)
    run = _continue(model, baseline, state, T)
    assert run.k_reached - baseline.k_base <= math.ceil(iteration_cost_bound(a, T, C_TRUE, x0_norm) + 1e-9)


@pytest.mark.parametrize("T", [1, 8, 20])
@pytest.mark.parametrize("share", [0.01, 0.5, 0.99])
def test_perturbation_toward_the_optimum_costs_nothing(model, baseline, T, share):
    state = baseline.state_at(T)
    state["x"] = state["x"] * (1.0 - share)  # a = share * ||x_T||, pointing at x* = 0
    run = _continue(model, baseline, state, T)
    assert not run.censored
    assert run.k_reached - baseline.k_base <= 0
    assert run.k_reached >= T


def test_mirrored_state_has_zero_rework(model, baseline):
    state = baseline.state_at(9)
    state["x"] = -state["x"]  # same distance to x*, same losses from here on
    assert _continue(model, baseline, state, 9).k_reached == baseline.k_base


def test_unperturbed_continuation_reproduces_k_base(model, baseline):
    for T in (0, 1, 10, baseline.k_base - 1, baseline.k_base):
        run = _continue(model, baseline, baseline.state_at(T), T)
        assert run.k_reached == baseline.k_base == run.last_iteration


def test_cap_censoring_boundary(model, baseline):
    k_base = baseline.k_base
    run = _continue(model, baseline, baseline.state_at(5), 5, cap=k_base)
    assert run.k_reached == k_base and not run.censored  # reached exactly at the cap
    run = _continue(model, baseline, baseline.state_at(5), 5, cap=k_base - 1)
    assert run.censored and run.k_reached is None
    assert run.censor_reason == "cap" and run.last_iteration == k_base - 1
    run = _continue(model, baseline, baseline.state_at(5), 5, cap=5)
    assert run.censored and run.censor_reason == "cap" and run.last_iteration == 5


class _Diverging(Model):
    """x doubles each step, and the objective is NaN once it has stepped ``nan_after`` times."""

    name = "diverging"
    iteration = "one doubling"
    server_params = ("x",)

    def __init__(self, nan_after: int = 1) -> None:
        self.nan_after = nan_after

    def init_state(self, data, seed):
        return {"x": np.ones((2, 2)), "steps": np.zeros(1, dtype=np.int64)}

    def step(self, state, data, rng):
        state["x"] *= 2.0
        state["steps"] += 1

    def objective(self, state, data):
        if state["steps"][0] >= self.nan_after:
            return float("nan")
        return float(np.sum(state["x"] ** 2))


def test_run_until_target_reports_divergence():
    model = _Diverging(nan_after=3)
    state = model.init_state(None, 0)
    run = run_from(model, None, state, start=10, target=0.0, cap=1000, seed=0)
    assert run.censored and run.k_reached is None
    assert run.censor_reason == "diverged"
    assert run.last_iteration == 13
    # A finite objective above diverge_above also stops the run.
    model = _Diverging(nan_after=10**9)
    state = model.init_state(None, 0)
    run = run_from(model, None, state, start=0, target=0.0, cap=1000, seed=0, diverge_above=100.0)
    assert run.censor_reason == "diverged" and run.last_iteration == 3  # 4 * 4^3 = 256 > 100


class _NoisyContraction(Model):
    """x <- 0.8 x + 0.05 * noise: stochastic, so rework depends on the random stream."""

    name = "noisy"
    iteration = "one noisy step"
    server_params = ("x",)

    def init_state(self, data, seed):
        return {"x": np.full((4, 2), 5.0)}

    def step(self, state, data, rng):
        state["x"] *= 0.8
        state["x"] += 0.05 * rng.standard_normal(state["x"].shape)

    def objective(self, state, data):
        return float(0.5 * np.sum(state["x"] ** 2))


def test_recovered_run_uses_the_baselines_random_stream():
    model = _NoisyContraction()
    base = run_baseline(model, None, seed=11, max_iters=60, tol=0.05)
    for T in (1, base.k_base // 2, base.k_base - 1):
        state = base.state_at(T)
        run = run_from(model, None, state, start=T, target=base.target, cap=500, seed=11)
        assert run.k_reached == base.k_base
        # run_until_target leaves the state at k_reached: the baseline's state there, bit for bit.
        np.testing.assert_array_equal(state["x"], base.state_at(base.k_base)["x"])
        # Every step reproduces the baseline bit for bit (common random numbers).
        state = base.state_at(T)
        for k in range(T + 1, base.k_base + 1):
            model.step(state, None, iteration_rng(11, k))
            np.testing.assert_array_equal(state["x"], base.state_at(k)["x"])


def test_iteration_rng_streams():
    a = iteration_rng(7, 3).standard_normal(5)
    np.testing.assert_array_equal(a, iteration_rng(7, 3).standard_normal(5))
    assert not np.array_equal(a, iteration_rng(7, 4).standard_normal(5))
    assert not np.array_equal(a, iteration_rng(8, 3).standard_normal(5))
    assert not np.array_equal(iteration_rng(7, 0).standard_normal(5), iteration_rng(7, 1).standard_normal(5))


def test_run_baseline_validation(model):
    with pytest.raises(ValueError, match="max_iters"):
        run_baseline(model, None, seed=0, max_iters=1)
    with pytest.raises(ValueError, match="tol"):
        run_baseline(model, None, seed=0, max_iters=50, tol=1.5)
    fast = Quadratic(n_blocks=2, width=2, step_size=0.999)  # c = 0.001: target reached at k = 1
    with pytest.raises(ValueError, match="reached its target at iteration 1"):
        run_baseline(fast, None, seed=0, max_iters=10)
    still = Quadratic(n_blocks=2, width=2, step_size=0.0)  # no progress at all
    with pytest.raises(ValueError, match="did not make progress"):
        run_baseline(still, None, seed=0, max_iters=10)


def test_state_at_bounds(baseline):
    with pytest.raises(ValueError, match="snapshots cover"):
        baseline.state_at(baseline.k_base + 1)
    with pytest.raises(ValueError, match="snapshots cover"):
        baseline.state_at(-1)
    s = baseline.state_at(3)
    s["x"][...] = 0.0  # a copy: the baseline is untouched
    assert np.linalg.norm(baseline.state_at(3)["x"]) > 0
