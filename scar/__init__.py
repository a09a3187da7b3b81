"""SCAR: checkpoint-based fault tolerance for iterative-convergent machine learning.

Partial recovery and prioritized checkpoints (Qiao et al., ICML 2019), the iteration-cost
bound, and the measurement of rework. Subpackages by concept; imports point one way
(docs/design.md §9)::

    stages  ->  planner  ->  measure  ->  checkpoint, models, datasets  ->  core
    stages  ->  report (tables and figures: imported by the stages only)

- :mod:`scar.core` blocks and their placement, the failure model, recovery policies, the bound
- :mod:`scar.checkpoint` selection policies, codecs, the checkpointer, stores, strategies
- :mod:`scar.models` the model interface, the registry and the models (mlr, mf, lda, quadratic)
- :mod:`scar.datasets` datasets, online and embedded (classification, ratings, corpora)
- :mod:`scar.measure` the engine seam, baselines, one recovery measurement, trials,
  perturbations and the study of the bound
- :mod:`scar.planner` the checkpoint planner: inputs, plan, simulation under failures, validation
- :mod:`scar.report` aggregation, tables and every figure
- :mod:`scar.stages` what the Snakemake workflow runs: config, one module per stage, the trial
  journal, job resources

``scar.core`` and ``scar.checkpoint`` import neither pandas, matplotlib nor torch.
"""

__version__ = "0.1.0"
