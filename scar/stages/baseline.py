"""Stage: train the unperturbed baseline (rule train_baseline)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from scar.datasets import Dataset
from scar.measure.engine import InProcessEngine
from scar.measure.rework import RunLimits, fresh_stream_offsets
from scar.measure.trajectory import Baseline, run_baseline
from scar.measure.trials import TrialSettings
from scar.models import Model
from scar.stages.files import PathLike, load_experiment, write_json

log = logging.getLogger("scar")


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
    n_boot: int = 200,
    settings: TrialSettings | None = None,
    threads: int = 1,
    progress: bool = True,
) -> Baseline:
    """Train the unperturbed run, save it (``out``, .npz) and a JSON summary of it.

    With ``settings``, first check that the experiment's trials can run at those settings
    (:meth:`~scar.measure.trials.TrialSettings.check_layout`)."""
    model, dataset, data, _ = load_experiment(model_name, params, dataset_path)
    if settings is not None:
        # Before any training: the trials of this experiment must be able to run at all.
        _check_layout(model, dataset, data, seed, settings)
    bar = tqdm(total=max_iters, desc=f"baseline {model_name}/{dataset.name}", unit="it", file=sys.stderr, disable=not progress)

    def tick(k: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(objective=f"{loss:.5g}", refresh=False)

    t0 = time.perf_counter()
    with threadpool_limits(threads):
        baseline = run_baseline(
            model, data, seed=seed, max_iters=max_iters, tol=tol, final_window=final_window, n_boot=n_boot, progress=tick
        )
        # The noise floor of rework on this baseline: the unperturbed state on another stream.
        other = seed + 1_000_003
        limits = settings.limits(baseline) if settings is not None else RunLimits(cap=3 * baseline.k_base)
        offsets = fresh_stream_offsets(InProcessEngine(model, data, other), baseline, limits, other_seed=other)
    bar.close()
    baseline.info["fresh_stream_offsets"] = offsets
    baseline.info |= {
        "dataset": dataset.name,
        "dataset_label": dataset.label,
        "data_source": dataset.source,
        "params": dict(params),
    }
    baseline.save(out)
    summary = _summary(model, dataset, baseline, params, max_iters=max_iters, wall_seconds=time.perf_counter() - t0)
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


def _check_layout(model: Model, dataset: Dataset, data: Any, seed: int, settings: TrialSettings) -> None:
    shapes = {n: a.shape for n, a in model.server_state(model.init_state(data, seed)).items()}
    try:
        settings.check_layout(shapes)
    except ValueError as err:
        raise ValueError(f"{model.name} on dataset {dataset.name} (server arrays {shapes}): {err}") from None


def _summary(
    model: Model, dataset: Dataset, baseline: Baseline, params: Mapping[str, Any], *, max_iters: int, wall_seconds: float
) -> dict[str, Any]:
    """The baseline's JSON summary: what the tables, figures and resources read."""
    fit = baseline.contraction
    return {
        "model": model.name,
        "dataset": dataset.name,
        "dataset_label": dataset.label,
        "data_source": dataset.source,
        "dataset_description": dataset.description,
        "iteration": type(model).iteration,
        "objective": type(model).objective_name,
        "params": dict(params),
        "seed": baseline.seed,
        "max_iters": max_iters,
        "tol": baseline.tol,
        "loss_0": float(baseline.losses[0]),
        "loss_final": baseline.loss_final,
        "target": baseline.target,
        "k_base": baseline.k_base,
        "c_hat": fit.c if fit else None,
        "c_fit_r2": fit.fit.r2 if fit else None,
        "c_low": fit.c_low if fit else None,
        "c_high": fit.c_high if fit else None,
        "contraction_error": baseline.info.get("contraction_error", ""),
        # Rework of the unperturbed run continued on another random stream (the noise floor).
        "fresh_stream_offset_mean": float(np.mean(baseline.info["fresh_stream_offsets"])),
        "fresh_stream_offset_min": float(np.min(baseline.info["fresh_stream_offsets"])),
        "fresh_stream_offset_max": float(np.max(baseline.info["fresh_stream_offsets"])),
        "initial_distance_hat": fit.initial_distance if fit else None,
        "seconds_per_iteration": baseline.seconds_per_iteration,
        "wall_seconds": wall_seconds,
        "objective_curve": [float(x) for x in baseline.losses],
    }
