"""The evaluation's stages as plain functions over files: what each workflow rule runs.

Every stage reads its inputs, computes through the package and writes its outputs atomically,
so an interrupted workflow resumes without redoing (or trusting) half-written results. The
workflow scripts in ``workflow/scripts/`` only unpack Snakemake's arguments and call these.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from scar._atomic import atomic_write
from scar.datasets import Dataset, load_dataset
from scar.models import Model, make_model
from scar.measure.trajectory import Baseline, run_baseline
from scar.measure.trials import TrialSettings, TrialSpec, run_trial, trials_frame

log = logging.getLogger("scar")

PathLike = str | os.PathLike


def write_csv(frame: pd.DataFrame, path: PathLike) -> None:
    with atomic_write(path, "w") as fh:
        frame.to_csv(fh, index=False)


def write_json(obj: Any, path: PathLike) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=float)
        fh.write("\n")


def prepare_dataset(name: str, settings: Mapping[str, Any], seed: int, out: PathLike) -> Dataset:
    """Load dataset ``name`` as configured (source, max_samples, options) and save it."""
    ds = load_dataset(
        name,
        settings.get("source", "embedded"),
        max_samples=settings.get("max_samples"),
        seed=seed,
        **(settings.get("options") or {}),
    )
    ds.save(out)
    log.info("dataset %s: %s (%s), arrays %s", name, ds.description, ds.source, {k: v.shape for k, v in ds.arrays.items()})
    return ds


def _model_and_data(model_name: str, params: Mapping[str, Any], dataset_path: PathLike) -> tuple[Model, Dataset, Any]:
    model = make_model(model_name, dict(params))
    dataset = Dataset.load(dataset_path)
    return model, dataset, model.prepare(dataset)


def train_baseline(
    model_name: str,
    params: Mapping[str, Any],
    dataset_path: PathLike,
    out: PathLike,
    summary_out: PathLike,
    *,
    max_iters: int,
    tol: float,
    final_window: int,
    seed: int,
    threads: int = 1,
    progress: bool = True,
) -> Baseline:
    """Train the unperturbed run, save it (``out``, .npz) and a JSON summary of it."""
    model, dataset, data = _model_and_data(model_name, params, dataset_path)
    bar = tqdm(total=max_iters, desc=f"baseline {model_name}/{dataset.name}", unit="it", file=sys.stderr, disable=not progress)

    def tick(k: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(objective=f"{loss:.5g}", refresh=False)

    t0 = time.perf_counter()
    with threadpool_limits(threads):
        baseline = run_baseline(model, data, seed=seed, max_iters=max_iters, tol=tol, final_window=final_window, progress=tick)
    bar.close()
    baseline.info = {
        "dataset": dataset.name,
        "dataset_label": dataset.label,
        "data_source": dataset.source,
        "params": dict(params),
    }
    baseline.save(out)
    fit = baseline.contraction
    summary = {
        "model": model_name,
        "dataset": dataset.name,
        "dataset_label": dataset.label,
        "data_source": dataset.source,
        "dataset_description": dataset.description,
        "iteration": type(model).iteration,
        "objective": type(model).objective_name,
        "params": dict(params),
        "seed": seed,
        "max_iters": max_iters,
        "tol": tol,
        "loss_0": float(baseline.losses[0]),
        "loss_final": baseline.loss_final,
        "target": baseline.target,
        "k_base": baseline.k_base,
        "c_hat": fit.c if fit else None,
        "c_fit_r2": fit.r2 if fit else None,
        "initial_distance_hat": fit.initial_distance if fit else None,
        "seconds_per_iteration": baseline.seconds_per_iteration,
        "wall_seconds": time.perf_counter() - t0,
        "objective_curve": [float(x) for x in baseline.losses],
    }
    write_json(summary, summary_out)
    log.info(
        "baseline %s/%s: K_base=%d, target=%.6g, c_hat=%s",
        model_name,
        dataset.name,
        baseline.k_base,
        baseline.target,
        summary["c_hat"],
    )
    return baseline


class TrialProgress:
    """The finished trials of a batch job, kept while the job runs so that a killed job resumes
    without redoing them.

    A JSON-lines file next to the job's output (``<out>.progress``): a header naming what the
    rows depend on (model, hyperparameters, trial settings, the baseline file), then one line
    per finished trial, flushed and fsynced. A header that does not match (the config or the
    baseline changed) discards the file; a line cut short by a kill is ignored. The job removes
    the file once its output is written.
    """

    def __init__(self, path: PathLike, key: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=_json_default))

    def load(self) -> dict[str, list[dict[str, Any]]]:
        """Rows of the finished trials, by trial key; rewrites the file to what was readable."""
        done: dict[str, list[dict[str, Any]]] = {}
        if self.path.is_file():
            lines = self.path.read_text().splitlines()
            try:
                header = json.loads(lines[0]) if lines else None
            except ValueError:
                header = None
            if header == {"key": self.key}:
                for line in lines[1:]:
                    try:
                        entry = json.loads(line)
                    except ValueError:  # cut short by a kill: everything before it is good
                        break
                    done[entry["trial"]] = entry["rows"]
            else:
                log.info("%s belongs to other settings or another baseline: starting afresh", self.path)
        with atomic_write(self.path, "w") as fh:
            fh.write(json.dumps({"key": self.key}) + "\n")
            for trial, rows in done.items():
                fh.write(self._line(trial, rows))
        return done

    def add(self, trial: str, rows: list[dict[str, Any]]) -> None:
        with open(self.path, "a") as fh:
            fh.write(self._line(trial, rows))
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    @staticmethod
    def _line(trial: str, rows: list[dict[str, Any]]) -> str:
        return json.dumps({"trial": trial, "rows": rows}, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def run_trials(
    model_name: str,
    params: Mapping[str, Any],
    dataset_path: PathLike,
    baseline_path: PathLike,
    specs: Sequence[TrialSpec],
    settings: TrialSettings,
    out: PathLike,
    *,
    threads: int = 1,
) -> pd.DataFrame:
    """Run the failure trials ``specs`` under every strategy and write their rows (CSV).

    Finished trials are kept in ``<out>.progress`` (:class:`TrialProgress`) until the output is
    written: a job killed halfway resumes where it stopped.
    """
    model, dataset, data = _model_and_data(model_name, params, dataset_path)
    baseline = Baseline.load(baseline_path)
    stat = os.stat(baseline_path)
    progress = TrialProgress(
        f"{out}.progress",
        {"model": model_name, "params": dict(params), "settings": settings, "baseline": [stat.st_size, stat.st_mtime_ns]},
    )
    done = progress.load()
    rows: list[dict[str, Any]] = []
    with threadpool_limits(threads):
        for spec in specs:
            key = json.dumps(dataclasses.asdict(spec), sort_keys=True)
            if key in done:
                rows += done[key]
                log.info("trial %d (f=%g) kept from an interrupted run", spec.trial, spec.fraction)
                continue
            t0 = time.perf_counter()
            trial_rows = run_trial(
                model, data, baseline, spec, settings,
                dataset=dataset.name, dataset_label=dataset.label, data_source=dataset.source,
            )  # fmt: skip
            progress.add(key, trial_rows)
            rows += trial_rows
            log.info("trial %d (f=%g) done in %.2fs", spec.trial, spec.fraction, time.perf_counter() - t0)
    frame = trials_frame(rows)
    write_csv(frame, out)
    progress.remove()
    return frame


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
) -> None:
    """Write the evaluation's figures."""
    from scar.report.figures import plot_baselines, plot_rework_by_strategy, plot_rework_vs_perturbation

    trials = pd.read_csv(trials_csv)
    plot_rework_by_strategy(trials, by_strategy_out)
    plot_rework_vs_perturbation(trials, vs_perturbation_out)
    curves = []
    for p in baseline_summaries:
        s = json.loads(Path(p).read_text())
        n = len(s["objective_curve"])
        curves.append(
            pd.DataFrame(
                {
                    "experiment": f"{s['model']} / {s['dataset_label']}",
                    "iteration": np.arange(n),
                    "objective": s["objective_curve"],
                    "target": s["target"],
                    "k_base": s["k_base"],
                }
            )
        )
    plot_baselines(pd.concat(curves, ignore_index=True), baselines_out)


