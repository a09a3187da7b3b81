# Thin wrapper: rule validate_plan -> scar.stages.planner.validate_plan
from scar.stages.job_log import setup_logging
from scar.stages.planner import validate_plan

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
