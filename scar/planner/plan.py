"""A bound-driven checkpoint planner (docs/design.md §8; beyond the paper).

Given a model's size, the cost of writing (and reading back) a checkpoint, the failure rate
(mean iterations between failures, MTBF, and the fraction of server nodes a failure takes) and
the model's contraction rate ``c``, :func:`plan` scores every candidate (strategy, interval
``C``, fraction ``r``) by its expected cost per iteration:

    cost = bytes * write_cost / C                                  (checkpoint I/O per iteration)
         + (expected_rework * iteration_time + restore_time) / MTBF (failures per iteration x their cost)

and compares the cheapest with traditional checkpointing at Young/Daly's interval
``C* = sqrt(2 * checkpoint_time * MTBF)`` (both in iterations).

What is a bound and what is an estimate:

- ``expected_rework`` of a partial strategy is a :class:`~scar.planner.calibration.ReworkModel`
  (the worst-case bound ``log_{1/c}(1 + ||delta|| / (c^T ||x_0 - x*||))`` times a scale fitted
  on the experiment's failure trials, or the bound itself without trials) evaluated at an
  *estimate* of the perturbation each strategy causes, averaged over failure iterations ``T``
  uniform in the run. The bound-priced cost stays beside it (``cost_per_iteration_bound``,
  ``rank_bound``) for comparison. Traditional recovery restarts
  the whole job from its last full save ``s`` and replays the iterations since exactly, so its
  rework is the staleness ``T - s`` itself (what the failure trials measure), not a bound. The
  bound is an upper bound only for a deterministic update with a constant rate ``c``; for a
  stochastic one and an estimated ``c`` the result is an estimate.
- The perturbation norm comes from the baseline trajectory when one is given
  (:class:`TrajectoryMovement`: the policies are replayed on it and ``E||delta_T||^2`` is
  measured at every ``T``, scaled by the lost fraction for partial recovery: exact in
  expectation over which nodes fail), else from the contraction model ``||x_k - x*|| = d0 c^k``
  along one direction (:class:`GeometricMovement`, which cannot see what ``priority`` gains and
  scores it as ``round_robin``: an over-estimate of its perturbation).
- Checkpoint I/O counts the bytes the policy writes over a failure-free run of
  ``run_iterations`` iterations (replayed on the trajectory; ``1 / C`` of the model per
  iteration in the geometric model), so an interval longer than the run writes nothing.
  A whole-job save also writes the workers' state (``PlanInputs.worker_bytes``).
- Second-order effects are left out: failures during rework, failures during a checkpoint,
  and the run getting longer with every failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from scar.checkpoint.checkpointer import Checkpointer, TouchedAt
from scar.checkpoint.strategy import DEFAULT_STRATEGIES, Strategy, get_strategy
from scar.core.blocks import BlockLayout
from scar.core.bounds import iteration_cost_bound
from scar.measure.trajectory import Baseline
from scar.planner.calibration import BOUND, ReworkModel, fit_rework_model
from scar.planner.inputs import PlanInputs, PlannerSettings, candidates


def young_daly_interval(checkpoint_iterations: float, mtbf_iterations: float) -> int:
    """Young/Daly's interval ``sqrt(2 * checkpoint cost * MTBF)`` (iterations), rounded, at least 1."""
    if not checkpoint_iterations >= 0 or not mtbf_iterations > 0:
        raise ValueError(f"need checkpoint cost >= 0 and MTBF > 0, got {checkpoint_iterations} and {mtbf_iterations}")
    return max(1, int(round(math.sqrt(2.0 * checkpoint_iterations * mtbf_iterations))))


class Movement(Protocol):
    """``E||delta_T||^2`` of a strategy at every failure iteration ``T = 1 .. run_iterations - 1``,
    and the staleness ``s_T`` of a full rollback (0 where not a full rollback)."""

    def delta_squared(self, strategy: Strategy, interval: int, fraction: float) -> tuple[np.ndarray, np.ndarray]: ...

    def saves_per_iteration(self, strategy: Strategy, interval: int) -> float:
        """Bytes written per iteration of a failure-free run, as a fraction of one full checkpoint."""
        ...


