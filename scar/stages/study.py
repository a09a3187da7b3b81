"""Stages: the perturbation study of one experiment, and its report (rules perturbation_study,
perturbation_report)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from scar.measure.trials import TrialSettings
from scar.stages.files import PathLike, load_experiment, write_csv, write_json

log = logging.getLogger("scar")


def perturbation_study(
    model_name: str,
    params: Mapping[str, Any],
    dataset_path: PathLike,
    baseline_path: PathLike,
    settings: Any,
    trial_settings: TrialSettings,
    *,
    runs_out: PathLike,
    fit_out: PathLike,
    threads: int = 1,
) -> pd.DataFrame:
    """Run the perturbation study of one experiment (:func:`scar.measure.study.run_study`); write its
    runs (CSV) and its contraction estimate (JSON)."""
    from scar.measure.study import run_study

    model, dataset, data, baseline = load_experiment(model_name, params, dataset_path, baseline_path)
    t0 = time.perf_counter()
    with threadpool_limits(threads):
        runs, fit = run_study(model, data, baseline, settings, trial_settings, dataset=dataset.name, dataset_label=dataset.label)
    fit = {**fit, "dataset_label": dataset.label, "wall_seconds": time.perf_counter() - t0}
    write_csv(runs, runs_out)
    write_json(fit, fit_out)
    decided = runs["bound_held"].dropna()
    log.info(
        "perturbation study %s/%s: %d runs in %.1fs, c = %s [%s, %s], bound held in %d of %d decidable runs",
        model_name, dataset.name, len(runs), fit["wall_seconds"], fit.get("c_hat"), fit.get("c_low"), fit.get("c_high"),
        int(decided.sum()), len(decided),
    )  # fmt: skip
    return runs


def perturbation_report(
    run_files: Sequence[PathLike],
    fit_files: Sequence[PathLike],
    *,
    runs_out: PathLike,
    summary_out: PathLike,
    figure_out: PathLike,
) -> pd.DataFrame:
    """Concatenate the studies' runs; write the per-kind summary and the figure."""
    from scar.measure.study import summarize_study
    from scar.report.figures import plot_study

    if not run_files:
        raise ValueError("no perturbation study results to report")
    runs = pd.concat([pd.read_csv(f, keep_default_na=False, na_values=[""]) for f in run_files], ignore_index=True)
    runs["level"] = runs["level"].astype(str)
    fits = [json.loads(Path(p).read_text()) for p in fit_files]
    fits = [{k: (np.nan if v is None else v) for k, v in f.items()} for f in fits]
    write_csv(runs, runs_out)
    summary = summarize_study(runs, fits)
    write_csv(summary, summary_out)
    plot_study(runs, fits, figure_out)
    return summary