def setup_logging(log_file: PathLike | None = None) -> None:
    """Log the package's messages to ``log_file`` (a rule's log) and to stderr, and log any
    uncaught exception's traceback there too: Snakemake points users at the log when a job
    fails, and on a cluster node the log is all they have."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    # Where the job ran: on a cluster, the SLURM job to look up (sacct, seff) when it misbehaves.
    slurm_job = os.environ.get("SLURM_JOB_ID")
    log.info(
        "job on host %s, pid %d, %s",
        platform.node(),
        os.getpid(),
        f"SLURM_JOB_ID={slurm_job}" if slurm_job else "not a SLURM job",
    )

    def log_uncaught(exc_type, exc, tb) -> None:
        log.critical("job failed", exc_info=(exc_type, exc, tb))
        logging.shutdown()

    sys.excepthook = log_uncaught


# --------------------------------------------------------------------------------------------
# Perturbation study and checkpoint planner (workflow/rules/perturbations.smk, planner.smk)


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

    model, dataset, data = _model_and_data(model_name, params, dataset_path)
    baseline = Baseline.load(baseline_path)
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
    from scar.measure.study import plot_study, summarize_study

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


def plan_checkpoints(baseline_path: PathLike, settings: Any, experiment: tuple[str, str], out: PathLike) -> pd.DataFrame:
    """The planner's scored candidates for one experiment (CSV)."""
    from scar.planner.simulation import plan_table

    baseline = Baseline.load(baseline_path)
    p = settings.plan(baseline)
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
    from scar.planner.simulation import validate_plan as simulate

    model, dataset, data = _model_and_data(model_name, params, dataset_path)
    baseline = Baseline.load(baseline_path)
    p = settings.plan(baseline)
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
    from scar.planner.simulation import plot_validation, summarize_validation

    write_csv(pd.concat([pd.read_csv(f) for f in plan_files], ignore_index=True), plans_out)
    if validation_files and validation_out is not None and figure_out is not None:
        runs = pd.concat([pd.read_csv(f) for f in validation_files], ignore_index=True)
        summary = summarize_validation(runs)
        write_csv(summary, validation_out)
        plot_validation(summary, figure_out)
