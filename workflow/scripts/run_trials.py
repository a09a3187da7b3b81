# Thin wrapper: rule run_trials -> scar.stages.pipeline.run_trials
from scar.stages.pipeline import run_trials, setup_logging

setup_logging(snakemake.log[0])
exp = snakemake.params.experiment
run_trials(
    exp.model,
    exp.params,
    snakemake.input.dataset,
    snakemake.input.baseline,
    snakemake.params.specs,
    snakemake.params.settings,
    snakemake.output[0],
    threads=snakemake.threads,
)
