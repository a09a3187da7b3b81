"""What the Snakemake workflow runs: the configuration (:mod:`~scar.stages.config`), one module
per stage (data, baseline, trials, aggregate, study, planner), the trial journal, job logging
and job resources. Workflow scripts only unpack Snakemake's arguments and call these."""
