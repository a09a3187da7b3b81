# Perturbation study: controlled perturbations of the server parameters, measured rework
# against the bound (scar.measure.study). One job per experiment.


rule perturbation_study:
    input:
        dataset="results/data/{dataset}.npz",
        baseline=first_baseline("baseline.npz"),
        summary=first_baseline("summary.json"),
    output:
        runs="results/perturbations/{model}/{dataset}/runs.csv",
        fit="results/perturbations/{model}/{dataset}/contraction.json",
    log:
        "results/logs/perturbation_study/{model}/{dataset}.log",
    benchmark:
        "results/benchmarks/perturbation_study/{model}/{dataset}.tsv"
    params:
        experiment=experiment,
        settings=STUDY,
        trial_settings=SETTINGS,
    threads: THREADS
    resources:
        mem_mb=trials_mem_mb,
        runtime=study_runtime,
        cpus_per_task=THREADS,
    script:
        "../scripts/perturbation_study.py"


rule perturbation_report:
    input:
        runs=[f"results/perturbations/{m}/{d}/runs.csv" for m, d in EXPERIMENTS],
        fits=[f"results/perturbations/{m}/{d}/contraction.json" for m, d in EXPERIMENTS],
    output:
        runs=report(
            "results/tables/perturbations.csv",
            caption="../report/perturbations_table.rst",
            category="Perturbation study",
        ),
        summary=report(
            "results/tables/perturbation_summary.csv",
            caption="../report/perturbation_summary.rst",
            category="Perturbation study",
        ),
        figure=report(
            "results/figures/perturbations.png",
            caption="../report/perturbations_figure.rst",
            category="Perturbation study",
        ),
    log:
        "results/logs/perturbation_report.log",
    script:
        "../scripts/perturbation_report.py"


localrules:
    perturbation_report,
