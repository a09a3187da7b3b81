"""The iteration-cost ("rework") bound and the contraction-rate estimate (docs/design.md §2).

For an update with linear convergence rate ``c < 1`` (``||f(x) - x*|| <= c ||x - x*||``), a
perturbation ``delta`` added at iteration ``T`` costs at most

    iota <= log_{1/c}(1 + ||delta|| / (c^T * ||x_0 - x*||))

extra iterations to reach any accuracy, and for perturbations ``delta_t`` at iterations ``T_t``

    iota <= log_{1/c}(1 + sum_t c^{-T_t} ||delta_t|| / ||x_0 - x*||).

(Qiao et al., ICML 2019, up to rounding; the indexing is ours.) The cost grows only with the
log of the perturbation, and the same perturbation costs more late in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class NotLinearlyConvergentError(ValueError):
    """A trajectory whose distances do not shrink geometrically enough to fit a rate."""


def iteration_cost_bound(delta_norm: float, iteration: int, c: float, initial_distance: float) -> float:
    """Worst-case extra iterations caused by one perturbation of norm ``delta_norm`` at ``iteration``."""
    return iteration_cost_bound_multi([delta_norm], [iteration], c, initial_distance)


def iteration_cost_bound_multi(
    delta_norms: Sequence[float], iterations: Sequence[int], c: float, initial_distance: float
) -> float:
    """Worst-case extra iterations caused by perturbations ``delta_norms[t]`` at ``iterations[t]``."""
    if not 0.0 < c < 1.0:
        raise ValueError(f"the contraction rate c must be in (0, 1), got {c}")
    if not initial_distance > 0.0:
        raise ValueError(f"the initial distance ||x_0 - x*|| must be positive, got {initial_distance}")
    deltas = np.asarray(delta_norms, dtype=np.float64)
    its = np.asarray(iterations, dtype=np.float64)
    if deltas.shape != its.shape:
        raise ValueError("delta_norms and iterations must have the same length")
    if np.any(deltas < 0) or np.any(its < 0):
        raise ValueError("perturbation norms and iterations must be non-negative")
    # c^{-T} overflows for long runs: sum in log space.
    log_terms = np.log(np.where(deltas > 0, deltas, 1.0)) - its * np.log(c) - np.log(initial_distance)
    log_terms = np.where(deltas > 0, log_terms, -np.inf)
    log_sum = np.logaddexp.reduce(log_terms) if log_terms.size else -np.inf
    return float(np.logaddexp(0.0, log_sum) / -np.log(c))


@dataclass(frozen=True)
class ContractionFit:
    """A linear-convergence fit ``||x_k - x*|| ~= initial_distance * c^k`` over ``[start, stop)``."""

    c: float
    initial_distance: float
    start: int
    stop: int
    r2: float

    @property
    def n_points(self) -> int:
        return self.stop - self.start


def estimate_contraction(
    distances: Sequence[float], start: int = 0, stop: int | None = None, min_points: int = 3
) -> ContractionFit:
    """Fit ``log ||x_k - x*||`` against ``k`` by least squares over ``[start, stop)``.

    ``distances[k]`` is the distance of iterate ``k`` to the fixed point (in practice to the
    final iterate of a long run). Zero distances (the final iterate itself) are left out. The
    fitted intercept estimates ``||x_0 - x*||``.

    Raises
    ------
    NotLinearlyConvergentError
        Too few positive points in the window, or a slope that is not negative (no contraction).
    """
    d = np.asarray(distances, dtype=np.float64)
    stop = d.size if stop is None else min(stop, d.size)
    k = np.arange(start, stop)
    dk = d[start:stop]
    keep = np.isfinite(dk) & (dk > 0)
    k, dk = k[keep], dk[keep]
    if k.size < min_points:
        raise NotLinearlyConvergentError(
            f"need at least {min_points} positive distances in iterations [{start}, {stop}) to fit a "
            f"contraction rate, got {k.size}"
        )
    y = np.log(dk)
    slope, intercept = np.polyfit(k, y, 1)
    # A flat sequence fits a slope of about -1e-17 from rounding alone: demand a real decline.
    if not slope < -1e-12 * max(1.0, float(np.abs(y).max())):
        raise NotLinearlyConvergentError(
            f"distances to the final iterate do not shrink over iterations [{start}, {stop}) "
            f"(fitted log-slope {slope:.3g} >= 0): no linear convergence to fit"
        )
    resid = y - (slope * k + intercept)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 1.0
    return ContractionFit(c=float(np.exp(slope)), initial_distance=float(np.exp(intercept)), start=start, stop=stop, r2=r2)


@dataclass(frozen=True)
class ContractionEstimate:
    """A contraction fit with bootstrap percentile intervals for ``c`` and ``||x_0 - x*||``.

    ``c_low, c_high`` (and ``initial_distance_low, _high``) bound the central ``level`` of the
    fits to ``n_boot`` resamples (with replacement) of the points of the fit window. The
    interval measures how well a single rate describes the window: it is a point when the
    distances shrink exactly geometrically, and wide when the rate drifts along the run.
    """

    fit: ContractionFit
    c_low: float
    c_high: float
    initial_distance_low: float
    initial_distance_high: float
    level: float
    n_boot: int

    @property
    def c(self) -> float:
        return self.fit.c

    @property
    def initial_distance(self) -> float:
        return self.fit.initial_distance


def estimate_contraction_ci(
    distances: Sequence[float],
    start: int = 0,
    stop: int | None = None,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    min_points: int = 5,
    min_r2: float = 0.5,
) -> ContractionEstimate:
    """:func:`estimate_contraction` with a bootstrap over the fit window.

    Raises
    ------
    NotLinearlyConvergentError
        As :func:`estimate_contraction`; also when the log-linear fit explains less than
        ``min_r2`` of the variance of ``log ||x_k - x*||`` (the distances do not shrink
        geometrically enough for one rate to mean anything), or when fewer than half of the
        resamples can be fitted.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 10:
        raise ValueError(f"n_boot must be at least 10, got {n_boot}")
    fit = estimate_contraction(distances, start, stop, min_points=min_points)
    if fit.r2 < min_r2:
        raise NotLinearlyConvergentError(
            f"log-distances over iterations [{fit.start}, {fit.stop}) fit a line with R^2 = {fit.r2:.3f} < {min_r2}: "
            "the trajectory does not converge linearly enough to estimate one contraction rate "
            "(try a later or shorter fit window)"
        )
    d = np.asarray(distances, dtype=np.float64)[fit.start : fit.stop]
    k = np.arange(fit.start, fit.stop)
    keep = np.isfinite(d) & (d > 0)
    k, y = k[keep], np.log(d[keep])
    rng = np.random.default_rng(seed)
    slopes, intercepts = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, k.size, size=k.size)
        if np.unique(k[idx]).size < 2:
            continue
        s, i = np.polyfit(k[idx], y[idx], 1)
        if s < 0:
            slopes.append(s)
            intercepts.append(i)
    if len(slopes) < n_boot // 2:
        raise NotLinearlyConvergentError(
            f"only {len(slopes)} of {n_boot} bootstrap resamples of iterations [{fit.start}, {fit.stop}) show contraction"
        )
    q = [(1.0 - level) / 2 * 100, (1.0 + level) / 2 * 100]
    c_lo, c_hi = np.exp(np.percentile(slopes, q))
    d_lo, d_hi = np.exp(np.percentile(intercepts, q))
    return ContractionEstimate(
        fit=fit,
        c_low=float(min(c_lo, fit.c)),
        c_high=float(max(c_hi, fit.c)),
        initial_distance_low=float(min(d_lo, fit.initial_distance)),
        initial_distance_high=float(max(d_hi, fit.initial_distance)),
        level=level,
        n_boot=n_boot,
    )


