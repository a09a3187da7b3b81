"""Failure trials: sample them, and measure each strategy's rework on one (docs/design.md §6).

A trial is one failure: at a position ``u`` in the failure window (a fraction of ``K_base``,
sampled before the baseline is known so that a workflow's DAG stays static), a fraction ``f``
of the server nodes is lost. :func:`run_trial` rebuilds every policy's checkpoint at the
failure by replaying it over the baseline's snapshots, kills the failed nodes' rows, applies
each strategy's recovery through the engine and measures the rework (:mod:`scar.measure.rework`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.policies import CHECKPOINT_POLICIES, CheckpointPolicy
from scar.checkpoint.stores import Checkpoint
from scar.checkpoint.strategy import DEFAULT_STRATEGIES, Strategy, resolve_strategies
from scar.core.blocks import BlockLayout, assign_blocks, params_distance
from scar.core.bounds import iteration_cost_bound
from scar.core.failures import Failure, check_window, sample_failed_nodes
from scar.core.recovery import recover
from scar.measure.baseline_engine import BaselineEngine
from scar.measure.engine import Engine, InProcessEngine
from scar.measure.rework import RunLimits, measure_rework
from scar.measure.trajectory import Baseline
from scar.models.base import Model

#: Columns of the tidy per-trial table, in order.
TRIAL_COLUMNS: tuple[str, ...] = (
    "model", "dataset", "dataset_label", "data_source", "strategy", "checkpoint_policy",
    "recovery_policy", "trial", "failure_position", "failure_iteration", "failure_fraction",
    "failed_nodes", "n_nodes", "lost_blocks", "r", "C", "seed", "codec", "checkpoint_bytes", "checkpoint_index_bytes",
    "mean_staleness", "perturbation_norm", "k_base", "k_pert", "rework", "rework_fractional",
    "censored", "censor_reason", "bound", "c_hat",
)  # fmt: skip


def stable_seed(*parts: Any) -> int:
    """A seed derived from ``parts`` that is the same in every process and Python version."""
    return zlib.crc32("/".join(map(str, parts)).encode())


@dataclass(frozen=True)
class TrialSpec:
    """One failure to inject: where in the run (``position`` in [0, 1) of ``K_base``), how big
    (``fraction`` of the nodes), and the seed choosing the nodes."""

    trial: int
    position: float
    fraction: float
    seed: int


def plan_trials(
    n_trials: int, fractions: Sequence[float], window: tuple[float, float], seed: int, *, key: str = ""
) -> list[TrialSpec]:
    """``n_trials`` failure positions, each crossed with every failure fraction.

    The position of trial ``i`` is shared by all fractions (so fractions compare on the same
    failure iterations); the failed nodes are drawn per (trial, fraction). ``key`` (e.g.
    "model/dataset") decorrelates the plans of different experiments.
    """
    lo, hi = check_window(window)
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    rng = np.random.default_rng(stable_seed(seed, key, "positions"))
    positions = rng.uniform(lo, hi, size=n_trials)
    return [
        TrialSpec(trial=i, position=float(positions[i]), fraction=float(f), seed=stable_seed(seed, key, i, f))
        for i in range(n_trials)
        for f in fractions
    ]


def failure_iteration(position: float, k_base: int) -> int:
    """The failure iteration for ``position`` in [0, 1): in ``[1, k_base - 1]``."""
    return int(min(max(1, math.floor(position * k_base)), k_base - 1))


@dataclass(frozen=True)
class TrialSettings:
    """How trials are evaluated (the same for every trial of an experiment).

    ``strategies`` are resolved (:func:`~scar.checkpoint.strategy.resolve_strategies`): each
    carries its ``r``.
    """

    strategies: tuple[Strategy, ...] = resolve_strategies(DEFAULT_STRATEGIES, (0.25,))
    interval: int = 8
    n_nodes: int = 8
    placement: str = "round_robin"
    rework_cap: float = 2.0
    divergence_factor: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.strategies:
            raise ValueError("at least one strategy is needed")
        for s in self.strategies:
            if not isinstance(s, Strategy):
                raise TypeError(f"strategies must be resolved Strategy objects, got {s!r} (see resolve_strategies)")
            s.policy(self.interval)  # validates r * C
        if self.rework_cap <= 0:
            raise ValueError(f"rework_cap must be positive, got {self.rework_cap}")
        if self.divergence_factor <= 0:
            raise ValueError(f"divergence_factor must be positive, got {self.divergence_factor}")

    @classmethod
    def from_names(
        cls, strategies: Sequence[str] = DEFAULT_STRATEGIES, r_values: Sequence[float] = (0.25,), **settings: Any
    ) -> TrialSettings:
        """Settings with the named strategies, each fractional one at every ``r`` of ``r_values``."""
        interval = int(settings.get("interval", cls.interval))
        return cls(strategies=resolve_strategies(strategies, [float(r) for r in r_values], interval), **settings)

    def check_layout(self, shapes: Mapping[str, tuple[int, int]]) -> None:
        """Raise ValueError, saying why, when server arrays of ``shapes`` cannot be evaluated at
        these settings: fewer blocks than server nodes, or a block wider than some fractional
        strategy's budget per save (it could never be saved)."""
        layout = BlockLayout(tuple(shapes), tuple(int(s[0]) for s in shapes.values()), tuple(int(s[1]) for s in shapes.values()))
        assign_blocks(layout.n_blocks, self.n_nodes, self.placement, self.seed)  # type: ignore[arg-type]
        for s in self.strategies:
            try:
                self.policy(s).budget(layout)
            except ValueError as err:
                raise ValueError(f"strategy {s.name}: {err}") from None

    def cap(self, k_base: int) -> int:
        """Last iteration a recovered run may reach before it is censored."""
        return k_base + max(1, math.ceil(self.rework_cap * k_base))

    def diverge_above(self, loss_0: float, loss_final: float) -> float:
        """Objective above which a recovered run counts as diverged: ``divergence_factor``
        times the baseline's whole descent above its starting point."""
        return loss_0 + self.divergence_factor * abs(loss_0 - loss_final)

    def limits(self, baseline: Baseline) -> RunLimits:
        """When a run recovered on ``baseline`` is censored."""
        return RunLimits(self.cap(baseline.k_base), self.diverge_above(float(baseline.losses[0]), baseline.loss_final))

    def policy(self, strategy: Strategy, model: Model | None = None, data: Any = None) -> CheckpointPolicy:
        """A fresh checkpoint policy of ``strategy`` at these settings' interval and seed, with
        ``model``'s sensitivity on ``data`` (:func:`model_policy`; none without a model)."""
        if model is None:
            return strategy.policy(self.interval, seed=self.policy_seed)
        return model_policy(strategy, self.interval, model, data, seed=self.policy_seed)

    @property
    def policy_seed(self) -> int:
        """Seed of the ``random`` checkpoint policy, independent of the training streams."""
        return stable_seed(self.seed, "random-checkpoint-policy")


