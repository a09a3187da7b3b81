# Thin wrapper: rule prepare_dataset -> scar.pipeline.prepare_dataset
from scar.pipeline import prepare_dataset, setup_logging

setup_logging(snakemake.log[0])
prepare_dataset(snakemake.wildcards.dataset, snakemake.params.settings, snakemake.params.seed, snakemake.output[0])
