rule run_trial:
    input:
        dataset="results/data/{dataset}.npz",
        baseline="results/baseline/{model}/{dataset}/baseline.npz",
    output:
        "results/trials/{model}/{dataset}/f{fraction}/trial{trial}.csv",
    log:
        "results/logs/run_trial/{model}/{dataset}/f{fraction}/trial{trial}.log",
    params:
        experiment=experiment,
        spec=trial_spec,
        settings=SETTINGS,
    threads: THREADS
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/run_trial.py"
