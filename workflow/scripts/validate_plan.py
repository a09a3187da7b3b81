# Thin wrapper: rule validate_plan -> scar.stages.pipeline.validate_plan
from scar.stages.pipeline import setup_logging, validate_plan

setup_logging(snakemake.log[0])
exp = snakemake.params.experiment
validate_plan(
    exp.model,
    exp.params,
    snakemake.input.dataset,
    snakemake.input.baseline,
    snakemake.params.settings,
    snakemake.params.trial_settings,
    snakemake.output[0],
    threads=snakemake.threads,
)