def local_contraction_rates(distances: Sequence[float], window: int, stop: int | None = None) -> np.ndarray:
    """Rates fitted over consecutive windows of ``window`` iterations of ``[0, stop)``; NaN for a
    window that cannot be fitted. A spread of these is a rate that is not constant along the run."""
    if window < 2:
        raise ValueError(f"window must be at least 2, got {window}")
    d = np.asarray(distances, dtype=np.float64)
    stop = d.size if stop is None else min(stop, d.size)
    out = []
    for a in range(0, max(stop - window + 1, 1), window):
        try:
            out.append(estimate_contraction(d, a, min(a + window, stop), min_points=2).c)
        except NotLinearlyConvergentError:
            out.append(np.nan)
    return np.asarray(out)


def bound_verdicts(rework: np.ndarray, bound: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """Per run: 1.0 where the bound held (``rework <= ceil(bound)``), 0.0 where it failed, NaN
    where it cannot be told (no bound, or a censored run whose lower-bound rework is still
    within the bound)."""
    rework = np.asarray(rework, dtype=np.float64)
    bound = np.asarray(bound, dtype=np.float64)
    held = rework <= np.ceil(bound - 1e-9)
    verdict = np.where(held, 1.0, 0.0)
    unknown = ~np.isfinite(bound) | (np.asarray(censored, dtype=bool) & held)
    verdict[unknown] = np.nan
    return verdict
