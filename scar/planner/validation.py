"""The check of a plan: simulate every candidate setting under failures, compare the simulated
cost with the predicted one, and see whether the recommendation is the cheapest
(docs/design.md §8)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scar.checkpoint.strategy import get_strategy
from scar.core.bounds import bound_verdicts, iteration_cost_bound_multi
from scar.measure.trajectory import Baseline
from scar.measure.trials import TrialSettings
from scar.models.base import Model
from scar.planner.plan import Plan, plan_table
from scar.planner.simulation import simulate_run

YOUNG_DALY = "traditional at Young/Daly"
#: The recommendation passes when its simulated cost is within this of the cheapest simulated.
TOLERANCE = 0.05


def settings_to_check(p: Plan) -> list[tuple[Any, str]]:
    """Every candidate of the plan (its scored row and its role), and traditional at Young/Daly's
    interval when that is not a candidate."""
    n = len(p.table)
    out = [(row, "recommended" if i == 0 else f"ranked {i + 1} of {n}") for i, row in p.table.iterrows()]
    ref = p.young_daly
    listed = {(str(r["strategy"]), int(r["C"]), float(r["r"])) for r, _ in out}
    if (str(ref["strategy"]), int(ref["C"]), float(ref["r"])) not in listed:
        out.append((ref, YOUNG_DALY))
    return out


#: The columns of a validation run that come from the plan (:func:`attach_plan`), not the simulation.
PLAN_COLUMNS = ["role", "rank", "rank_bound", "young_daly", "predicted_cost", "predicted_cost_bound",
                "predicted_rework_per_failure"]  # fmt: skip


def validate_plan(
    model: Model,
    data: Any,
    baseline: Baseline,
    p: Plan,
    settings: TrialSettings,
    *,
    n_replicates: int,
    experiment: tuple[str, str] = ("", ""),
) -> pd.DataFrame:
    """Simulate every setting of :func:`settings_to_check` ``n_replicates`` times; one row per run,
    with the plan's columns (:func:`attach_plan`). Replicate ``i`` of every setting meets the
    same failure arrivals (common random numbers), so settings compare run by run. The runs do
    not depend on how the plan priced rework: only the candidates and Young/Daly's interval."""
    if n_replicates < 1:
        raise ValueError(f"planner.n_replicates must be >= 1, got {n_replicates}")
    rows = []
    for scored, _ in settings_to_check(p):
        strategy, C, r = str(scored["strategy"]), int(scored["C"]), float(scored["r"])
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
                    "strategy": strategy,
                    "C": C,
                    "r": r,
                    "replicate": rep,
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
    return attach_plan(pd.DataFrame(rows), plan_table(p, experiment))


def attach_plan(runs: pd.DataFrame, plan: pd.DataFrame) -> pd.DataFrame:
    """The plan's columns (:data:`PLAN_COLUMNS`) on the validation runs of its experiment,
    matched by (strategy, C, r): each setting's role, rank (rework priced by the plan's model)
    and rank by the bound-priced cost, whether it is traditional at Young/Daly's interval, and
    the predicted cost of a run, ``K_base x (time per iteration + expected overhead)``, both ways.
    ``plan`` is a :func:`~scar.planner.plan.plan_table`."""
    keys = ["strategy", "C", "r"]
    ref = plan[plan["young_daly_reference"].astype(bool)].iloc[0]
    cands = plan[~plan["young_daly_reference"].astype(bool)]
    n = len(cands)
    out = runs.drop(columns=[c for c in PLAN_COLUMNS if c in runs.columns])
    scored = pd.concat([cands, plan[plan["young_daly_reference"].astype(bool)].assign(rank=0, rank_bound=0)])
    scored = scored.drop_duplicates(keys)  # Young/Daly's interval may be a candidate too
    cols = ["rank", "rank_bound", "cost_per_iteration", "cost_per_iteration_bound", "expected_rework", "seconds_per_iteration"]
    out = out.merge(scored[keys + cols], on=keys, how="left", validate="many_to_one")
    if out["rank"].isna().any():
        missing = sorted(set(out.loc[out["rank"].isna(), "setting"]))
        raise ValueError(f"validation runs of settings the plan does not score: {missing}")
    out["rank"] = out["rank"].astype(int)
    out["rank_bound"] = out["rank_bound"].astype(int)
    out["role"] = ["recommended" if k == 1 else (YOUNG_DALY if k == 0 else f"ranked {k} of {n}") for k in out["rank"]]
    out["young_daly"] = (out["strategy"] == ref["strategy"]) & (out["C"] == ref["C"]) & (out["r"] == ref["r"])
    t = out.pop("seconds_per_iteration")
    out["predicted_cost"] = out["k_base"] * (t + out.pop("cost_per_iteration"))
    out["predicted_cost_bound"] = out["k_base"] * (t + out.pop("cost_per_iteration_bound"))
    out["predicted_rework_per_failure"] = out.pop("expected_rework")
    return out


