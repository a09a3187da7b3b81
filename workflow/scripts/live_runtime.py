# Thin wrapper: rule live_runtime -> scar.stages.runtime.live_vs_simulated
from scar.stages.job_log import setup_logging
from scar.stages.runtime import live_vs_simulated

setup_logging(snakemake.log[0])
runs = [
    {"experiment": e, "dataset": d, "baseline": b}
    for e, d, b in zip(snakemake.params.experiments, snakemake.input.datasets, snakemake.input.baselines)
]
live_vs_simulated(
    runs,
    snakemake.params.settings,
    snakemake.params.trial_settings,
    snakemake.params.strategies,
    snakemake.output[0],
    window=snakemake.params.window,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
)
