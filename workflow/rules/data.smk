rule prepare_dataset:
    output:
        "results/data/{dataset}.npz",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    params:
        settings=lambda wc: config["datasets"][wc.dataset],
        seed=config["seed"],
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/prepare_dataset.py"
