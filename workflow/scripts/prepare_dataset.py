# Thin wrapper: rule prepare_dataset -> scar.stages.data.prepare_dataset
from scar.stages.data import prepare_dataset
from scar.stages.job_log import setup_logging

setup_logging(snakemake.log[0])
prepare_dataset(snakemake.wildcards.dataset, snakemake.params.settings, snakemake.params.seed, snakemake.output[0])
