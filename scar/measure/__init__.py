"""The measurement of rework: the engine seam through which a model is driven
(:mod:`~scar.measure.engine`), baselines (:mod:`~scar.measure.trajectory`), one recovery
measurement (:mod:`~scar.measure.rework`), failure trials (:mod:`~scar.measure.trials`),
perturbations and the study of the bound (:mod:`~scar.measure.perturbations`,
:mod:`~scar.measure.study`)."""
