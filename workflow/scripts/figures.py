# Thin wrapper: rule figures -> scar.stages.aggregate.make_figures
from scar.stages.aggregate import make_figures
from scar.stages.job_log import setup_logging

setup_logging(snakemake.log[0])
make_figures(
    snakemake.input.trials,
    snakemake.input.baselines,
    by_strategy_out=snakemake.output.by_strategy,
    vs_perturbation_out=snakemake.output.vs_perturbation,
    vs_bytes_out=snakemake.output.vs_bytes,
    baselines_out=snakemake.output.baselines,
)