def model_policy(strategy: Strategy, interval: int, model: Model, data: Any, seed: int = 0) -> CheckpointPolicy:
    """A fresh checkpoint policy of ``strategy`` that knows ``model``'s sensitivity on ``data``
    (its array weights and restore cost, which ``sensitive_priority`` ranks by): what every
    run of a model checkpoints with, simulated or live."""
    return strategy.policy(interval, seed=seed, weights=model.sensitivity(), restore_cost=model.restore_cost(data))


def _full_save_iteration(image: Checkpoint) -> int:
    """The iteration of a full checkpoint (every row saved together)."""
    its = np.unique(np.concatenate(list(image.saved_at.values())))
    if its.size != 1:
        raise ValueError(f"a whole-job restart needs a full checkpoint; rows were saved at iterations {its.tolist()}")
    return int(its[0])


def trial_failure(baseline: Baseline, spec: TrialSpec, settings: TrialSettings) -> tuple[Failure, BlockLayout, np.ndarray]:
    """The failure of trial ``spec`` on ``baseline``: its iteration and nodes, the blocks'
    layout and the mask of the blocks it loses (the same for a simulated and a live trial)."""
    T = failure_iteration(spec.position, baseline.k_base)
    layout = BlockLayout.from_arrays(baseline.server_state_at(T))
    node_of_block = assign_blocks(layout.n_blocks, settings.n_nodes, settings.placement, settings.seed)  # type: ignore[arg-type]
    failure = Failure(T, sample_failed_nodes(settings.n_nodes, spec.fraction, np.random.default_rng(spec.seed)))
    return failure, layout, failure.lost_blocks(node_of_block)


class CheckpointReplays:
    """The checkpoint each policy holds when a failure strikes, replayed over one baseline and
    shared by the trials that ask for it (a job's trials are on one baseline).

    A policy's replay goes on from where its last request stopped when the next failure comes
    later (one replay in all for increasing iterations), and a failure at the same iteration
    (the same position under another failure fraction) reuses the last result; an earlier one
    starts a new replay from iteration 0. What is returned is a copy, never changed afterwards.
    """

    def __init__(self, baseline: Baseline) -> None:
        self.baseline = baseline
        self._runs: dict[tuple[Any, ...], Checkpointer] = {}
        self._last: dict[tuple[Any, ...], tuple[int, tuple[Checkpoint, int, int, int]]] = {}

    def at(self, key: tuple[Any, ...], make: Callable[[], Checkpointer], T: int) -> tuple[Checkpoint, int, int, int]:
        """(image, codec bytes, index bytes, saves) of the saves of iterations ``< T`` of the
        Checkpointer ``make()`` builds for ``key`` (the same key must always build the same one)."""
        last = self._last.get(key)
        if last is not None and last[0] == T:
            return last[1]
        ckpt = self._runs.get(key)
        if ckpt is None or ckpt.last_iteration is None or ckpt.last_iteration > T - 1:
            ckpt = self._runs[key] = make()
        ckpt.advance_to(T, self.baseline.server_state_at, self.baseline.touched_at)
        image = ckpt.image
        assert image is not None
        frozen = Checkpoint(
            values={n: a.copy() for n, a in image.values.items()}, saved_at={n: a.copy() for n, a in image.saved_at.items()}
        )
        result = (frozen, ckpt.bytes_written, ckpt.store.index_bytes_written, ckpt.n_saves)
        self._last[key] = (T, result)
        return result


