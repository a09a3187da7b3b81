# Thin wrapper: rule aggregate -> scar.stages.aggregate.aggregate
from scar.stages.aggregate import aggregate
from scar.stages.job_log import setup_logging

setup_logging(snakemake.log[0])
aggregate(
    snakemake.input.trials,
    snakemake.input.baselines,
    trials_out=snakemake.output.trials,
    summary_out=snakemake.output.summary,
    headline_out=snakemake.output.headline,
    baselines_out=snakemake.output.baselines,
    results_out=snakemake.output.results,
    results_md_out=snakemake.output.results_md,
    seed=snakemake.params.seed,
)
