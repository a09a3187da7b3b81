"""Whole training runs under random failures: the check of the planner's predictions.

A run trains the model from ``x_0`` with a checkpoint policy and, after every iteration, may
fail: failures arrive as a seeded Poisson process with a mean of ``mtbf`` iterations between
them (a geometric number of iterations, each with probability ``1 - exp(-1 / mtbf)``). A
failure loses a random ``fraction`` of the server nodes; the strategy's recovery restores from
the checkpoint the policy holds (its saves before that iteration), the model's
``after_recovery`` is called, and training goes on with iteration ``k + 1``'s random stream
until the objective reaches the baseline's target. Its cost is

    iterations x time per iteration + bytes written x write cost + bytes restored x read cost

(the full save at iteration 0, the same for every strategy, is not counted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scar.core.blocks import BlockLayout, assign_blocks, params_distance
from scar.core.bounds import iteration_cost_bound_multi
from scar.core.failures import sample_failed_nodes
from scar.models.base import Model
from scar.planner.plan import Plan, PlanInputs
from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.policies import make_checkpoint_policy
from scar.core.recovery import get_strategy, recover
from scar.measure.trajectory import Baseline, iteration_rng
from scar.measure.trials import TrialSettings, stable_seed


@dataclass(frozen=True)
class SimulatedRun:
    iterations: int
    censored: bool
    n_failures: int
    checkpoint_bytes: int
    restore_bytes: float
    cost: float
    #: Iterations of the failures and the norms of the perturbations their recoveries caused.
    failure_iterations: tuple[int, ...] = ()
    perturbation_norms: tuple[float, ...] = ()


def simulate_run(
    model: Model,
    data: Any,
    baseline: Baseline,
    strategy: str,
    interval: int,
    r: float,
    inputs: PlanInputs,
    settings: TrialSettings,
    *,
    replicate: int = 0,
) -> SimulatedRun:
    """One training run to the baseline's target under failures (see the module's docstring)."""
    s = get_strategy(strategy)
    state = baseline.state_at(0)
    names = baseline.server_params
    ckpt = Checkpointer(make_checkpoint_policy(s.checkpoint, interval, r, seed=settings.policy_seed))
    ckpt.start({n: state[n] for n in names})
    initial_bytes = ckpt.bytes_written
    layout = BlockLayout.from_arrays({n: state[n] for n in names})
    node_of_block = assign_blocks(layout.n_blocks, settings.n_nodes, settings.placement, settings.seed)  # type: ignore[arg-type]
    all_rows = {n: np.ones(state[n].shape[0], dtype=bool) for n in names}
    rng = np.random.default_rng(stable_seed(settings.seed, "simulated-failures", replicate))
    p = -math.expm1(-1.0 / inputs.mtbf_iterations)
    next_failure = int(rng.geometric(p))
    cap = settings.cap(baseline.k_base)
    k, n_failures, restored_bytes = 0, 0, 0.0
    failed_at: list[int] = []
    norms: list[float] = []
    loss = model.objective(state, data)
    while loss > baseline.target and k < cap:
        k += 1
        model.step(state, data, iteration_rng(baseline.seed, k))
        if k == next_failure:
            nodes = np.array(sample_failed_nodes(settings.n_nodes, inputs.failure_fraction, rng))
            lost_rows = layout.row_masks(np.isin(node_of_block, nodes))
            assert ckpt.image is not None
            current = {n: np.array(state[n], copy=True) for n in names}
            state.update(recover(s.recovery, current, ckpt.image, lost_rows))
            failed_at.append(k)
            norms.append(params_distance(state, current, names))
            rows = all_rows if s.recovery == "full" else lost_rows
            model.after_recovery(state, data, rows)
            restored_bytes += sum(float(state[n][rows[n]].nbytes) for n in names)
            n_failures += 1
            next_failure = k + int(rng.geometric(p))
        ckpt.after_iteration(k, {n: state[n] for n in names})
        loss = model.objective(state, data)
    written = ckpt.bytes_written - initial_bytes
    cost = k * inputs.seconds_per_iteration + written * inputs.write_seconds_per_byte + restored_bytes * inputs.restore_per_byte
    return SimulatedRun(
        k, bool(loss > baseline.target), n_failures, int(written), restored_bytes, cost, tuple(failed_at), tuple(norms)
    )


def settings_to_check(p: Plan, n_other: int = 3) -> list[tuple[str, int, float, str]]:
    """The recommended setting, traditional at Young/Daly's interval, and ``n_other``
    non-recommended ones spread over the ranking (its middle to its worst)."""
    out = [(str(p.best["strategy"]), int(p.best["C"]), float(p.best["r"]), "recommended")]
    out.append(("traditional", p.young_daly_interval, 1.0, "traditional at Young/Daly"))
    n = len(p.table)
    for i in np.unique(np.linspace(n // 2, n - 1, n_other).astype(int)):
        row = p.table.iloc[int(i)]
        out.append((str(row["strategy"]), int(row["C"]), float(row["r"]), f"ranked {int(i) + 1} of {n}"))
    seen, unique = set(), []
    for o in out:
        if o[:3] not in seen:
            seen.add(o[:3])
            unique.append(o)
    return unique


def validate_plan(
    model: Model,
    data: Any,
    baseline: Baseline,
    p: Plan,
    settings: TrialSettings,
    *,
    n_replicates: int,
    n_other: int = 3,
    experiment: tuple[str, str] = ("", ""),
) -> pd.DataFrame:
    """Simulate each setting of :func:`settings_to_check` ``n_replicates`` times; one row per run,
    with the predicted cost of a run (``K_base x (time per iteration + expected overhead)``)."""
    if n_replicates < 1:
        raise ValueError(f"planner.n_replicates must be >= 1, got {n_replicates}")
    rows = []
    table = p.table.set_index(["strategy", "C", "r"])
    for strategy, C, r, role in settings_to_check(p, n_other):
        scored = p.young_daly if role.startswith("traditional") else table.loc[(strategy, C, r)]
        predicted = baseline.k_base * (p.inputs.seconds_per_iteration + float(scored["cost_per_iteration"]))
        for rep in range(n_replicates):
            run = simulate_run(model, data, baseline, strategy, C, r, p.inputs, settings, replicate=rep)
            # The multi-perturbation bound on the run's total rework, with every recovery's measured norm.
            multi = iteration_cost_bound_multi(
                run.perturbation_norms, run.failure_iterations, p.inputs.c, p.inputs.initial_distance
            )
            rows.append(
                {
                    "model": experiment[0],
                    "dataset": experiment[1],
                    "setting": f"{strategy} C={C} r={r:g}",
                    "role": role,
                    "strategy": strategy,
                    "C": C,
                    "r": r,
                    "replicate": rep,
                    "predicted_cost": predicted,
                    "predicted_rework_per_failure": float(scored["expected_rework"]),
                    "simulated_cost": run.cost,
                    "iterations": run.iterations,
                    "k_base": baseline.k_base,
                    "censored": run.censored,
                    "n_failures": run.n_failures,
                    "rework": run.iterations - baseline.k_base,
                    "bound_multi": multi,
                    "checkpoint_bytes": run.checkpoint_bytes,
                    "restore_bytes": run.restore_bytes,
                }
            )
    return pd.DataFrame(rows)


def summarize_validation(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting: predicted and mean simulated cost, their relative error, and the saving
    against traditional at Young/Daly's interval, predicted and simulated."""
    from scar.report.analysis import bound_verdicts  # scipy.stats: imported where needed

    runs = runs.assign(bound_multi_held=bound_verdicts(runs["rework"], runs["bound_multi"], runs["censored"]))
    g = runs.groupby(["model", "dataset", "setting", "role", "strategy", "C", "r"], sort=False)
    out = g.agg(
        predicted_cost=("predicted_cost", "first"),
        simulated_cost=("simulated_cost", "mean"),
        simulated_cost_sd=("simulated_cost", "std"),
        n_runs=("simulated_cost", "size"),
        n_censored=("censored", "sum"),
        failures_mean=("n_failures", "mean"),
        iterations_mean=("iterations", "mean"),
        rework_mean=("rework", "mean"),
        bound_multi_mean=("bound_multi", "mean"),
        bound_multi_held=("bound_multi_held", "mean"),
    ).reset_index()
    out["relative_error"] = out["predicted_cost"] / out["simulated_cost"] - 1.0
    for _, h in out.groupby(["model", "dataset"], sort=False):
        ref = h[h["role"] == "traditional at Young/Daly"]
        if ref.empty:
            continue
        idx = h.index
        out.loc[idx, "predicted_saving"] = 1.0 - h["predicted_cost"] / float(ref["predicted_cost"].iloc[0])
        out.loc[idx, "simulated_saving"] = 1.0 - h["simulated_cost"] / float(ref["simulated_cost"].iloc[0])
    return out