def _last_full_save(T: np.ndarray, interval: int) -> np.ndarray:
    """Iteration of the last full save before a failure after ``T`` (saves at multiples of C, < T)."""
    return ((T - 1) // interval) * interval


@dataclass
class GeometricMovement:
    """``x_k - x* = d0 c^k u`` for one fixed direction ``u``: ``||x_T - x_{T-s}|| = d0 c^{T-s} (1 - c^s)``.

    Fractional policies are scored as ``round_robin`` (each block saved every ``C`` iterations,
    staggered by ``r C``); ``priority`` can only do better.
    """

    c: float
    initial_distance: float
    run_iterations: int

    def delta_squared(self, strategy, interval, fraction):
        s, r = strategy, strategy.r
        T = np.arange(1, self.run_iterations)

        def moved_sq(stale_at: np.ndarray) -> np.ndarray:
            return (self.initial_distance * self.c**stale_at * (1.0 - self.c ** (T - stale_at))) ** 2

        if s.checkpoint == "full":
            at = _last_full_save(T, interval)
            d2, stale = moved_sq(at), T - at
        else:
            step = max(1, int(round(r * interval)))
            groups = max(1, int(round(1 / r)))
            parts = []
            for j in range(groups):
                # Group j is saved at iterations = j*step + m*C (m >= 0), the last one before T.
                first = (j + 1) * step
                at = np.where(T > first, first + ((T - 1 - first) // interval) * interval, 0)
                parts.append(moved_sq(np.maximum(at, 0)))
            d2, stale = np.mean(parts, axis=0), np.zeros_like(T)
        if s.recovery == "partial":
            d2 = d2 * fraction
            stale = np.zeros_like(T)
        return d2, stale

    def saves_per_iteration(self, strategy, interval):
        return 1.0 / interval


@dataclass
class TrajectoryMovement:
    """Replays each checkpoint policy along a recorded trajectory.

    ``snapshots[name]`` has shape ``(K + 1, rows, cols)``: the server arrays at iterations
    ``0..K``. At each failure iteration ``T`` the distance between ``x_T`` and the image the
    policy holds (its saves before ``T``, as in the failure trials) is measured; partial
    recovery loses a random ``fraction`` of the blocks, so its ``E||delta||^2`` is that
    fraction of the squared distance.
    """

    snapshots: Mapping[str, np.ndarray]
    seed: int = 0
    #: The rows each iteration accessed (:attr:`~scar.measure.trajectory.Baseline.touched_at`),
    #: for the frequency policy; None: every row, every iteration.
    touched_at: TouchedAt | None = None

    def __post_init__(self) -> None:
        lengths = {a.shape[0] for a in self.snapshots.values()}
        if len(lengths) != 1 or min(lengths) < 3:
            raise ValueError("trajectory snapshots must share a first axis of at least 3 iterations")
        self._cache: dict[tuple[str, int, float], tuple[np.ndarray, float]] = {}

    @property
    def run_iterations(self) -> int:
        return next(iter(self.snapshots.values())).shape[0] - 1

    def _at(self, k: int) -> dict[str, np.ndarray]:
        return {n: a[k] for n, a in self.snapshots.items()}

    def _replay(self, strategy: Strategy, interval: int) -> np.ndarray:
        key = (strategy.checkpoint, interval, strategy.r)
        if key not in self._cache:
            ckpt = Checkpointer(strategy.policy(interval, seed=self.seed))
            layout = BlockLayout.from_arrays(self._at(0))
            out = []
            full = ckpt.advance_to(1, self._at).bytes_written  # the initial full save
            for T in range(1, self.run_iterations):
                image = ckpt.advance_to(T, self._at, self.touched_at).image  # the saves before T, one replay in all
                assert image is not None
                out.append(float(np.sum(layout.block_distances(self._at(T), image.values) ** 2)))
            # The saves of iterations 1..run_iterations (a failure-free run saves after its last).
            written = ckpt.advance_to(self.run_iterations + 1).bytes_written - full
            self._cache[key] = (np.asarray(out), written / (full * self.run_iterations))
        return self._cache[key]

    def saves_per_iteration(self, strategy, interval):
        return self._replay(strategy, interval)[1]

    def delta_squared(self, strategy, interval, fraction):
        s = strategy
        d2 = self._replay(s, interval)[0]
        T = np.arange(1, self.run_iterations)
        if s.recovery == "partial":
            return d2 * fraction, np.zeros_like(T)
        stale = T - _last_full_save(T, interval) if s.checkpoint == "full" else np.zeros_like(T)
        return d2, stale


def score(
    inputs: PlanInputs, movement: Movement, strategy: Strategy, interval: int, rework_model: ReworkModel = BOUND
) -> dict[str, float | str | int]:
    """Expected costs (seconds per iteration) of one candidate, rework priced by ``rework_model``
    (and, for comparison, by the bound: the ``*_bound`` columns)."""
    s = strategy
    d2, stale = movement.delta_squared(strategy, interval, inputs.failure_fraction)
    T = np.arange(1, d2.size + 1)
    norms = np.sqrt(d2)
    if s.whole_job:
        # A whole-job restart replays the iterations since its save exactly: its rework is that
        # staleness, as the failure trials measure it, not a bound.
        rework = rework_bound = float(np.mean(stale))
    else:
        bounds = [iteration_cost_bound(n, int(t), inputs.c, inputs.initial_distance) for n, t in zip(norms, T)]
        rework_bound = float(np.mean(bounds))
        rework = rework_model.scale * rework_bound
    worker = inputs.worker_bytes if s.whole_job else 0.0
    restored = inputs.model_bytes * (1.0 if s.recovery == "full" else inputs.failure_fraction) + worker
    saved = inputs.model_bytes + worker
    checkpoint = saved * inputs.write_seconds_per_byte * movement.saves_per_iteration(strategy, interval)

    def per_failure(rw: float) -> float:
        return (rw * inputs.seconds_per_iteration + restored * inputs.restore_per_byte) / inputs.mtbf_iterations

    failure, failure_bound = per_failure(rework), per_failure(rework_bound)
    return {
        "strategy": strategy.name,
        "C": interval,
        "r": strategy.r,
        "expected_delta_norm": float(np.sqrt(d2.mean())),
        "expected_rework": rework,
        "checkpoint_cost": checkpoint,
        "failure_cost": failure,
        "cost_per_iteration": checkpoint + failure,
        "expected_rework_bound": rework_bound,
        "cost_per_iteration_bound": checkpoint + failure_bound,
    }


@dataclass(frozen=True)
class Plan:
    """The scored candidates (cheapest first), the recommendation and the reference."""

    table: pd.DataFrame
    best: pd.Series
    young_daly: pd.Series
    young_daly_interval: int
    inputs: PlanInputs
    rework_model: ReworkModel = BOUND

    @property
    def saving(self) -> float:
        """``1 - cost(best) / cost(traditional at Young/Daly's C)``, overhead per iteration."""
        ref = float(self.young_daly["cost_per_iteration"])
        return 1.0 - float(self.best["cost_per_iteration"]) / ref if ref > 0 else 0.0

    @property
    def time_saving(self) -> float:
        """The same on the whole time per iteration (the iteration itself included)."""
        t = self.inputs.seconds_per_iteration
        return 1.0 - (t + float(self.best["cost_per_iteration"])) / (t + float(self.young_daly["cost_per_iteration"]))


def plan(
    inputs: PlanInputs,
    movement: Movement | None = None,
    *,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    intervals: Sequence[int] | None = None,
    r_values: Sequence[float] = (1.0, 0.5, 0.25, 0.125),
    rework_model: ReworkModel = BOUND,
) -> Plan:
    """Score every candidate, rework priced by ``rework_model``, and recommend the cheapest (see
    the module's docstring). ``rank_bound`` is each candidate's rank with rework priced by the bound."""
    if movement is None:
        movement = GeometricMovement(inputs.c, inputs.initial_distance, inputs.run_iterations)
    yd = young_daly_interval(inputs.checkpoint_iterations, inputs.mtbf_iterations)
    if intervals is None:
        intervals = sorted({2**i for i in range(0, 11) if 2**i < inputs.run_iterations} | {yd})
    if not len(strategies):
        raise ValueError("--strategies must name at least one strategy")
    cands = candidates(strategies, intervals, r_values)
    if not cands:
        raise ValueError("no valid (strategy, C, r) candidate: check --intervals and --r-values (r * C must be whole)")
    rows = [score(inputs, movement, s, C, rework_model) for s, C in cands]
    ref = score(inputs, movement, get_strategy("traditional"), yd, rework_model)
    table = pd.DataFrame(rows)
    keys = ["strategy", "C", "r"]
    by_bound = table.sort_values(["cost_per_iteration_bound", *keys], kind="stable", ignore_index=True)
    table = table.sort_values(["cost_per_iteration", *keys], kind="stable", ignore_index=True)
    rank_bound = {tuple(r): i + 1 for i, r in enumerate(by_bound[keys].itertuples(index=False))}
    table["rank"] = np.arange(1, len(table) + 1)
    table["rank_bound"] = [rank_bound[tuple(r)] for r in table[keys].itertuples(index=False)]
    return Plan(
        table=table, best=table.iloc[0], young_daly=pd.Series(ref), young_daly_interval=yd, inputs=inputs,
        rework_model=rework_model,
    )  # fmt: skip


def format_plan(p: Plan, top: int = 8) -> str:
    """The plan as a text table for the terminal."""
    i = p.inputs
    lines = [
        f"model {i.model_bytes:.4g} bytes; full checkpoint {i.checkpoint_seconds:.4g} s = {i.checkpoint_iterations:.3g} iterations; "
        f"MTBF {i.mtbf_iterations:g} iterations; a failure loses {i.failure_fraction:g} of the nodes; "
        f"c = {i.c:.4g}, ||x_0 - x*|| = {i.initial_distance:.4g}, run of {i.run_iterations} iterations",
        "",
        f"{'strategy':<22}{'C':>5}{'r':>7}{'E||delta||':>12}{'E[rework]':>11}{'ckpt/it':>11}{'fail/it':>11}{'cost/it':>11}",
    ]

    def row(r: pd.Series, mark: str = "") -> str:
        return (
            f"{r['strategy']:<22}{int(r['C']):>5}{r['r']:>7.3g}{r['expected_delta_norm']:>12.4g}{r['expected_rework']:>11.3f}"
            f"{r['checkpoint_cost']:>11.4g}{r['failure_cost']:>11.4g}{r['cost_per_iteration']:>11.4g}{mark}"
        )

    for k in range(min(top, len(p.table))):
        lines.append(row(p.table.iloc[k], "   <- recommended" if k == 0 else ""))
    lines.append(row(p.young_daly, f"   <- traditional at Young/Daly's C* = {p.young_daly_interval}"))
    lines += [
        "",
        f"recommended: {p.best['strategy']} with C = {int(p.best['C'])}, r = {p.best['r']:g}",
        f"expected saving against traditional at Young/Daly's interval: {p.saving:.1%} of the fault-tolerance overhead "
        f"({p.time_saving:.2%} of the total time per iteration)",
        "costs are seconds per iteration; E[rework] is a whole-job restart's staleness for traditional and, for partial"
        f" strategies, {p.rework_model.describe()} at the estimated perturbation (an estimate, see `scar.planner.plan`)",
    ]
    return "\n".join(lines)


def plan_for_baseline(settings: PlannerSettings, baseline: Baseline, trials: pd.DataFrame | None = None) -> Plan:
    """The plan for ``baseline`` at the configured costs, perturbation norms measured on its
    trajectory, rework calibrated on ``trials`` (the experiment's failure trials; without them,
    or with fewer than ``planner.min_calibration_trials``, the bound)."""
    movement = TrajectoryMovement(
        {n: baseline.snapshots[n] for n in baseline.server_params}, seed=baseline.seed, touched_at=baseline.touched_at
    )
    inputs = settings.inputs(baseline)
    model = BOUND
    if trials is not None:
        model = fit_rework_model(
            trials, inputs.c, inputs.initial_distance, min_trials=settings.min_calibration_trials, seed=baseline.seed
        )
    return plan(
        inputs,
        movement,
        strategies=settings.strategies,
        intervals=settings.intervals,
        r_values=settings.r_values,
        rework_model=model,
    )


def plan_table(p: Plan, experiment: Sequence[str]) -> pd.DataFrame:
    """The plan's scored candidates with the experiment, the recommendation and the reference."""
    t = p.table.copy()
    t.insert(0, "dataset", experiment[1])
    t.insert(0, "model", experiment[0])
    t["recommended"] = False
    t.loc[0, "recommended"] = True
    ref = p.young_daly.to_dict() | {"model": experiment[0], "dataset": experiment[1], "recommended": False}
    t["young_daly_reference"] = False
    ref["young_daly_reference"] = True
    out = pd.concat([t, pd.DataFrame([ref])], ignore_index=True)
    m = p.rework_model
    out["rework_scale"], out["rework_scale_low"], out["rework_scale_high"] = m.scale, m.scale_low, m.scale_high
    out["rework_model"], out["calibration_trials"] = m.source, m.n_trials
    out["seconds_per_iteration"] = p.inputs.seconds_per_iteration
    return out
