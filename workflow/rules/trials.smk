# One job runs a batch of trials of one (model, dataset, baseline seed): failures.batch_size of them
# (config/README.md). A finished batch file is never redone; it is written atomically at the end,
# and a killed job resumes from its finished trials (batch<i>.csv.progress, scar.stages.journal.TrialProgress).
rule run_trials:
    input:
        dataset="results/data/{dataset}.npz",
        baseline="results/baseline/{model}/{dataset}/seed{seed}/baseline.npz",
        summary="results/baseline/{model}/{dataset}/seed{seed}/summary.json",
    output:
        "results/trials/{model}/{dataset}/seed{seed}/batch{batch}.csv",
    log:
        "results/logs/run_trials/{model}/{dataset}/seed{seed}/batch{batch}.log",
    params:
        experiment=experiment,
        specs=trial_specs,
        settings=SETTINGS,
    threads: THREADS
    resources:
        mem_mb=trials_mem_mb,
        runtime=trials_runtime,
        cpus_per_task=THREADS,
    script:
        "../scripts/run_trials.py"
