# Thin wrapper: rule plan_checkpoints -> scar.stages.pipeline.plan_checkpoints
from scar.stages.pipeline import plan_checkpoints, setup_logging

setup_logging(snakemake.log[0])
plan_checkpoints(
    snakemake.input.baseline,
    snakemake.params.settings,
    (snakemake.wildcards.model, snakemake.wildcards.dataset),
    snakemake.output[0],
)
