"""Stages: the checkpoint plan of one experiment, its validation by simulation, and the report
(rules plan_checkpoints, validate_plan, planner_report)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from scar.measure.trajectory import Baseline
from scar.measure.trials import TrialSettings
from scar.stages.files import PathLike, load_experiment, write_csv

log = logging.getLogger("scar")


def read_trials(trial_files: Sequence[PathLike]) -> pd.DataFrame | None:
    """The failure trials of one experiment (every batch, every baseline seed), or None without any."""
    frames = [pd.read_csv(f) for f in trial_files]
    return pd.concat(frames, ignore_index=True) if frames else None


def plan_checkpoints(
    baseline_path: PathLike, settings: Any, experiment: tuple[str, str], out: PathLike, trial_files: Sequence[PathLike] = ()
) -> pd.DataFrame:
    """The planner's scored candidates for one experiment (CSV), rework calibrated on its trials."""
    from scar.planner.plan import plan_for_baseline, plan_table

    baseline = Baseline.load(baseline_path)
    p = plan_for_baseline(settings, baseline, read_trials(trial_files))
    table = plan_table(p, experiment)
    write_csv(table, out)
    log.info(
        "plan %s/%s: %s C=%d r=%g, predicted saving %.1f%% against traditional at Young/Daly's C*=%d; rework: %s",
        *experiment, p.best["strategy"], int(p.best["C"]), float(p.best["r"]), 100 * p.saving, p.young_daly_interval,
        p.rework_model.describe(),
    )  # fmt: skip
    return table


def validate_plan(
    model_name: str,
    params: Mapping[str, Any],
    dataset_path: PathLike,
    baseline_path: PathLike,
    settings: Any,
    trial_settings: TrialSettings,
    out: PathLike,
    *,
    threads: int = 1,
) -> pd.DataFrame:
    """Simulate whole runs under failures for every candidate setting (CSV). The runs do not
    depend on the failure trials (only the plan's columns do, attached by :func:`planner_report`),
    so this job need not wait for them."""
    from scar.planner.plan import plan_for_baseline
    from scar.planner.validation import PLAN_COLUMNS
    from scar.planner.validation import validate_plan as simulate

    model, dataset, data, baseline = load_experiment(model_name, params, dataset_path, baseline_path)
    p = plan_for_baseline(settings, baseline)  # the candidates and Young/Daly's interval
    t0 = time.perf_counter()
    with threadpool_limits(threads):
        runs = simulate(
            model, data, baseline, p, trial_settings, n_replicates=settings.n_replicates, experiment=(model_name, dataset.name),
        )  # fmt: skip
    runs = runs.drop(columns=PLAN_COLUMNS)
    write_csv(runs, out)
    log.info(
        "planner validation %s/%s: %d simulated runs in %.1fs", model_name, dataset.name, len(runs), time.perf_counter() - t0
    )
    return runs


def planner_report(
    plan_files: Sequence[PathLike],
    validation_files: Sequence[PathLike],
    *,
    plans_out: PathLike,
    validation_out: PathLike | None = None,
    verdicts_out: PathLike | None = None,
    figure_out: PathLike | None = None,
) -> None:
    """Concatenate the plans; summarise the validation runs, judge each recommendation against
    the cheapest simulated setting, and plot both."""
    from scar.planner.validation import attach_plan, planner_verdicts, summarize_validation
    from scar.report.figures import plot_validation

    plans = pd.concat([pd.read_csv(f) for f in plan_files], ignore_index=True)
    write_csv(plans, plans_out)
    if validation_files and validation_out is not None and figure_out is not None:
        # Each experiment's runs with its plan's ranks and predictions (rework calibrated on its trials).
        parts = []
        for f in validation_files:
            runs = pd.read_csv(f)
            m, d = runs["model"].iloc[0], runs["dataset"].iloc[0]
            plan = plans[(plans["model"] == m) & (plans["dataset"] == d)]
            if plan.empty:
                raise ValueError(f"{f}: no plan for {m}/{d} among the plan files")
            parts.append(attach_plan(runs, plan))
        runs = pd.concat(parts, ignore_index=True)
        summary = summarize_validation(runs)
        verdicts = planner_verdicts(runs)
        write_csv(summary, validation_out)
        if verdicts_out is not None:
            write_csv(verdicts, verdicts_out)
        plot_validation(summary, verdicts, figure_out)
