import scar.config as scar_config
from scar.trials import TrialSpec
from snakemake.exceptions import WorkflowError

try:
    scar_config.check(config)
except scar_config.ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

EXPERIMENTS = {(e.model, e.dataset): e for e in scar_config.experiments(config)}
TRIALS = scar_config.trial_table(config)
SETTINGS = scar_config.trial_settings(config)
THREADS = config.get("threads", 1)


def experiment(wildcards):
    """The configured (model, dataset) pair of a job."""
    return EXPERIMENTS[(wildcards.model, wildcards.dataset)]


def trial_spec(wildcards):
    """The sampled failure of a trial job."""
    row = TRIALS[
        (TRIALS.model == wildcards.model)
        & (TRIALS.dataset == wildcards.dataset)
        & (TRIALS.fraction == wildcards.fraction)
        & (TRIALS.trial == int(wildcards.trial))
    ].iloc[0]
    return TrialSpec(int(row.trial), float(row.position), float(row.failure_fraction), int(row.seed))


def trial_results():
    """Every trial's result table."""
    return [
        f"results/trials/{r.model}/{r.dataset}/f{r.fraction}/trial{r.trial}.csv"
        for r in TRIALS.itertuples()
    ]


def baseline_summaries():
    """Every baseline's JSON summary."""
    return [f"results/baseline/{m}/{d}/summary.json" for m, d in EXPERIMENTS]


def planner_outputs():
    """The planner's tables and figure (rules/planner.smk); validation only when configured."""
    out = ["results/tables/plans.csv"]
    if config["planner"]["validate"]:
        out += ["results/tables/planner_validation.csv", "results/figures/planner_validation.png"]
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
        "results/figures/baselines.png",
        # Perturbation study and checkpoint planner (rules/perturbations.smk, rules/planner.smk).
        "results/tables/perturbations.csv",
        "results/tables/perturbation_summary.csv",
        "results/figures/perturbations.png",
    ] + planner_outputs()
