"""SCAR: checkpoint-based fault tolerance for iterative-convergent machine learning.

Partial recovery and prioritized checkpoints (Qiao et al., ICML 2019), the iteration-cost
bound, and the measurement of rework. Modules, one concept each:

- :mod:`scar.core.blocks` parameter blocks and their placement on server nodes
- :mod:`scar.core.failures` the failure model
- :mod:`scar.checkpoint.policies` checkpoint policies; :mod:`scar.checkpoint.checkpointer` the :class:`~scar.checkpoint.checkpointer.Checkpointer`
- :mod:`scar.checkpoint.codecs` how saved rows are written (raw)
- :mod:`scar.checkpoint.stores` checkpoint stores (in memory; a crash-safe directory store)
- :mod:`scar.core.recovery` recovery policies and strategies
- :mod:`scar.models` the model interface, the registry and the models (mlr, mf, lda, quadratic)
- :mod:`scar.datasets` datasets, online and embedded (classification, ratings, corpora)
- :mod:`scar.measure.trajectory` baseline runs and recovered runs (the measurement)
- :mod:`scar.core.bounds` the rework bound and the contraction-rate estimate
- :mod:`scar.measure.trials` failure trials
- :mod:`scar.measure.perturbations`, :mod:`scar.measure.study` controlled perturbations and the study of the bound
- :mod:`scar.planner.plan`, :mod:`scar.planner.simulation` the checkpoint planner and its check by simulation
- :mod:`scar.report.analysis`, :mod:`scar.report.figures` aggregation and figures
- :mod:`scar.stages.config`, :mod:`scar.stages.pipeline` what the Snakemake workflow runs
- :mod:`scar.stages.resources` what each workflow job asks a scheduler for (memory, runtime)
"""

__version__ = "0.1.0"
