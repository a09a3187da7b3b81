# Checkpoint planner: a plan per experiment (scar.planner.plan), and for the experiments listed in
# planner.validate a simulation of whole runs under failures (scar.planner.validation).
VALIDATED = [tuple(e.split("/")) for e in PLANNER.validate]


def experiment_trials(wildcards):
    """The failure-trial batches of one experiment: the planner calibrates rework on them."""
    return [
        f"results/trials/{m}/{d}/seed{s}/batch{b}.csv"
        for m, d, s, b in BATCHES
        if (m, d) == (wildcards.model, wildcards.dataset)
    ]


rule plan_checkpoints:
    input:
        baseline=first_baseline("baseline.npz"),
        trials=experiment_trials,
    output:
        "results/planner/{model}/{dataset}/plan.csv",
    log:
        "results/logs/plan_checkpoints/{model}/{dataset}.log",
    params:
        settings=PLANNER,
    resources:
        mem_mb=plan_mem_mb,
        runtime=10,
    script:
        "../scripts/plan_checkpoints.py"


# The simulated runs do not depend on the trials (the plan's ranks and predictions, which do, are
# attached by planner_report), so this job runs beside the trials.
rule validate_plan:
    input:
        dataset="results/data/{dataset}.npz",
        baseline=first_baseline("baseline.npz"),
        summary=first_baseline("summary.json"),
    output:
        "results/planner/{model}/{dataset}/validation.csv",
    log:
        "results/logs/validate_plan/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/validate_plan/{model}/{dataset}.tsv"
    params:
        experiment=experiment,
        settings=PLANNER,
        trial_settings=SETTINGS,
    threads: THREADS
    resources:
        mem_mb=trials_mem_mb,
        runtime=validation_runtime,
        cpus_per_task=THREADS,
    script:
        "../scripts/validate_plan.py"


rule planner_report:
    input:
        plans=[f"results/planner/{m}/{d}/plan.csv" for m, d in EXPERIMENTS],
        validations=[f"results/planner/{m}/{d}/validation.csv" for m, d in VALIDATED],
    output:
        **{
            k: report(p, caption=f"../report/{c}.rst", category="Checkpoint planner")
            for k, p, c in [
                ("plans", "results/tables/plans.csv", "plans"),
                ("validation", "results/tables/planner_validation.csv", "planner_validation"),
                ("verdicts", "results/tables/planner_verdicts.csv", "planner_verdicts"),
                ("figure", "results/figures/planner_validation.png", "planner_validation_figure"),
            ]
            if k == "plans" or VALIDATED
        },
    log:
        "results/logs/planner_report.log",
    script:
        "../scripts/planner_report.py"


localrules:
    planner_report,
