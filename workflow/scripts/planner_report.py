# Thin wrapper: rule planner_report -> scar.stages.planner.planner_report
from scar.stages.job_log import setup_logging
from scar.stages.planner import planner_report

setup_logging(snakemake.log[0])
planner_report(
    snakemake.input.plans,
    snakemake.input.validations,
    plans_out=snakemake.output.plans,
    validation_out=snakemake.output.get("validation"),
    verdicts_out=snakemake.output.get("verdicts"),
    figure_out=snakemake.output.get("figure"),
)
