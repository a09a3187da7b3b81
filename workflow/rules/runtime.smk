# Live runtime (scar.runtime): real SIGKILLed shards on Ray beside the simulation of the same
# failures. One job for every experiment of runtime.experiments: Ray starts once.
LIVE = [tuple(e.split("/")) for e in RUNTIME.experiments]


rule live_runtime:
    input:
        datasets=[f"results/data/{d}.npz" for m, d in LIVE],
        baselines=[f"results/baseline/{m}/{d}/seed{EXPERIMENTS[(m, d)].seeds[0]}/baseline.npz" for m, d in LIVE],
    output:
        report("results/tables/live_vs_simulated.csv", caption="../report/live_vs_simulated.rst", category="Live runtime"),
    log:
        "results/logs/live_runtime.log",
    benchmark:
        "results/benchmarks/live_runtime.tsv"
    params:
        experiments=[EXPERIMENTS[e] for e in LIVE],
        settings=RUNTIME,
        trial_settings=SETTINGS,
        strategies=RUNTIME_STRATEGIES,
        window=scar_config.failure_window(config),
        seed=config["seed"],
    threads: THREADS
    resources:
        # Ray's processes: its own (~1 GB here) and one per shard and worker.
        mem_mb=3000,
        runtime=30,
    script:
        "../scripts/live_runtime.py"
