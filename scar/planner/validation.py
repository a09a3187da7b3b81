"""The check of a plan: simulate the recommended setting and others under failures and compare
the simulated cost with the predicted one (docs/design.md §8)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scar.checkpoint.strategy import get_strategy
from scar.core.bounds import bound_verdicts, iteration_cost_bound_multi
from scar.measure.trajectory import Baseline
from scar.measure.trials import TrialSettings
from scar.models.base import Model
from scar.planner.plan import Plan
from scar.planner.simulation import simulate_run


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
            run = simulate_run(model, data, baseline, get_strategy(strategy).with_r(r), C, p.inputs, settings, replicate=rep)
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
