"""The core of SCAR, free of any framework: parameter blocks and their placement on server
nodes (:mod:`~scar.core.blocks`), the failure model (:mod:`~scar.core.failures`), recovery
policies (:mod:`~scar.core.recovery`) and the rework bound (:mod:`~scar.core.bounds`)."""
