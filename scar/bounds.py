"""The iteration-cost ("rework") bound and the contraction-rate estimate (SCAR.md section 2).

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
