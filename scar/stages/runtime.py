"""Stage: real failures on the live runtime beside the simulation of the same failures (rule
live_runtime; docs/design.md §11).

One job starts (or joins) one Ray cluster, and for each configured experiment and strategy
SIGKILLs the shards of ``runtime.n_failures`` sampled failures, one live run each, writing
``live_vs_simulated.csv``. ``ray`` is imported only when the stage runs.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from scar.checkpoint.strategy import Strategy
from scar.measure.trials import TrialSettings, TrialSpec, plan_trials
from scar.stages.files import PathLike, load_experiment, write_csv

log = logging.getLogger("scar")


@dataclass(frozen=True)
class RuntimeSettings:
    """The ``runtime:`` section: which experiments and strategies fail for real, how often, on
    how many shards, on which Ray cluster (``address`` None: a local one of ``num_cpus``)."""

    experiments: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ("traditional", "scar")
    n_failures: int = 3
    fraction: float = 0.25
    n_nodes: int = 4
    address: str | None = None
    num_cpus: int = 2

    def __post_init__(self) -> None:
        if self.n_failures < 1:
            raise ValueError(f"runtime.n_failures: need an integer >= 1, got {self.n_failures}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"runtime.fraction: {self.fraction} is not in (0, 1]")
        if self.n_nodes < 1:
            raise ValueError(f"runtime.n_nodes: need an integer >= 1, got {self.n_nodes}")
        if self.num_cpus < 1:
            raise ValueError(f"runtime.num_cpus: need an integer >= 1, got {self.num_cpus}")

    def failures(self, experiment: str, window: tuple[float, float], seed: int) -> list[TrialSpec]:
        """The sampled failures of ``experiment`` ("model/dataset")."""
        return plan_trials(self.n_failures, [self.fraction], window, seed, key=f"runtime/{experiment}")

    def trial_settings(self, settings: TrialSettings, strategies: Sequence[Strategy]) -> TrialSettings:
        """The trials' settings on this runtime's shards and strategies."""
        return replace(settings, strategies=tuple(strategies), n_nodes=self.n_nodes)


def start_ray(settings: RuntimeSettings) -> bool:
    """Join ``settings.address``, or start a local instance; whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    if settings.address:
        ray.init(address=settings.address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=settings.num_cpus, include_dashboard=False, log_to_driver=False)
    return True


def live_vs_simulated(
    runs: Sequence[Mapping[str, Any]],
    settings: RuntimeSettings,
    trial_settings: TrialSettings,
    strategies: Sequence[Strategy],
    out: PathLike,
    *,
    window: tuple[float, float],
    seed: int,
    threads: int = 1,
    workdir: PathLike | None = None,
) -> pd.DataFrame:
    """Live failures of every experiment of ``runs`` (dicts with ``experiment`` (an
    :class:`~scar.stages.config.Experiment`), ``dataset`` and ``baseline`` paths) under every
    strategy, beside their simulation (CSV, :data:`~scar.runtime.live.LIVE_COLUMNS`)."""
    import ray

    from scar.runtime.engine import LiveEngine
    from scar.runtime.live import LIVE_COLUMNS, live_trial

    t0 = time.perf_counter()
    started = start_ray(settings)
    log.info("ray %s in %.1fs", "started" if started else "joined", time.perf_counter() - t0)
    sim_settings = settings.trial_settings(trial_settings, strategies)
    rows = []
    scratch = None if workdir is not None else tempfile.TemporaryDirectory(prefix="scar-runtime-")
    home = Path(workdir if workdir is not None else scratch.name)  # type: ignore[union-attr]
    try:
        with threadpool_limits(threads):
            for run in runs:
                exp = run["experiment"]
                name = f"{exp.model}/{exp.dataset}"
                model, dataset, data, baseline = load_experiment(exp.model, exp.params, run["dataset"], run["baseline"])
                assert baseline is not None
                sim_settings.check_layout({n: a.shape for n, a in baseline.server_state_at(0).items()})
                engine = LiveEngine(
                    model, data, baseline.seed, baseline.state_at(0), n_nodes=settings.n_nodes,
                    home=home / exp.model / exp.dataset, placement=sim_settings.placement, placement_seed=sim_settings.seed,
                )  # fmt: skip
                try:
                    for spec in settings.failures(name, window, seed):
                        for strategy in strategies:
                            if strategy.recovery == "rebuild" and not model.rebuilds:
                                continue  # as the simulated trials: it would be the partial recovery
                            row = live_trial(
                                engine, model, data, baseline, spec, sim_settings, strategy,
                                dataset=dataset.name, run=f"{strategy.name}-r{strategy.r:g}-trial{spec.trial}",
                            )  # fmt: skip
                            rows.append(row)
                            log.info(
                                "%s %s trial %d: T=%d nodes %s, live rework %s, simulated %s, recovery %.2fs",
                                name, strategy.name, spec.trial, row["failure_iteration"], row["failed_nodes"],
                                row["live_rework"], row["simulated_rework"], row["recovery_s"],
                            )  # fmt: skip
                finally:
                    engine.close()
    finally:
        if started:
            ray.shutdown()
        if scratch is not None:
            scratch.cleanup()
    table = pd.DataFrame(rows, columns=list(LIVE_COLUMNS))
    write_csv(table, out)
    log.info("live runtime: %d failures in %.1fs", len(table), time.perf_counter() - t0)
    return table
