"""The contraction-rate estimate with its bootstrap interval, and the bound against measured
rework, on gradient descent over strongly convex quadratics where c is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from scar.core.bounds import (
    NotLinearlyConvergentError,
    bound_verdicts,
    estimate_contraction_ci,
    iteration_cost_bound,
    local_contraction_rates,
)
from scar.models.quadratic import Quadratic


def _distances(model: Quadratic, n: int, seed: int = 0) -> np.ndarray:
    state = model.init_state(None, seed)
    out = [np.linalg.norm(state["x"])]
    for _ in range(n):
        model.step(state, None, np.random.default_rng(0))
        out.append(np.linalg.norm(state["x"]))
    return np.asarray(out)


@pytest.mark.parametrize(
    "cmin, cmax, eta, window",
    [
        (1.0, 1.0, 0.1, (0, 60)),  # one curvature: exactly geometric, c = 0.9
        # Spread curvatures: once the faster modes have died out, the slowest one (c) remains.
        (0.5, 2.0, 0.3, (100, 200)),  # c = 0.85
        (0.2, 1.0, 0.5, (250, 350)),  # c = 0.9
        (1.0, 3.0, 0.6, (40, 100)),  # overshooting modes |1 - 1.8| = 0.8 vs 1 - 0.6 = 0.4: c = 0.8
    ],
)
def test_estimate_recovers_known_c_within_its_interval(cmin, cmax, eta, window):
    model = Quadratic(n_blocks=12, width=3, curvature_min=cmin, curvature_max=cmax, step_size=eta)
    d = _distances(model, window[1])
    est = estimate_contraction_ci(d, *window, n_boot=200, seed=1)
    c_true = model.contraction_rate
    # Noise-free trajectories give near-point intervals; the faster modes leave a bias of
    # (c_2 / c)^start, below 1e-5 in these windows.
    assert est.c_low - 1e-5 <= c_true <= est.c_high + 1e-5
    assert est.c == pytest.approx(c_true, abs=1e-4)
    assert est.c_low <= est.c <= est.c_high
    assert est.initial_distance_low <= est.initial_distance <= est.initial_distance_high


def test_an_early_window_mixes_modes_and_underestimates_c():
    # Before the faster modes have died out, log-distances are convex in k: the fitted rate is
    # below the slowest mode's, and the bootstrap (which only sees the window) cannot tell.
    model = Quadratic(n_blocks=12, width=3, curvature_min=0.5, curvature_max=2.0, step_size=0.3)
    est = estimate_contraction_ci(_distances(model, 40), 0, 40, n_boot=100)
    assert est.c < model.contraction_rate - 0.005


def test_exactly_geometric_trajectory_gives_a_point_interval():
    d = 5.0 * 0.7 ** np.arange(30)
    est = estimate_contraction_ci(d, n_boot=50)
    assert est.c == pytest.approx(0.7, rel=1e-10)
    assert est.c_high - est.c_low < 1e-9
    assert est.initial_distance == pytest.approx(5.0, rel=1e-9)


def test_noisy_trajectory_gives_an_interval_that_covers_the_rate():
    rng = np.random.default_rng(3)
    k = np.arange(80)
    d = 2.0 * 0.95**k * np.exp(rng.normal(0, 0.1, k.size))
    est = estimate_contraction_ci(d, n_boot=300, seed=2)
    assert est.c_low < 0.95 < est.c_high
    assert est.c_high - est.c_low > 1e-4


def test_non_linear_convergence_is_refused_with_a_clear_error():
    # Sub-linear (1/k) convergence bent over a long window: a poor log-linear fit.
    k = np.arange(1, 200)
    d = np.concatenate([np.ones(100), 0.5 ** np.arange(99)])  # flat, then fast: R^2 low
    with pytest.raises(NotLinearlyConvergentError, match="R\\^2"):
        estimate_contraction_ci(d, min_r2=0.9)
    with pytest.raises(NotLinearlyConvergentError, match="do not shrink"):
        estimate_contraction_ci(1.0 + 0.0 * k)
    with pytest.raises(NotLinearlyConvergentError, match="at least"):
        estimate_contraction_ci([1.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="level"):
        estimate_contraction_ci(0.5 ** np.arange(10.0), level=1.5)


def test_local_rates_show_a_rate_that_changes_along_the_run():
    d = np.concatenate([0.9 ** np.arange(20), 0.9**19 * 0.5 ** np.arange(1, 21)])
    rates = local_contraction_rates(d, 10)
    assert rates[0] == pytest.approx(0.9, rel=1e-9)
    assert rates[-1] == pytest.approx(0.5, rel=1e-9)


def _iterations_to(model: Quadratic, x: np.ndarray, eps: float, start: int, cap: int = 10_000) -> int:
    factors = (1.0 - model.step_size * model.curvatures)[:, None]
    k = start
    while np.linalg.norm(x) > eps:
        x = x * factors
        k += 1
        assert k < cap
    return k


def _perturbation_trials(model: Quadratic, n: int, seed: int, direction: str = "mixed"):
    c = model.contraction_rate
    x0 = model.init_state(None, 0)["x"]
    d0 = float(np.linalg.norm(x0))
    eps = 1e-3 * d0
    factors = (1.0 - model.step_size * model.curvatures)[:, None]
    k_base = _iterations_to(model, x0.copy(), eps, 0)
    rng = np.random.default_rng(seed)
    rework, bounds = [], []
    for _ in range(n):
        T = int(rng.integers(1, k_base))
        x_T = x0 * factors**T
        norm = float(10 ** rng.uniform(-4, 1)) * d0
        kind = direction if direction != "mixed" else ("random", "away")[int(rng.random() < 0.5)]
        if kind == "random":
            delta = rng.standard_normal(x0.shape)
        elif kind == "away":
            delta = x_T.copy()  # pointed away from x* = 0
        else:  # along the slowest mode only
            delta = np.zeros_like(x0)
            delta[int(np.argmax(np.abs(factors[:, 0])))] = 1.0
        delta *= norm / np.linalg.norm(delta)
        rework.append(_iterations_to(model, x_T + delta, eps, T) - k_base)
        bounds.append(iteration_cost_bound(norm, T, c, d0))
    return np.array(rework, float), np.array(bounds)


@pytest.mark.parametrize("curvature, eta", [(1.0, 0.1), (2.0, 0.3), (1.0, 1.8), (4.0, 0.05)])
def test_bound_holds_in_every_trial_on_quadratics(curvature, eta):
    """Random and adversarial perturbations at 300 random iterations, sizes over five decades:
    the measured rework (iterations to reach ||x|| <= eps) never exceeds the bound (rounded
    up), with the exact c and ||x_0 - x*||; adversarial ones come within an iteration of it."""
    model = Quadratic(n_blocks=10, width=3, curvature_min=curvature, curvature_max=curvature, step_size=eta)
    rework, bounds = _perturbation_trials(model, 300, seed=7)
    verdicts = bound_verdicts(rework, bounds, np.zeros(rework.size, bool))
    assert np.all(verdicts == 1.0), [(r, b) for r, b in zip(rework, bounds) if r > np.ceil(b)]
    assert (np.ceil(bounds) - rework).min() <= 1


def test_bound_can_fail_when_the_unperturbed_run_contracts_faster_than_c():
    """Spread curvatures: the unperturbed run converges faster than c^k (its fast modes die
    quickly), but a perturbation along the slowest mode decays only at rate c. The bound
    compares worst-case convergence times, so it can be exceeded: the study reports this case
    (a rate that is not constant along the run) instead of assuming the bound always holds."""
    model = Quadratic(n_blocks=10, width=3, curvature_min=0.5, curvature_max=2.0, step_size=0.3)
    rework, bounds = _perturbation_trials(model, 100, seed=7, direction="slow")
    verdicts = bound_verdicts(rework, bounds, np.zeros(rework.size, bool))
    assert np.mean(verdicts == 0.0) > 0.2
