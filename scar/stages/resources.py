"""What each workflow job asks a scheduler for: memory (MB) and runtime (minutes).

The rules in ``workflow/rules/`` call these from their ``resources:`` (Snakemake evaluates them
when a job is ready to run, so its input files exist; in a dry run they show as ``<TBD>``).
Every estimate is scaled from what the job will really hold or do, with head-room, because a
scheduler kills a job that exceeds its request:

- ``train_baseline`` keeps the model state of every iteration until the run ends: memory is the
  dataset plus ``max_iters + 1`` copies of the state (measured by building the model's initial
  state on the dataset), runtime is ``max_iters`` times a per-iteration cost scaled from the
  dataset's size.
- ``run_trials`` loads the dataset and the baseline file (the per-iteration snapshots up to
  ``K_base``): memory is a multiple of its inputs; runtime is the batch's trials times the
  recovered runs per trial (strategies, r values) times the capped run length, at the baseline's
  measured seconds per iteration.
- ``perturbation_study`` and ``validate_plan`` hold what a trial batch holds; their runtime is
  their number of capped runs (perturbations x iterations; checked settings x replicates of
  whole runs) at the baseline's measured speed. ``plan_checkpoints`` only reads the baseline.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Interpreter, numpy and pandas, before any data.
BASE_MB = 500
#: Head-room on measured quantities.
SAFETY = 2.0
#: Minimum runtime of any job (scheduling, Python start-up, imports), minutes.
BASE_MINUTES = 5
#: Pessimistic per-iteration cost when nothing is measured yet: seconds per MB of dataset.
SECONDS_PER_ITERATION_PER_MB = 0.05


@lru_cache(maxsize=64)
def _state_mb(model_name: str, params_json: str, dataset_path: str, mtime_ns: int, seed: int) -> float:
    from scar.datasets import Dataset
    from scar.models import make_model

    model = make_model(model_name, json.loads(params_json))
    data = model.prepare(Dataset.load(dataset_path))
    state = model.init_state(data, seed)
    return sum(getattr(v, "nbytes", 0) for v in state.values()) / 2**20


def state_mb(model_name: str, params: Mapping[str, Any], dataset_path: str | os.PathLike, seed: int) -> float:
    """Size in MB of the model's full state (server and worker arrays) on this dataset."""
    path = str(dataset_path)
    return _state_mb(model_name, json.dumps(dict(params), sort_keys=True), path, os.stat(path).st_mtime_ns, seed)


def baseline_mem_mb(dataset_mb: float, state_mb_: float, max_iters: int) -> int:
    """Memory of a baseline job: the dataset (loaded and prepared) and every iteration's state."""
    return math.ceil(BASE_MB + SAFETY * (2 * dataset_mb + (max_iters + 1) * state_mb_))


def baseline_runtime(dataset_mb: float, max_iters: int) -> int:
    """Minutes of a baseline job: ``max_iters`` iterations, each costing in proportion to the data."""
    return math.ceil(BASE_MINUTES + SAFETY * max_iters * max(dataset_mb, 1.0) * SECONDS_PER_ITERATION_PER_MB / 60)


def trials_mem_mb(dataset_mb: float, baseline_mb: float) -> int:
    """Memory of a trial-batch job: the dataset and the baseline's snapshots, plus working copies."""
    return math.ceil(BASE_MB + SAFETY * (2 * dataset_mb + baseline_mb))


def runs_per_trial(settings: Any) -> int:
    """Recovered runs one trial measures: one per resolved strategy (each at its r)."""
    return len(settings.strategies)


def trials_runtime(summary_path: str | os.PathLike, n_trials: int, settings: Any) -> int:
    """Minutes of a batch of ``n_trials`` trials, from the baseline's measured speed and ``K_base``."""
    summary = json.loads(Path(summary_path).read_text())
    k_base = int(summary["k_base"])
    seconds = float(summary["seconds_per_iteration"])
    iterations = n_trials * runs_per_trial(settings) * settings.cap(k_base)
    return math.ceil(BASE_MINUTES + SAFETY * iterations * seconds / 60)


def iterations_runtime(summary_path: str | os.PathLike, iterations: int) -> int:
    """Minutes of a job that runs ``iterations`` model iterations, at the baseline's measured speed."""
    seconds = float(json.loads(Path(summary_path).read_text())["seconds_per_iteration"])
    return math.ceil(BASE_MINUTES + SAFETY * iterations * seconds / 60)


def study_iterations(summary_path: str | os.PathLike, n_runs: int, max_iters: int, settings: Any) -> int:
    """Iterations of a perturbation study: ``n_runs`` capped runs from the failure window, plus
    one run from ``K_base`` to ``max_iters`` that recomputes the final parameters."""
    k_base = int(json.loads(Path(summary_path).read_text())["k_base"])
    return n_runs * settings.cap(k_base) + max_iters


def validation_iterations(n_settings: int, n_replicates: int, max_iters: int, settings: Any) -> int:
    """Iterations of the planner's validation: whole runs (to at most the rework cap past
    ``max_iters``) for every checked setting and replicate."""
    return n_settings * n_replicates * settings.cap(max_iters)
