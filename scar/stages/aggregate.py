"""Stages: aggregate the trials into tables, and draw the figures (rules aggregate, figures)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scar._atomic import atomic_write
from scar.stages.files import PathLike, write_csv

log = logging.getLogger("scar")


def aggregate(
    trial_files: Sequence[PathLike],
    baseline_summaries: Sequence[PathLike],
    *,
    trials_out: PathLike,
    summary_out: PathLike,
    headline_out: PathLike,
    baselines_out: PathLike,
    results_out: PathLike | None = None,
    results_md_out: PathLike | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Concatenate the trial tables and write the summary, the headline, the paper-style
    results table (CSV and Markdown, both rework measures) and the baselines table."""
    # Imported here: scipy.stats and seaborn take a second to import, and the many trial jobs
    # that import this module need neither.
    from scar.report.analysis import headline, markdown_table, results_table, summarize

    if not trial_files:
        raise ValueError("no trial result files to aggregate")
    trials = pd.concat([pd.read_csv(f) for f in trial_files], ignore_index=True)
    trials = trials.sort_values(["model", "dataset", "failure_fraction", "trial", "strategy", "r"], kind="stable")
    write_csv(trials, trials_out)
    summary = summarize(trials, seed=seed)
    write_csv(summary, summary_out)
    write_csv(headline(summary), headline_out)
    # measure column -> (trial column, heading words)
    measures = {
        "whole iterations": ("rework", "whole iterations"),
        "interpolated": ("rework_fractional", "iterations interpolated at the target crossing"),
    }
    tables = {name: results_table(summary, column) for name, (column, _) in measures.items()}
    if results_out is not None:
        write_csv(pd.concat([t.assign(measure=n) for n, t in tables.items()], ignore_index=True), results_out)
    if results_md_out is not None:
        text = "".join(
            f"### Rework in {measures[name][1]}: mean [95% CI]; SCAR's reduction against traditional "
            f"[paired-bootstrap 95% CI]\n\n{markdown_table(t)}\n"
            for name, t in tables.items()
        )
        with atomic_write(results_md_out, "w") as fh:
            fh.write(text)
    base = pd.DataFrame([_baseline_row(json.loads(Path(p).read_text())) for p in baseline_summaries])
    write_csv(base, baselines_out)
    return summary


def _baseline_row(s: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in s.items() if k not in ("objective_curve", "params")} | {"params": json.dumps(s["params"])}


def make_figures(
    trials_csv: PathLike,
    baseline_summaries: Sequence[PathLike],
    *,
    by_strategy_out: PathLike,
    vs_perturbation_out: PathLike,
    baselines_out: PathLike,
    vs_bytes_out: PathLike | None = None,
) -> None:
    """Write the evaluation's figures."""
    from scar.report.figures import plot_baselines, plot_rework_by_strategy, plot_rework_vs_bytes, plot_rework_vs_perturbation

    trials = pd.read_csv(trials_csv)
    plot_rework_by_strategy(trials, by_strategy_out)
    plot_rework_vs_perturbation(trials, vs_perturbation_out)
    if vs_bytes_out is not None:
        plot_rework_vs_bytes(trials, vs_bytes_out)
    curves = []
    for p in baseline_summaries:
        s = json.loads(Path(p).read_text())
        n = len(s["objective_curve"])
        curves.append(
            pd.DataFrame(
                {
                    "experiment": f"{s['model']} / {s['dataset_label']}",
                    "seed": s["seed"],
                    "iteration": np.arange(n),
                    "objective": s["objective_curve"],
                    "target": s["target"],
                    "k_base": s["k_base"],
                }
            )
        )
    plot_baselines(pd.concat(curves, ignore_index=True), baselines_out)
