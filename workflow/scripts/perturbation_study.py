# Thin wrapper: rule perturbation_study -> scar.stages.study.perturbation_study
from scar.stages.job_log import setup_logging
from scar.stages.study import perturbation_study

setup_logging(snakemake.log[0])
exp = snakemake.params.experiment
perturbation_study(
    exp.model,
    exp.params,
    snakemake.input.dataset,
    snakemake.input.baseline,
    snakemake.params.settings,
    snakemake.params.trial_settings,
    runs_out=snakemake.output.runs,
    fit_out=snakemake.output.fit,
    threads=snakemake.threads,
)