def summarize_validation(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting: predicted (calibrated and bound) and mean simulated cost, their relative
    error, the saving against traditional at Young/Daly's interval, predicted and simulated, and
    the setting's rank by simulated cost."""
    runs = runs.assign(bound_multi_held=bound_verdicts(runs["rework"], runs["bound_multi"], runs["censored"]))
    g = runs.groupby(["model", "dataset", "setting", "role", "strategy", "C", "r"], sort=False)
    out = g.agg(
        rank=("rank", "first"),
        rank_bound=("rank_bound", "first"),
        young_daly=("young_daly", "first"),
        predicted_cost=("predicted_cost", "first"),
        predicted_cost_bound=("predicted_cost_bound", "first"),
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
    out["relative_error_bound"] = out["predicted_cost_bound"] / out["simulated_cost"] - 1.0
    for _, h in out.groupby(["model", "dataset"], sort=False):
        idx = h.index
        out.loc[idx, "simulated_rank"] = h["simulated_cost"].rank(method="min").astype(int)
        ref = h[h["young_daly"].astype(bool)]
        if ref.empty:
            continue
        out.loc[idx, "predicted_saving"] = 1.0 - h["predicted_cost"] / float(ref["predicted_cost"].iloc[0])
        out.loc[idx, "simulated_saving"] = 1.0 - h["simulated_cost"] / float(ref["simulated_cost"].iloc[0])
    return out


def _excess(costs: pd.DataFrame, setting: str, cheapest: str, n_boot: int, seed: int) -> tuple[float, float, float]:
    """``mean cost(setting) / mean cost(cheapest) - 1`` and its 95% bootstrap interval, resampling
    replicates (paired: replicate i of both met the same failures)."""
    a, b = costs[setting].to_numpy(), costs[cheapest].to_numpy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, (n_boot, a.size))
    boot = a[idx].mean(axis=1) / b[idx].mean(axis=1) - 1.0
    low, high = np.quantile(boot, [0.025, 0.975])
    return float(a.mean() / b.mean() - 1.0), float(low), float(high)


def planner_verdicts(runs: pd.DataFrame, *, tolerance: float = TOLERANCE, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per experiment, for the recommendation priced by the calibrated rework (``pricing =
    calibrated``) and by the bound (``bound``): its simulated cost over the cheapest simulated
    setting's, with a paired bootstrap interval, its rank by simulated cost, and whether it is
    within ``tolerance`` of the cheapest."""
    rows = []
    for (m, d), h in runs.groupby(["model", "dataset"], sort=False):
        costs = h.pivot_table(index="replicate", columns="setting", values="simulated_cost", aggfunc="first")
        means = costs.mean()
        cheapest = str(means.idxmin())
        sim_rank = means.rank(method="min")
        for pricing, col in (("calibrated", "rank"), ("bound", "rank_bound")):
            rec = h[h[col] == 1]
            if rec.empty:
                continue
            setting = str(rec["setting"].iloc[0])
            excess, low, high = _excess(costs, setting, cheapest, n_boot, seed)
            rows.append(
                {
                    "model": m,
                    "dataset": d,
                    "pricing": pricing,
                    "recommended": setting,
                    "recommended_cost": float(means[setting]),
                    "cheapest": cheapest,
                    "cheapest_cost": float(means[cheapest]),
                    "excess": excess,
                    "excess_ci_low": low,
                    "excess_ci_high": high,
                    "simulated_rank": int(sim_rank[setting]),
                    "n_settings": int(means.size),
                    "n_replicates": int(costs.shape[0]),
                    "within_tolerance": bool(excess <= tolerance),
                    "tolerance": tolerance,
                }
            )
    return pd.DataFrame(rows)
