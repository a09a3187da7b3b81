"""SCAR: checkpoint-based fault tolerance for iterative-convergent machine learning.

Partial recovery and prioritized checkpoints (Qiao et al., ICML 2019), the iteration-cost
bound, and the measurement of rework. Modules, one concept each:

- :mod:`scar.blocks` parameter blocks and their placement on server nodes
- :mod:`scar.failures` the failure model
- :mod:`scar.policies` checkpoint policies and the :class:`~scar.policies.Checkpointer`
- :mod:`scar.stores` checkpoint stores (in memory; a crash-safe directory store)
- :mod:`scar.recovery` recovery policies and strategies
- :mod:`scar.models` the model interface, the registry and the models (mlr, mf, lda, quadratic)
- :mod:`scar.datasets` datasets, online and embedded (classification, ratings, corpora)
- :mod:`scar.trajectory` baseline runs and recovered runs (the measurement)
- :mod:`scar.bounds` the rework bound and the contraction-rate estimate
- :mod:`scar.trials` failure trials
- :mod:`scar.perturbations`, :mod:`scar.study` controlled perturbations and the study of the bound
- :mod:`scar.planner`, :mod:`scar.simulation` the checkpoint planner and its check by simulation
- :mod:`scar.analysis`, :mod:`scar.plots` aggregation and figures
- :mod:`scar.config`, :mod:`scar.pipeline` what the Snakemake workflow runs
- :mod:`scar.resources` what each workflow job asks a scheduler for (memory, runtime)
"""

__version__ = "0.1.0"
