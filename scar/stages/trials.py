"""Stage: run a batch of failure trials (rule run_trials)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from scar.measure.trials import CheckpointReplays, TrialSettings, TrialSpec, run_trial, trials_frame
from scar.stages.files import PathLike, load_experiment, write_csv
from scar.stages.journal import TrialProgress

log = logging.getLogger("scar")


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
    model, dataset, data, baseline = load_experiment(model_name, params, dataset_path, baseline_path)
    stat = os.stat(baseline_path)
    progress = TrialProgress(
        f"{out}.progress",
        {"model": model_name, "params": dict(params), "settings": settings, "baseline": [stat.st_size, stat.st_mtime_ns]},
    )
    done = progress.load()
    rows: list[dict[str, Any]] = []
    replays = CheckpointReplays(baseline)  # the fractions of one position share its replays
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
                dataset=dataset.name, dataset_label=dataset.label, data_source=dataset.source, replays=replays,
            )  # fmt: skip
            progress.add(key, trial_rows)
            rows += trial_rows
            log.info("trial %d (f=%g) done in %.2fs", spec.trial, spec.fraction, time.perf_counter() - t0)
    frame = trials_frame(rows)
    write_csv(frame, out)
    progress.remove()
    return frame
