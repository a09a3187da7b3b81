"""One measurement of a recovery: run on from a recovered state to the baseline's target and
count the extra iterations (docs/design.md §6).

Every measurement that perturbs a run at iteration ``T`` — a failure trial, a perturbation of
the study, a finding script — ends the same way: the engine holds the state after ``T``
(recovered, and resynchronised by the model); :func:`measure_rework` takes the shortcut when
that state is the baseline's own (same state, same random stream: the run *is* the baseline's,
bit for bit), else runs on with the baseline's random stream until the objective reaches the
target, a cap, or diverges, and reports the rework in whole and interpolated iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scar.measure.engine import Engine
from scar.measure.trajectory import Baseline, crossing


@dataclass(frozen=True)
class RunLimits:
    """When a recovered run is given up: past iteration ``cap`` (censored at the cap), or at an
    objective above ``diverge_above`` or not finite (censored as diverged)."""

    cap: int
    diverge_above: float = np.inf


@dataclass(frozen=True)
class RecoveredRun:
    """Outcome of a run continued from a recovered state.

    ``k_reached`` is the first iteration at or under the target, or None when censored;
    ``k_fractional`` the interpolated crossing (see :func:`~scar.measure.trajectory.crossing`);
    ``censor_reason`` is ``""``, ``"cap"`` (not reached by ``cap``) or ``"diverged"``.
    """

    k_reached: int | None
    last_iteration: int
    censor_reason: str
    k_fractional: float | None = None

    @property
    def censored(self) -> bool:
        return self.k_reached is None


def run_until_target(engine: Engine, *, target: float, limits: RunLimits) -> RecoveredRun:
    """Step ``engine`` from its current iteration until the objective is at or under ``target``,
    up to iteration ``limits.cap`` at the latest."""
    loss = engine.objective()
    previous = None
    k = engine.iteration
    while True:
        if not np.isfinite(loss) or loss > limits.diverge_above:
            return RecoveredRun(None, k, "diverged")
        if loss <= target:
            return RecoveredRun(k, k, "", crossing(k, loss, previous, target))
        if k >= limits.cap:
            return RecoveredRun(None, k, "cap")
        k = engine.step()
        previous, loss = loss, engine.objective()


@dataclass(frozen=True)
class Rework:
    """The cost of one recovery against the baseline.

    ``k_pert`` is the number of iterations the run executed until it reached the target (the
    iterations a rollback lost included); ``rework`` counts whole iterations (``k_pert -
    K_base``), ``rework_fractional`` the interpolated crossings. A censored run's rework is a
    lower bound: the cap (plus the iterations lost) minus ``K_base``.
    """

    k_pert: int | None
    rework: float
    rework_fractional: float
    censor_reason: str

    @property
    def censored(self) -> bool:
        return self.k_pert is None

    def columns(self) -> dict[str, object]:
        """The rework columns shared by the trial and study tables."""
        return {
            "k_pert": np.nan if self.censored else self.k_pert,
            "rework": self.rework,
            "rework_fractional": self.rework_fractional,
            "censored": self.censored,
            "censor_reason": self.censor_reason,
        }


def measure_rework(engine: Engine, baseline: Baseline, limits: RunLimits, *, failed_at: int | None = None) -> Rework:
    """The rework of the recovered state the engine holds (the state after ``engine.iteration``,
    which must be within the baseline's snapshots); advances the engine.

    ``failed_at`` is the iteration the run had reached when it failed, when a rollback restarted
    it earlier (default: where the engine stands): the iterations between are lost and count
    as rework, ``failed_at - engine.iteration`` of them.
    """
    T = engine.iteration
    lost = 0 if failed_at is None else failed_at - T
    if lost < 0:
        raise ValueError(f"the run failed at iteration {failed_at} but restarts later, at {T}")
    if engine.same_state_as({n: a[T] for n, a in baseline.snapshots.items()}):
        # Same state and same random stream: the run is the baseline's, bit for bit.
        k, k_frac, reason = baseline.k_base, baseline.k_base_fractional, ""
    else:
        run = run_until_target(engine, target=baseline.target, limits=limits)
        k, k_frac, reason = run.k_reached, run.k_fractional, run.censor_reason
    if k is None:
        return Rework(None, lost + limits.cap - baseline.k_base, lost + limits.cap - baseline.k_base_fractional, reason)
    assert k_frac is not None
    return Rework(lost + k, lost + k - baseline.k_base, lost + k_frac - baseline.k_base_fractional, reason)


#: Where the noise floor is measured, as fractions of ``K_base``.
FRESH_STREAM_POSITIONS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)


def fresh_stream_offsets(engine: Engine, baseline: Baseline, limits: RunLimits, *, other_seed: int) -> list[float]:
    """The noise floor of rework: the interpolated rework of the *unperturbed* state after
    iteration ``T`` continued with another random stream (``engine``'s seed, ``other_seed``,
    which must differ from the baseline's), at each of :data:`FRESH_STREAM_POSITIONS`.

    A recovery that decorrelates a stochastic chain from its baseline inherits this offset (it
    is the luck of a fresh draw, not the perturbation); a deterministic model's is 0.
    """
    if other_seed == baseline.seed:
        raise ValueError("the fresh stream needs a seed other than the baseline's")
    out = []
    for u in FRESH_STREAM_POSITIONS:
        T = min(max(1, int(u * baseline.k_base)), baseline.k_base - 1)
        engine.load(baseline.state_at(T), T)
        run = run_until_target(engine, target=baseline.target, limits=limits)
        end = limits.cap if run.censored else run.k_fractional
        assert end is not None
        out.append(float(end - baseline.k_base_fractional))
    return out
