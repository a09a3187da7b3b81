"""What the planner needs: its inputs, its candidate settings and its configuration
(docs/design.md §8)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scar.checkpoint.strategy import DEFAULT_STRATEGIES, Strategy, get_strategy, resolve_strategies
from scar.measure.trajectory import Baseline


@dataclass(frozen=True)
class PlanInputs:
    """What the planner needs; every check names the ``scar plan`` option it comes from.

    Times are in seconds (or any one unit: the workflow uses the time of one iteration).
    """

    model_bytes: float
    write_seconds_per_byte: float
    seconds_per_iteration: float
    mtbf_iterations: float
    failure_fraction: float
    c: float
    initial_distance: float
    run_iterations: int
    restore_seconds_per_byte: float | None = None
    #: Bytes of the state outside the server arrays that a whole-job save also writes.
    worker_bytes: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            ("--model-bytes", self.model_bytes, self.model_bytes > 0, "must be positive"),
            ("--write-seconds-per-byte", self.write_seconds_per_byte, self.write_seconds_per_byte >= 0, "must be >= 0"),
            ("--seconds-per-iteration", self.seconds_per_iteration, self.seconds_per_iteration > 0, "must be positive"),
            ("--mtbf", self.mtbf_iterations, self.mtbf_iterations > 0, "must be positive (iterations)"),
            ("--failure-fraction", self.failure_fraction, 0 < self.failure_fraction <= 1, "must be in (0, 1]"),
            ("--c", self.c, 0 < self.c < 1, "must be in (0, 1)"),
            ("--initial-distance", self.initial_distance, self.initial_distance > 0, "must be positive"),
            ("--run-iterations", self.run_iterations, self.run_iterations >= 2, "must be at least 2"),
            ("worker_bytes", self.worker_bytes, self.worker_bytes >= 0, "must be >= 0"),
        ]
        if self.restore_seconds_per_byte is not None:
            r = self.restore_seconds_per_byte
            checks.append(("--restore-seconds-per-byte", r, r >= 0, "must be >= 0"))
        for option, value, ok, why in checks:
            if not (isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value) and ok):
                raise ValueError(f"{option} {why}, got {value!r}")

    @property
    def restore_per_byte(self) -> float:
        return self.write_seconds_per_byte if self.restore_seconds_per_byte is None else self.restore_seconds_per_byte

    @property
    def checkpoint_seconds(self) -> float:
        """Time to write one full checkpoint."""
        return self.model_bytes * self.write_seconds_per_byte

    @property
    def checkpoint_iterations(self) -> float:
        """Time to write one full checkpoint, in iterations."""
        return self.checkpoint_seconds / self.seconds_per_iteration


def candidates(strategies: Sequence[str], intervals: Sequence[int], r_values: Sequence[float]) -> list[tuple[Strategy, int]]:
    """Every valid (strategy at r, C): ``r < 1`` for fractional policies (at ``r = 1`` they are
    the full policy), ``r = 1`` for ``full``; ``r * C`` whole."""
    for r in r_values:
        if not 0 < r <= 1:
            raise ValueError(f"--r-values must be in (0, 1], got {r}")
    out = []
    for s in resolve_strategies(strategies, [r for r in r_values if r != 1.0] or [1.0]):
        if s.fractional and s.r == 1.0:
            continue
        for C in intervals:
            if int(C) != C or C < 1:
                raise ValueError(f"--intervals must be positive integers, got {C}")
            try:
                s.policy(int(C))
            except ValueError:
                continue  # r * C not whole: not a candidate
            out.append((s, int(C)))
    return out


def planner_inputs_for(
    baseline: Baseline, *, checkpoint_cost: float, restore_cost: float, mtbf: float, failure_fraction: float
) -> PlanInputs:
    """Planner inputs for a baseline in units of one iteration's time: writing (reading) a full
    checkpoint costs ``checkpoint_cost`` (``restore_cost``) iterations."""
    if baseline.contraction is None:
        raise ValueError(f"no contraction rate could be fitted on the {baseline.model} baseline: the planner needs c")
    nbytes = float(sum(baseline.snapshots[n][0].nbytes for n in baseline.server_params))
    return PlanInputs(
        model_bytes=nbytes,
        write_seconds_per_byte=checkpoint_cost / nbytes,
        restore_seconds_per_byte=restore_cost / nbytes,
        seconds_per_iteration=1.0,
        mtbf_iterations=mtbf,
        failure_fraction=failure_fraction,
        c=baseline.contraction.c,
        initial_distance=baseline.contraction.initial_distance,
        run_iterations=baseline.k_base,
        worker_bytes=float(baseline.worker_state_bytes),
    )


@dataclass(frozen=True)
class PlannerSettings:
    """The ``planner:`` section of the config (costs in units of one iteration's time)."""

    validate: tuple[str, ...] = ()
    checkpoint_cost: float = 2.0
    restore_cost: float = 2.0
    mtbf: float = 20.0
    failure_fraction: float = 0.25
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    intervals: tuple[int, ...] = (2, 4, 8, 16, 32)
    r_values: tuple[float, ...] = (0.5, 0.25)
    n_replicates: int = 3
    #: Fewer partial-recovery failure trials than this: rework is priced by the bound.
    min_calibration_trials: int = 10

    def __post_init__(self) -> None:
        for key, value, ok in (
            ("checkpoint_cost", self.checkpoint_cost, self.checkpoint_cost >= 0),
            ("restore_cost", self.restore_cost, self.restore_cost >= 0),
            ("mtbf", self.mtbf, self.mtbf > 0),
            ("failure_fraction", self.failure_fraction, 0 < self.failure_fraction <= 1),
            ("n_replicates", self.n_replicates, self.n_replicates >= 1),
            ("min_calibration_trials", self.min_calibration_trials, self.min_calibration_trials >= 1),
        ):
            if not ok:
                raise ValueError(f"planner.{key}: bad value {value!r}")
        for s in self.strategies:
            try:
                get_strategy(s)
            except ValueError as err:
                raise ValueError(f"planner.strategies: {err}") from None
        try:
            if not candidates(self.strategies, self.intervals, self.r_values):
                raise ValueError("no valid (strategy, C, r): r * C must be whole for some pair")
        except ValueError as err:
            raise ValueError(f"planner.intervals/r_values: {err}") from None

    @property
    def n_validated_settings(self) -> int:
        """Settings a validation simulates: every candidate and at most one more, traditional at
        Young/Daly's interval."""
        return len(candidates(self.strategies, self.intervals, self.r_values)) + 1

    def inputs(self, baseline: Baseline) -> PlanInputs:
        """The planner's inputs for ``baseline`` at these costs."""
        return planner_inputs_for(
            baseline,
            checkpoint_cost=self.checkpoint_cost,
            restore_cost=self.restore_cost,
            mtbf=self.mtbf,
            failure_fraction=self.failure_fraction,
        )