def run_trial(
    model: Model,
    data: Any,
    baseline: Baseline,
    spec: TrialSpec,
    settings: TrialSettings,
    *,
    dataset: str = "",
    dataset_label: str = "",
    data_source: str = "",
    engine: Engine | None = None,
    replays: CheckpointReplays | None = None,
) -> list[dict[str, Any]]:
    """Measure every strategy on one failure; one row per strategy (:data:`TRIAL_COLUMNS`).

    ``replays`` shares the policies' checkpoint replays between the trials of one baseline
    (the results are the same with or without it)."""
    # A whole-job restart replays the baseline's own iterations: served from its snapshots.
    engine = engine if engine is not None else BaselineEngine(InProcessEngine(model, data, baseline.seed), baseline)
    replays = replays if replays is not None and replays.baseline is baseline else CheckpointReplays(baseline)
    failure, layout, lost_mask = trial_failure(baseline, spec, settings)
    T = failure.iteration
    x_T = baseline.server_state_at(T)
    lost_rows = layout.row_masks(lost_mask)
    limits = settings.limits(baseline)
    fit = baseline.contraction
    # The checkpoint each policy holds at the failure (saves of iterations < T), replayed once
    # per policy: strategies that share a policy share its checkpoint.
    worker_bytes = baseline.worker_state_bytes
    declared = bool(model.sensitivity()) or model.restore_cost(data) is not None
    measured: dict[tuple[Any, ...], dict[str, Any]] = {}
    rows = []
    for strategy in settings.strategies:
        if strategy.recovery == "rebuild" and not model.rebuilds:
            continue  # nothing to rebuild: it would be the partial recovery of its policy
        if CHECKPOINT_POLICIES[strategy.checkpoint].uses_accesses and not baseline.touched:
            continue  # a dense model touches every row: access counts would only rank by age
        # Without a declared sensitivity, sensitive_priority is SCAR's priority exactly: the
        # same checkpoint, the same recovery, the same (deterministic) measurement.
        same_as = "priority" if strategy.checkpoint == "sensitive_priority" and not declared else strategy.checkpoint
        key = (same_as, strategy.r, strategy.codec, strategy.codec_params)
        if (key, strategy.recovery) in measured:
            row = measured[(key, strategy.recovery)]
            rows.append({**row, "strategy": strategy.name, "checkpoint_policy": strategy.checkpoint})
            continue
        image, nbytes, index_bytes, n_saves = replays.at(
            key, lambda s=strategy: Checkpointer(settings.policy(s, model, data), codec=s.make_codec()), T
        )
        # The perturbation is what the recovery writes into the server, before any resync.
        delta = params_distance(recover(strategy.recovery, x_T, image.values, lost_rows), x_T, baseline.server_params)
        if strategy.whole_job:
            # A restart of the whole job from its last full save s: its full saves held the
            # workers' state and counters too (their bytes count), and iterations s+1..T replay.
            s = _full_save_iteration(image)
            job = baseline.state_at(s)
            assert all(np.array_equal(job[n], image.values[n]) for n in baseline.server_params)
            nbytes += n_saves * worker_bytes
            engine.rollback(job, s)
        else:
            engine.load(baseline.state_at(T), T)
            engine.kill(lost_rows)
            engine.restore(strategy.recovery, image.values, lost_rows)
        outcome = measure_rework(engine, baseline, limits, failed_at=T)
        stale = np.concatenate([T - image.saved_at[n] for n in layout.names])[lost_mask]
        rows.append(
            {
                "model": model.name,
                "dataset": dataset,
                "dataset_label": dataset_label or dataset,
                "data_source": data_source,
                "strategy": strategy.name,
                "checkpoint_policy": strategy.checkpoint,
                "recovery_policy": strategy.recovery,
                "trial": spec.trial,
                "failure_position": spec.position,
                "failure_iteration": T,
                "failure_fraction": spec.fraction,
                "failed_nodes": ";".join(map(str, failure.failed_nodes)),
                "n_nodes": settings.n_nodes,
                "lost_blocks": int(lost_mask.sum()),
                "r": strategy.r,
                "C": settings.interval,
                "seed": baseline.seed,
                "codec": strategy.make_codec().name,
                "checkpoint_bytes": nbytes,
                "checkpoint_index_bytes": index_bytes,
                "mean_staleness": float(stale.mean()) if stale.size else 0.0,
                "perturbation_norm": delta,
                "k_base": baseline.k_base,
                **outcome.columns(),
                "bound": iteration_cost_bound(delta, T, fit.c, fit.initial_distance) if fit else np.nan,
                "c_hat": fit.c if fit else np.nan,
            }
        )
        measured[(key, strategy.recovery)] = rows[-1]
    return rows


def trials_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows from :func:`run_trial` as a frame with :data:`TRIAL_COLUMNS`."""
    return pd.DataFrame(list(rows), columns=list(TRIAL_COLUMNS))
