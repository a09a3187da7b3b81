# Thin wrapper: rule run_trials -> scar.stages.trials.run_trials
from scar.stages.job_log import setup_logging
from scar.stages.trials import run_trials

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
