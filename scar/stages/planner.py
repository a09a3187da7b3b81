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


def plan_checkpoints(baseline_path: PathLike, settings: Any, experiment: tuple[str, str], out: PathLike) -> pd.DataFrame:
    """The planner's scored candidates for one experiment (CSV)."""
    from scar.planner.plan import plan_for_baseline, plan_table

    baseline = Baseline.load(baseline_path)
    p = plan_for_baseline(settings, baseline)
    table = plan_table(p, experiment)
    write_csv(table, out)
    log.info(
        "plan %s/%s: %s C=%d r=%g, predicted saving %.1f%% against traditional at Young/Daly's C*=%d",
        *experiment, p.best["strategy"], int(p.best["C"]), float(p.best["r"]), 100 * p.saving, p.young_daly_interval,
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
    """Simulate whole runs under failures for the recommended and other settings (CSV)."""
    from scar.planner.plan import plan_for_baseline
    from scar.planner.validation import validate_plan as simulate

    model, dataset, data, baseline = load_experiment(model_name, params, dataset_path, baseline_path)
    p = plan_for_baseline(settings, baseline)
    t0 = time.perf_counter()
    with threadpool_limits(threads):
        runs = simulate(
            model, data, baseline, p, trial_settings, n_replicates=settings.n_replicates, n_other=settings.n_other,
            experiment=(model_name, dataset.name),
        )  # fmt: skip
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
    figure_out: PathLike | None = None,
) -> None:
    """Concatenate the plans; summarise the validation runs and plot predicted vs simulated cost."""
    from scar.planner.validation import summarize_validation
    from scar.report.figures import plot_validation

    write_csv(pd.concat([pd.read_csv(f) for f in plan_files], ignore_index=True), plans_out)
    if validation_files and validation_out is not None and figure_out is not None:
        runs = pd.concat([pd.read_csv(f) for f in validation_files], ignore_index=True)
        summary = summarize_validation(runs)
        write_csv(summary, validation_out)
        plot_validation(summary, figure_out)
