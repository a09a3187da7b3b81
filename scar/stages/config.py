"""The evaluation's configuration, as the workflow reads it (``config/config.yaml``).

The JSON schema (``workflow/schemas/config.schema.yaml``) checks the shape of the file; this
module checks what a schema cannot (that a model's datasets are declared, that its
hyperparameters exist, that ``r * C`` is whole) and turns the file into the objects the
stages need. Every error names the offending key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from scar.checkpoint.strategy import Strategy, resolve_strategies
from scar.core.failures import check_window
from scar.datasets import check_dataset_options, declared_dims
from scar.measure.study import StudySettings
from scar.measure.trials import TrialSettings, plan_trials
from scar.models import make_model
from scar.planner.inputs import PlannerSettings
from scar.stages.runtime import RuntimeSettings


class ConfigError(ValueError):
    """A configuration value that is wrong; the message names its key."""


@dataclass(frozen=True)
class Experiment:
    """One (model, dataset) pair with its resolved hyperparameters."""

    model: str
    dataset: str
    params: dict[str, Any]
    max_iters: int
    tol: float
    #: Seeds of its baselines: ``baseline.seeds`` of them for a stochastic model (the trials are
    #: spread over them, so the intervals hold the variation between baselines), one otherwise.
    seeds: tuple[int, ...] = (0,)
    #: Failure positions of its trials (``failures.n_trials`` unless the model or dataset sets
    #: its own ``n_trials``: an expensive model gets fewer in the default run).
    n_trials: int = 1


def experiments(config: Mapping[str, Any]) -> list[Experiment]:
    """Every (model, dataset) pair of the config, hyperparameters merged with per-dataset overrides.

    ``tol`` (the convergence target) can be set per model and per dataset because models
    descend at very different paces: with one tolerance, ALS on a dense matrix would "converge"
    in two sweeps while LDA would need hundreds.
    """
    out = []
    for model, entry in config["models"].items():
        overrides = entry.get("overrides") or {}
        for name in overrides:
            if name not in entry["datasets"]:
                raise ConfigError(f"models.{model}.overrides.{name}: {name!r} is not in models.{model}.datasets")
        for dataset in entry["datasets"]:
            if dataset not in config["datasets"]:
                raise ConfigError(
                    f"models.{model}.datasets: dataset {dataset!r} is not declared under 'datasets' "
                    f"(declared: {sorted(config['datasets'])})"
                )
            over = overrides.get(dataset) or {}
            params = {**(entry.get("params") or {}), **(over.get("params") or {})}
            try:
                stochastic = type(make_model(model, params)).stochastic
            except ValueError as err:
                raise ConfigError(f"models.{model}: {err}") from err
            max_iters = int(over.get("max_iters", entry["max_iters"]))
            # The convergence target's tolerance: per dataset, else per model, else baseline.tol.
            tol = float(over.get("tol", entry.get("tol", config["baseline"]["tol"])))
            n_trials = int(over.get("n_trials", entry.get("n_trials", config["failures"]["n_trials"])))
            # No more baselines than failure positions to spread over them.
            n_seeds = min(baseline_seeds(config), n_trials) if stochastic else 1
            seeds = tuple(int(config["seed"]) + j for j in range(n_seeds))
            out.append(Experiment(model, dataset, params, max_iters, tol, seeds, n_trials))
    return out


def baseline_seeds(config: Mapping[str, Any]) -> int:
    """Baselines per stochastic experiment (``baseline.seeds``; default 3)."""
    n = config["baseline"].get("seeds", 3)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"baseline.seeds: need an integer >= 1, got {n!r}")
    return n


def check_layout(config: Mapping[str, Any], exp: Experiment, settings: TrialSettings) -> None:
    """Check that experiment ``exp``'s server arrays can be spread over the nodes and saved by
    every strategy, from the sizes its dataset declares (:func:`scar.datasets.declared_dims`);
    where they are known only once the data is loaded, the baseline stage checks it first."""
    entry = config["datasets"][exp.dataset]
    dims = declared_dims(exp.dataset, entry.get("source", "embedded"), entry.get("options") or {})
    shapes = None if dims is None else make_model(exp.model, exp.params).server_shapes(dims)
    if shapes is None:
        return
    try:
        settings.check_layout(shapes)
    except ValueError as err:
        raise ConfigError(f"models.{exp.model} on dataset {exp.dataset} (server arrays {shapes}): {err}") from None


def trial_settings(config: Mapping[str, Any]) -> TrialSettings:
    """The settings shared by every trial."""
    failures, checkpoints = config["failures"], config["checkpoints"]
    try:
        return TrialSettings.from_names(
            config["strategies"],
            checkpoints["r_values"],
            interval=int(checkpoints["interval"]),
            n_nodes=int(failures["n_nodes"]),
            placement=failures["placement"],
            rework_cap=float(config["rework_cap"]),
            divergence_factor=float(config.get("divergence_factor", 10.0)),
            seed=int(config["seed"]),
        )
    except ValueError as err:
        raise ConfigError(f"checkpoints/failures/strategies: {err}") from err


def failure_window(config: Mapping[str, Any]) -> tuple[float, float]:
    """``failures.window``, checked: where failures (and the study's perturbations) strike."""
    try:
        return check_window(config["failures"]["window"])
    except ValueError as err:
        raise ConfigError(f"failures.window: {err}") from None


def study_settings(config: Mapping[str, Any]) -> StudySettings:
    """The perturbation study's settings (``perturbations:``; its window is ``failures.window``)."""
    p = config["perturbations"]
    try:
        return StudySettings(
            n_iterations=int(p["n_iterations"]),
            kinds=tuple(p["kinds"]),
            norms=tuple(float(x) for x in p["norms"]),
            block_fractions=tuple(float(x) for x in p["block_fractions"]),
            rollback_staleness=int(p["rollback_staleness"]),
            formats=tuple(p["formats"]),
            staleness=tuple(int(k) for k in p["staleness"]),
            window=failure_window(config),
            n_boot=int(p["n_boot"]),
            seed=int(config["seed"]),
        )
    except ValueError as err:
        raise ConfigError(str(err)) from err


def planner_settings(config: Mapping[str, Any]) -> PlannerSettings:
    """The planner's settings (``planner:``); ``planner.validate`` must name configured experiments."""
    p = config["planner"]
    known = {f"{e.model}/{e.dataset}" for e in experiments(config)}
    for name in p["validate"]:
        if name not in known:
            raise ConfigError(f"planner.validate: {name!r} is not a configured experiment (model/dataset: {sorted(known)})")
    try:
        return PlannerSettings(
            validate=tuple(p["validate"]),
            checkpoint_cost=float(p["checkpoint_cost"]),
            restore_cost=float(p["restore_cost"]),
            mtbf=float(p["mtbf"]),
            failure_fraction=float(p["failure_fraction"]),
            strategies=tuple(p["strategies"]),
            intervals=tuple(int(c) for c in p["intervals"]),
            r_values=tuple(float(r) for r in p["r_values"]),
            n_replicates=int(p["n_replicates"]),
            min_calibration_trials=int(p["min_calibration_trials"]),
        )
    except ValueError as err:
        raise ConfigError(str(err)) from err


def runtime_settings(config: Mapping[str, Any]) -> RuntimeSettings:
    """The live runtime's settings (``runtime:``; absent or no experiments: the stage is off).
    ``runtime.experiments`` must name configured experiments."""
    r = config.get("runtime") or {}
    known = {f"{e.model}/{e.dataset}" for e in experiments(config)}
    for name in r.get("experiments", []):
        if name not in known:
            raise ConfigError(f"runtime.experiments: {name!r} is not a configured experiment (model/dataset: {sorted(known)})")
    defaults = RuntimeSettings()
    try:
        settings = RuntimeSettings(
            experiments=tuple(r.get("experiments", ())),
            strategies=tuple(r.get("strategies", defaults.strategies)),
            n_failures=int(r.get("n_failures", defaults.n_failures)),
            fraction=float(r.get("fraction", defaults.fraction)),
            n_nodes=int(r.get("n_nodes", defaults.n_nodes)),
            address=r.get("address") or None,
            num_cpus=int(r.get("num_cpus", defaults.num_cpus)),
        )
        runtime_strategies(config, settings)
    except ValueError as err:
        msg = str(err)
        raise ConfigError(msg if msg.startswith("runtime.") else f"runtime: {msg}") from err
    return settings


def runtime_strategies(config: Mapping[str, Any], settings: RuntimeSettings) -> tuple[Strategy, ...]:
    """The live runtime's strategies, each fractional one at every ``checkpoints.r_values``."""
    return resolve_strategies(
        settings.strategies, [float(r) for r in config["checkpoints"]["r_values"]], int(config["checkpoints"]["interval"])
    )


def fraction_tag(fraction: float) -> str:
    """How a failure fraction appears in paths: ``0.125``."""
    return f"{fraction:g}"


#: Trials one workflow job runs when ``failures.batch_size`` is not given.
DEFAULT_BATCH_SIZE = 10


def batch_size(config: Mapping[str, Any]) -> int:
    """Trials per workflow job (``failures.batch_size``)."""
    size = config["failures"].get("batch_size", DEFAULT_BATCH_SIZE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"failures.batch_size: need an integer >= 1, got {size!r}")
    return size


def trial_table(config: Mapping[str, Any]) -> pd.DataFrame:
    """Every trial to run: model, dataset, baseline seed, batch, fraction (and its path tag),
    trial, position, seed.

    Sampled from the config's seed alone, so the workflow's DAG is static and the same config
    always gives the same trials. Failure position ``i`` is measured on the baseline of seed
    ``seeds[i % len(seeds)]`` (every fraction of it on the same one, so fractions stay paired).
    ``batch`` numbers the workflow jobs of one (model, dataset, baseline seed): its trials in plan
    order (position-major, then fraction), ``failures.batch_size`` per job.
    """
    failures = config["failures"]
    size = batch_size(config)
    rows = []
    for exp in experiments(config):
        specs = plan_trials(
            exp.n_trials,
            [float(f) for f in failures["fractions"]],
            failure_window(config),
            int(config["seed"]),
            key=f"{exp.model}/{exp.dataset}",
        )
        placed = [(exp.seeds[s.trial % len(exp.seeds)], s) for s in specs]
        for seed in exp.seeds:
            mine = [s for b, s in placed if b == seed]
            rows += [
                {
                    "model": exp.model,
                    "dataset": exp.dataset,
                    "baseline_seed": seed,
                    "batch": i // size,
                    "fraction": fraction_tag(s.fraction),
                    "failure_fraction": s.fraction,
                    "trial": s.trial,
                    "position": s.position,
                    "seed": s.seed,
                }
                for i, s in enumerate(mine)
            ]
    return pd.DataFrame(rows)


def check(config: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` for anything the schema cannot catch."""
    for name, entry in config["datasets"].items():
        try:
            check_dataset_options(name, entry.get("options") or {})
        except ValueError as err:
            raise ConfigError(f"datasets.{name}: {err}") from err
    settings = trial_settings(config)
    for exp in experiments(config):
        check_layout(config, exp, settings)
    batch_size(config)
    baseline_seeds(config)
    failure_window(config)
    fractions = config["failures"]["fractions"]
    for f in fractions:
        if not 0 < f <= 1:
            raise ConfigError(f"failures.fractions: {f} is not in (0, 1]")
    tags = [fraction_tag(float(f)) for f in fractions]
    if len(set(tags)) != len(tags):
        raise ConfigError(f"failures.fractions: {fractions} are not distinct at the precision of result paths ({tags})")
    study_settings(config)
    planner_settings(config)
    runtime = runtime_settings(config)
    for name in runtime.experiments:
        exp = next(e for e in experiments(config) if f"{e.model}/{e.dataset}" == name)
        check_layout(config, exp, replace(settings, n_nodes=runtime.n_nodes, strategies=runtime_strategies(config, runtime)))
