# Thin wrapper: rule front_page -> scar.stages.front_page.write_front_page
from scar.stages.front_page import write_front_page
from scar.stages.job_log import setup_logging

setup_logging(snakemake.log[0])
write_front_page(
    snakemake.params.description,
    snakemake.input.headline,
    snakemake.input.get("verdicts"),
    snakemake.output[0],
)
