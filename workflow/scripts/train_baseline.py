# Thin wrapper: rule train_baseline -> scar.stages.baseline.train_baseline
from scar.stages.baseline import train_baseline
from scar.stages.job_log import setup_logging

setup_logging(snakemake.log[0])
exp = snakemake.params.experiment
train_baseline(
    exp.model,
    exp.params,
    snakemake.input.dataset,
    snakemake.output.baseline,
    snakemake.output.summary,
    max_iters=exp.max_iters,
    tol=snakemake.params.tol,
    final_window=snakemake.params.final_window,
    seed=snakemake.params.seed,
    n_boot=snakemake.params.n_boot,
    settings=snakemake.params.settings,
    threads=snakemake.threads,
)