def plot_validation(summary: pd.DataFrame, path: Any) -> None:
    """Predicted against simulated cost of a run, one point per setting (error bars: one
    standard deviation over the simulated runs); the diagonal is a perfect prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scar.report.figures import _save

    experiments = list(summary[["model", "dataset"]].drop_duplicates().itertuples(index=False))
    fig, axes = plt.subplots(1, max(1, len(experiments)), figsize=(6.5 * max(1, len(experiments)), 5), squeeze=False)
    for ax, (m, d) in zip(axes[0], experiments):
        h = summary[(summary["model"] == m) & (summary["dataset"] == d)]
        for i, row in enumerate(h.itertuples(index=False)):
            ax.errorbar(
                row.simulated_cost, row.predicted_cost, xerr=0 if np.isnan(row.simulated_cost_sd) else row.simulated_cost_sd,
                fmt="o*sD^v"[i % 6], color=f"C{i}", label=f"{row.setting} ({row.role})",
            )  # fmt: skip
        lo = float(min(h["simulated_cost"].min(), h["predicted_cost"].min())) * 0.95
        hi = float(max(h["simulated_cost"].max(), h["predicted_cost"].max())) * 1.05
        ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=1, label="predicted = simulated")
        ax.set_xlabel("simulated cost of a run (mean over runs), in iteration times")
        ax.set_ylabel("predicted cost of a run")
        ax.set_title(f"{m} / {d}: planner prediction vs simulation")
        ax.legend(fontsize=7)
    _save(fig, path)


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
    return pd.concat([t, pd.DataFrame([ref])], ignore_index=True)


@dataclass(frozen=True)
class PlannerSettings:
    """The ``planner:`` section of the config (costs in units of one iteration's time)."""

    validate: tuple[str, ...] = ()
    checkpoint_cost: float = 2.0
    restore_cost: float = 2.0
    mtbf: float = 20.0
    failure_fraction: float = 0.25
    strategies: tuple[str, ...] = ("traditional", "scar", "full_partial", "round_robin_partial")
    intervals: tuple[int, ...] = (2, 4, 8, 16, 32)
    r_values: tuple[float, ...] = (0.5, 0.25)
    n_replicates: int = 3
    n_other: int = 2

    def __post_init__(self) -> None:
        for key, value, ok in (
            ("checkpoint_cost", self.checkpoint_cost, self.checkpoint_cost >= 0),
            ("restore_cost", self.restore_cost, self.restore_cost >= 0),
            ("mtbf", self.mtbf, self.mtbf > 0),
            ("failure_fraction", self.failure_fraction, 0 < self.failure_fraction <= 1),
            ("n_replicates", self.n_replicates, self.n_replicates >= 1),
            ("n_other", self.n_other, self.n_other >= 0),
        ):
            if not ok:
                raise ValueError(f"planner.{key}: bad value {value!r}")
        for s in self.strategies:
            try:
                get_strategy(s)
            except ValueError as err:
                raise ValueError(f"planner.strategies: {err}") from None
        from scar.planner.plan import candidates

        try:
            if not candidates(self.strategies, self.intervals, self.r_values):
                raise ValueError("no valid (strategy, C, r): r * C must be whole for some pair")
        except ValueError as err:
            raise ValueError(f"planner.intervals/r_values: {err}") from None

    def inputs(self, baseline: Baseline) -> PlanInputs:
        return planner_inputs_for(
            baseline,
            checkpoint_cost=self.checkpoint_cost,
            restore_cost=self.restore_cost,
            mtbf=self.mtbf,
            failure_fraction=self.failure_fraction,
        )

    def plan(self, baseline: Baseline) -> Plan:
        """The plan for ``baseline``, perturbation norms measured on its trajectory."""
        from scar.planner.plan import TrajectoryMovement, plan

        movement = TrajectoryMovement({n: baseline.snapshots[n] for n in baseline.server_params}, seed=baseline.seed)
        return plan(self.inputs(baseline), movement, strategies=self.strategies, intervals=self.intervals, r_values=self.r_values)
