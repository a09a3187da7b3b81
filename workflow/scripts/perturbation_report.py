# Thin wrapper: rule perturbation_report -> scar.stages.study.perturbation_report
from scar.stages.job_log import setup_logging
from scar.stages.study import perturbation_report

setup_logging(snakemake.log[0])
perturbation_report(
    snakemake.input.runs,
    snakemake.input.fits,
    runs_out=snakemake.output.runs,
    summary_out=snakemake.output.summary,
    figure_out=snakemake.output.figure,
)
