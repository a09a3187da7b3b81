# Thin wrapper: rule plan_checkpoints -> scar.stages.planner.plan_checkpoints
from scar.stages.job_log import setup_logging
from scar.stages.planner import plan_checkpoints

setup_logging(snakemake.log[0])
plan_checkpoints(
    snakemake.input.baseline,
    snakemake.params.settings,
    (snakemake.wildcards.model, snakemake.wildcards.dataset),
    snakemake.output[0],
    snakemake.input.trials,
)
