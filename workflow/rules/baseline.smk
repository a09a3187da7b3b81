rule train_baseline:
    input:
        dataset="results/data/{dataset}.npz",
    output:
        baseline="results/baseline/{model}/{dataset}/seed{seed}/baseline.npz",
        summary="results/baseline/{model}/{dataset}/seed{seed}/summary.json",
    log:
        "results/logs/train_baseline/{model}/{dataset}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_baseline/{model}/{dataset}/seed{seed}.tsv"
    params:
        experiment=experiment,
        tol=lambda wc: experiment(wc).tol,
        final_window=config["baseline"]["final_window"],
        seed=lambda wc: int(wc.seed),
        # Bootstrap resamples of the one contraction estimate (used by trials, study and planner).
        n_boot=STUDY.n_boot,
        settings=SETTINGS,
    threads: THREADS
    resources:
        mem_mb=baseline_mem_mb,
        runtime=baseline_runtime,
        cpus_per_task=THREADS,
    script:
        "../scripts/train_baseline.py"
