# Thin wrapper: rule train_baseline -> scar.stages.pipeline.train_baseline
from scar.stages.pipeline import setup_logging, train_baseline

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
    threads=snakemake.threads,
)
