"""Failure trials: sample them, and measure each strategy's rework on one (SCAR.md section 4).

A trial is one failure: at a position ``u`` in the failure window (a fraction of ``K_base``,
sampled before the baseline is known so that a workflow's DAG stays static), a fraction ``f``
of the server nodes is lost. :func:`run_trial` rebuilds every policy's checkpoint store at the
failure from the baseline's snapshots, applies each strategy's recovery, runs the recovered
model to the target with the baseline's random stream and records the rework.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scar.core.blocks import BlockLayout, assign_blocks, params_distance
from scar.core.bounds import iteration_cost_bound
from scar.core.failures import Failure, sample_failed_nodes
from scar.models.base import Model
from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.policies import make_checkpoint_policy
from scar.core.recovery import get_strategy, recover
from scar.checkpoint.stores import Checkpoint
from scar.measure.trajectory import Baseline, run_until_target

#: Columns of the tidy per-trial table, in order.
TRIAL_COLUMNS: tuple[str, ...] = (
    "model", "dataset", "dataset_label", "data_source", "strategy", "checkpoint_policy",
    "recovery_policy", "trial", "failure_position", "failure_iteration", "failure_fraction",
    "failed_nodes", "n_nodes", "lost_blocks", "r", "C", "seed", "checkpoint_bytes",
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
    lo, hi = window
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"failure window must satisfy 0 <= start < end <= 1, got {window}")
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
    """How trials are evaluated (the same for every trial of an experiment)."""

    strategies: tuple[str, ...] = ("traditional", "scar", "full_partial", "round_robin_partial", "random_partial")
    interval: int = 8
    r_values: tuple[float, ...] = (0.25,)
    n_nodes: int = 8
    placement: str = "round_robin"
    rework_cap: float = 2.0
    divergence_factor: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        for s in self.strategies:
            get_strategy(s)
        for r in self.r_values:
            make_checkpoint_policy("priority", self.interval, r)  # validates r and r * C
        if self.rework_cap <= 0:
            raise ValueError(f"rework_cap must be positive, got {self.rework_cap}")
        if self.divergence_factor <= 0:
            raise ValueError(f"divergence_factor must be positive, got {self.divergence_factor}")

    def cap(self, k_base: int) -> int:
        """Last iteration a recovered run may reach before it is censored."""
        return k_base + max(1, math.ceil(self.rework_cap * k_base))

    def diverge_above(self, loss_0: float, loss_final: float) -> float:
        """Objective above which a recovered run counts as diverged: ``divergence_factor``
        times the baseline's whole descent above its starting point."""
        return loss_0 + self.divergence_factor * abs(loss_0 - loss_final)

    @property
    def policy_seed(self) -> int:
        """Seed of the ``random`` checkpoint policy, independent of the training streams."""
        return stable_seed(self.seed, "random-checkpoint-policy")


def replay_checkpoints(
    policy_name: str, interval: int, r: float, baseline: Baseline, failure_at: int, seed: int
) -> tuple[Checkpoint, int]:
    """The checkpoint a policy holds when a failure strikes after iteration ``failure_at``
    (saves of iterations ``< failure_at``), and the bytes it wrote until then."""
    checkpointer = Checkpointer(make_checkpoint_policy(policy_name, interval, r, seed=seed))
    checkpointer.start(baseline.server_state_at(0))
    for k in range(1, failure_at):
        checkpointer.after_iteration(k, baseline.server_state_at(k))
    assert checkpointer.image is not None
    return checkpointer.image, checkpointer.bytes_written


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
) -> list[dict[str, Any]]:
    """Measure every strategy (and every r) on one failure; one row per (strategy, r)."""
    T = failure_iteration(spec.position, baseline.k_base)
    x_T = baseline.server_state_at(T)
    layout = BlockLayout.from_arrays(x_T)
    node_of_block = assign_blocks(layout.n_blocks, settings.n_nodes, settings.placement, settings.seed)  # type: ignore[arg-type]
    failure = Failure(T, sample_failed_nodes(settings.n_nodes, spec.fraction, np.random.default_rng(spec.seed)))
    lost_mask = failure.lost_blocks(node_of_block)
    lost_rows = layout.row_masks(lost_mask)
    all_rows = {n: np.ones(k, dtype=bool) for n, k in zip(layout.names, layout.n_rows)}
    cap = settings.cap(baseline.k_base)
    diverge_above = settings.diverge_above(float(baseline.losses[0]), baseline.loss_final)
    fit = baseline.contraction
    replayed: dict[tuple[str, float], tuple[Checkpoint, int]] = {}
    rows = []
    for name in settings.strategies:
        strategy = get_strategy(name)
        for r in settings.r_values if strategy.fractional else (1.0,):
            key = (strategy.checkpoint, r)
            if key not in replayed:
                replayed[key] = replay_checkpoints(strategy.checkpoint, settings.interval, r, baseline, T, settings.policy_seed)
            image, nbytes = replayed[key]
            restored = recover(strategy.recovery, x_T, image, lost_rows)
            delta = params_distance(restored, x_T, baseline.server_params)
            state = baseline.state_at(T)
            state.update(restored)
            model.after_recovery(state, data, all_rows if strategy.recovery == "full" else lost_rows)
            if all(np.array_equal(state[n], baseline.snapshots[n][T]) for n in state):
                # Same state and same random stream: the run is the baseline's, bit for bit.
                k_pert, k_frac, reason = baseline.k_base, baseline.k_base_fractional, ""
            else:
                run = run_until_target(
                    model, data, state, start=T, target=baseline.target, cap=cap, seed=baseline.seed,
                    diverge_above=diverge_above,
                )  # fmt: skip
                k_pert, k_frac, reason = run.k_reached, run.k_fractional, run.censor_reason
            censored = k_pert is None
            stale = np.concatenate([T - image.saved_at[n] for n in layout.names])[lost_mask]
            rows.append(
                {
                    "model": model.name,
                    "dataset": dataset,
                    "dataset_label": dataset_label or dataset,
                    "data_source": data_source,
                    "strategy": name,
                    "checkpoint_policy": strategy.checkpoint,
                    "recovery_policy": strategy.recovery,
                    "trial": spec.trial,
                    "failure_position": spec.position,
                    "failure_iteration": T,
                    "failure_fraction": spec.fraction,
                    "failed_nodes": ";".join(map(str, failure.failed_nodes)),
                    "n_nodes": settings.n_nodes,
                    "lost_blocks": int(lost_mask.sum()),
                    "r": r,
                    "C": settings.interval,
                    "seed": baseline.seed,
                    "checkpoint_bytes": nbytes,
                    "mean_staleness": float(stale.mean()) if stale.size else 0.0,
                    "perturbation_norm": delta,
                    "k_base": baseline.k_base,
                    "k_pert": np.nan if censored else k_pert,
                    # A censored run's rework is a lower bound: the cap minus K_base.
                    "rework": (cap if censored else k_pert) - baseline.k_base,
                    # Sub-iteration resolution: interpolated crossings of the target.
                    "rework_fractional": (cap if censored else k_frac) - baseline.k_base_fractional,
                    "censored": censored,
                    "censor_reason": reason,
                    "bound": iteration_cost_bound(delta, T, fit.c, fit.initial_distance) if fit else np.nan,
                    "c_hat": fit.c if fit else np.nan,
                }
            )
    return rows


def trials_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows from :func:`run_trial` as a frame with :data:`TRIAL_COLUMNS`."""
    return pd.DataFrame(list(rows), columns=list(TRIAL_COLUMNS))
