import os

import scar.stages.config as scar_config
import scar.stages.resources as scar_resources
from scar.measure.trials import TrialSpec
from snakemake.exceptions import WorkflowError

try:
    scar_config.check(config)
except scar_config.ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

EXPERIMENTS = {(e.model, e.dataset): e for e in scar_config.experiments(config)}
TRIALS = scar_config.trial_table(config)
SETTINGS = scar_config.trial_settings(config)
STUDY = scar_config.study_settings(config)
PLANNER = scar_config.planner_settings(config)
RUNTIME = scar_config.runtime_settings(config)
RUNTIME_STRATEGIES = scar_config.runtime_strategies(config, RUNTIME)
THREADS = config.get("threads", 1)


def experiment(wildcards):
    """The configured (model, dataset) pair of a job."""
    return EXPERIMENTS[(wildcards.model, wildcards.dataset)]


# The sampled failures of each trial-batch job, by (model, dataset, baseline seed, batch).
BATCHES = {
    key: [TrialSpec(int(r.trial), float(r.position), float(r.failure_fraction), int(r.seed)) for r in rows.itertuples()]
    for key, rows in TRIALS.groupby(["model", "dataset", "baseline_seed", "batch"], sort=False)
}


def trial_specs(wildcards):
    """The sampled failures of a trial-batch job."""
    return BATCHES[(wildcards.model, wildcards.dataset, int(wildcards.seed), int(wildcards.batch))]


def trial_results():
    """Every trial batch's result table."""
    return [f"results/trials/{m}/{d}/seed{s}/batch{b}.csv" for m, d, s, b in BATCHES]


def first_baseline(name):
    """Input function: file ``name`` of an experiment's first baseline (the perturbation study
    and the planner use it)."""
    return lambda wc: f"results/baseline/{wc.model}/{wc.dataset}/seed{experiment(wc).seeds[0]}/{name}"


# Resources (scar/resources.py): evaluated when a job is ready, so its inputs exist (in a dry
# run, a missing input shows them as <TBD>).
def _mb(path):
    return os.path.getsize(path) / 2**20


def baseline_mem_mb(wildcards, input):
    exp = experiment(wildcards)
    state = scar_resources.state_mb(exp.model, exp.params, input.dataset, config["seed"])
    return scar_resources.baseline_mem_mb(_mb(input.dataset), state, exp.max_iters)


def baseline_runtime(wildcards, input):
    return scar_resources.baseline_runtime(_mb(input.dataset), experiment(wildcards).max_iters)


def trials_mem_mb(wildcards, input):
    return scar_resources.trials_mem_mb(_mb(input.dataset), _mb(input.baseline))


def trials_runtime(wildcards, input):
    return scar_resources.trials_runtime(input.summary, len(trial_specs(wildcards)), SETTINGS)


def plan_mem_mb(wildcards, input):
    return scar_resources.trials_mem_mb(0.0, _mb(input.baseline))


def study_runtime(wildcards, input):
    n_runs = STUDY.n_iterations * len(STUDY.levels)
    iterations = scar_resources.study_iterations(input.summary, n_runs, experiment(wildcards).max_iters, SETTINGS)
    return scar_resources.iterations_runtime(input.summary, iterations)


def validation_runtime(wildcards, input):
    n_settings = PLANNER.n_validated_settings
    iterations = scar_resources.validation_iterations(n_settings, PLANNER.n_replicates, experiment(wildcards).max_iters, SETTINGS)
    return scar_resources.iterations_runtime(input.summary, iterations)


def baseline_summaries():
    """Every baseline's JSON summary (every seed)."""
    return [f"results/baseline/{m}/{d}/seed{s}/summary.json" for (m, d), e in EXPERIMENTS.items() for s in e.seeds]


def planner_outputs():
    """The planner's tables and figure (rules/planner.smk); validation only when configured."""
    out = ["results/tables/plans.csv"]
    if config["planner"]["validate"]:
        out += ["results/tables/planner_validation.csv", "results/tables/planner_verdicts.csv"]
        out += ["results/figures/planner_validation.png"]
    return out


def final_outputs():
    """What `rule all` asks for: the tables and figures."""
    return [
        "results/tables/trials.csv",
        "results/tables/summary.csv",
        "results/tables/headline.csv",
        "results/tables/baselines.csv",
        "results/tables/results.csv",
        "results/tables/results.md",
        "results/figures/rework_by_strategy.png",
        "results/figures/rework_vs_perturbation.png",
        "results/figures/rework_vs_bytes.png",
        "results/figures/baselines.png",
        # Perturbation study and checkpoint planner (rules/perturbations.smk, rules/planner.smk).
        "results/tables/perturbations.csv",
        "results/tables/perturbation_summary.csv",
        "results/figures/perturbations.png",
        # The report's front page (rules/front_page.smk).
        FRONT_PAGE,
    ] + planner_outputs() + (["results/tables/live_vs_simulated.csv"] if RUNTIME.experiments else [])
