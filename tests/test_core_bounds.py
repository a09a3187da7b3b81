"""Tests of the iteration-cost bound and the contraction-rate estimate (scar.core.bounds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scar.core.bounds import (
    ContractionFit,
    NotLinearlyConvergentError,
    estimate_contraction,
    iteration_cost_bound,
    iteration_cost_bound_multi,
)


def _bound_by_hand(delta, T, c, d0):
    return math.log(1.0 + delta / (c**T * d0)) / math.log(1.0 / c)


# --------------------------------------------------------------------------------------------
# iteration_cost_bound


@pytest.mark.parametrize("T", [0, 1, 50, 10_000])
def test_zero_perturbation_costs_nothing(T):
    assert iteration_cost_bound(0.0, T, 0.9, 3.0) == 0.0
    assert iteration_cost_bound_multi([0.0, 0.0], [T, T + 1], 0.9, 3.0) == 0.0
    assert iteration_cost_bound_multi([], [], 0.9, 3.0) == 0.0


@pytest.mark.parametrize(
    "delta, T, c, d0, expected",
    [
        (1.0, 0, 0.5, 1.0, 1.0),  # log_2(1 + 1)
        (3.0, 2, 0.5, 4.0, 2.0),  # c^T d0 = 1: log_2(4)
        (99.0, 1, 0.1, 10.0, 2.0),  # c^T d0 = 1: log_10(100)
        (7.0, 3, 0.5, 8.0, 3.0),  # c^T d0 = 1: log_2(8)
    ],
)
def test_bound_hand_values(delta, T, c, d0, expected):
    assert iteration_cost_bound(delta, T, c, d0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("delta, T, c, d0", [(0.1, 10, 0.9, 2.0), (2.5, 7, 0.97, 0.3), (1e-3, 40, 0.8, 5.0)])
def test_bound_matches_formula(delta, T, c, d0):
    assert iteration_cost_bound(delta, T, c, d0) == pytest.approx(_bound_by_hand(delta, T, c, d0), rel=1e-12)


def test_bound_monotone_in_delta_and_T():
    deltas = np.geomspace(1e-6, 1e3, 40)
    values = [iteration_cost_bound(d, 20, 0.9, 2.0) for d in deltas]
    assert all(b > a for a, b in zip(values, values[1:]))
    values = [iteration_cost_bound(0.5, T, 0.9, 2.0) for T in range(0, 200, 5)]
    assert all(b > a for a, b in zip(values, values[1:]))
    # Grows like log(delta): doubling a large perturbation adds about log_{1/c}(2).
    big = iteration_cost_bound(1e6, 0, 0.5, 1.0)
    assert iteration_cost_bound(2e6, 0, 0.5, 1.0) - big == pytest.approx(1.0, abs=1e-5)


def test_multi_with_one_element_equals_single():
    for delta, T, c, d0 in [(0.3, 4, 0.9, 1.5), (0.0, 3, 0.5, 2.0), (12.0, 100, 0.95, 7.0)]:
        assert iteration_cost_bound_multi([delta], [T], c, d0) == iteration_cost_bound(delta, T, c, d0)


def test_multi_sums_inside_the_log():
    c, d0 = 0.8, 2.0
    got = iteration_cost_bound_multi([0.5, 0.25, 0.0], [3, 10, 1], c, d0)
    inner = (0.5 * c**-3 + 0.25 * c**-10) / d0
    assert got == pytest.approx(math.log1p(inner) / math.log(1 / c), rel=1e-12)
    # More perturbations never cost less.
    assert got > iteration_cost_bound(0.5, 3, c, d0)
    assert got > iteration_cost_bound(0.25, 10, c, d0)


def test_bound_does_not_overflow_for_long_runs():
    c, d0, delta, T = 0.9, 2.0, 0.5, 10_000
    b = iteration_cost_bound(delta, T, c, d0)
    assert math.isfinite(b)
    # c^-T is astronomically large, so the bound is T + log_{1/c}(delta / d0) to within rounding.
    assert b == pytest.approx(T + math.log(delta / d0) / math.log(1 / c), rel=1e-12)
    assert math.isfinite(iteration_cost_bound_multi([delta, delta], [T, 2 * T], c, d0))


@pytest.mark.parametrize("c", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_bound_rejects_c_outside_unit_interval(c):
    with pytest.raises(ValueError, match="contraction rate c"):
        iteration_cost_bound(0.1, 3, c, 1.0)


@pytest.mark.parametrize("d0", [0.0, -1.0, float("nan")])
def test_bound_rejects_nonpositive_initial_distance(d0):
    with pytest.raises(ValueError, match="initial distance"):
        iteration_cost_bound(0.1, 3, 0.9, d0)


def test_bound_rejects_negative_delta_or_iteration_and_length_mismatch():
    with pytest.raises(ValueError, match="non-negative"):
        iteration_cost_bound(-0.1, 3, 0.9, 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        iteration_cost_bound(0.1, -3, 0.9, 1.0)
    with pytest.raises(ValueError, match="same length"):
        iteration_cost_bound_multi([0.1, 0.2], [3], 0.9, 1.0)


# --------------------------------------------------------------------------------------------
# estimate_contraction


@pytest.mark.parametrize("c, d0, n", [(0.9, 2.0, 30), (0.5, 100.0, 20), (0.99, 0.01, 200), (0.3, 1.0, 3)])
def test_estimate_recovers_exact_geometric(c, d0, n):
    d = d0 * c ** np.arange(n)
    fit = estimate_contraction(d)
    assert isinstance(fit, ContractionFit)
    assert fit.c == pytest.approx(c, abs=1e-9)
    assert fit.initial_distance == pytest.approx(d0, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert (fit.start, fit.stop, fit.n_points) == (0, n, n)


def test_estimate_on_a_window_still_extrapolates_to_iteration_zero():
    d = 3.0 * 0.8 ** np.arange(40)
    d[:5] = 50.0  # a transient the window leaves out
    fit = estimate_contraction(d, start=10, stop=30)
    assert fit.c == pytest.approx(0.8, abs=1e-9)
    assert fit.initial_distance == pytest.approx(3.0, rel=1e-9)
    assert (fit.start, fit.stop) == (10, 30)
    # stop beyond the data is clipped.
    assert estimate_contraction(d, start=10, stop=1000).stop == 40


def test_estimate_on_noisy_geometric_data():
    rng = np.random.default_rng(0)
    c, d0, n = 0.93, 5.0, 80
    d = d0 * c ** np.arange(n) * np.exp(rng.normal(0.0, 0.1, n))
    fit = estimate_contraction(d)
    assert fit.c == pytest.approx(c, rel=0.02)
    assert fit.initial_distance == pytest.approx(d0, rel=0.15)
    assert 0.9 < fit.r2 < 1.0


def test_estimate_ignores_zero_and_nonfinite_distances():
    # The last distance is to the final iterate itself: zero, left out of the log fit.
    d = np.array([8.0, 4.0, 2.0, 1.0, 0.5, 0.0])
    fit = estimate_contraction(d)
    assert fit.c == pytest.approx(0.5, abs=1e-12)
    assert fit.initial_distance == pytest.approx(8.0, rel=1e-12)
    d = np.array([8.0, 4.0, np.nan, 1.0, np.inf, 0.25])
    assert estimate_contraction(d).c == pytest.approx(0.5, abs=1e-12)


def test_estimate_rejects_increasing_sequences():
    with pytest.raises(NotLinearlyConvergentError, match="do not shrink"):
        estimate_contraction(0.5 * 1.1 ** np.arange(20))
    with pytest.raises(NotLinearlyConvergentError):
        estimate_contraction(np.arange(1.0, 11.0))


def test_estimate_rejects_too_few_points():
    with pytest.raises(NotLinearlyConvergentError, match="at least 3"):
        estimate_contraction([1.0, 0.5])
    with pytest.raises(NotLinearlyConvergentError, match="at least 3"):
        estimate_contraction([1.0, 0.5, 0.0, 0.0])  # zeros do not count
    with pytest.raises(NotLinearlyConvergentError, match="at least 5"):
        estimate_contraction(0.5 ** np.arange(4.0), min_points=5)
    with pytest.raises(NotLinearlyConvergentError):
        estimate_contraction(0.5 ** np.arange(10.0), start=8)
    assert issubclass(NotLinearlyConvergentError, ValueError)


def test_estimate_rejects_flat_sequences():
    for value in (0.1, 0.3, 0.7, 1.0, 1.7, 2.3, 3.14159, 1e-3, 123.456, 0.9):
        for n in (3, 5, 10, 50, 100, 1000):
            with pytest.raises(NotLinearlyConvergentError):
                estimate_contraction([value] * n)
