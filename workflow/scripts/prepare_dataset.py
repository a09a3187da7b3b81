# Thin wrapper: rule prepare_dataset -> scar.stages.pipeline.prepare_dataset
from scar.stages.pipeline import prepare_dataset, setup_logging

setup_logging(snakemake.log[0])
prepare_dataset(snakemake.wildcards.dataset, snakemake.params.settings, snakemake.params.seed, snakemake.output[0])
