"""The checkpoint planner: its inputs and configuration (:mod:`~scar.planner.inputs`), the plan
(:mod:`~scar.planner.plan`), whole runs simulated under failures
(:mod:`~scar.planner.simulation`) and the check of a plan against them
(:mod:`~scar.planner.validation`)."""
