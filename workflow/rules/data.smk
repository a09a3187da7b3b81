rule prepare_dataset:
    output:
        "results/data/{dataset}.npz",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    params:
        settings=lambda wc: config["datasets"][wc.dataset],
        seed=config["seed"],
    resources:
        # Loading and subsampling in memory; the largest shipped source (Cover Type, 581,012 x 54)
        # needs under 2 GB. Online sources download here: raise runtime in the profile if slow.
        mem_mb=4000,
        runtime=30,
        cpus_per_task=1,
    script:
        "../scripts/prepare_dataset.py"
