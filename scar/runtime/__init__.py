"""A live parameter server on Ray: shard processes that really die, and SCAR's recoveries of
them (docs/design.md §11).

- :mod:`scar.runtime.placement`: which rows of the server arrays each shard holds;
- :mod:`scar.runtime.shard`: a server shard (a Ray actor): its rows and its own checkpoint store;
- :mod:`scar.runtime.worker`: the workers (Ray actors): data, worker state, the iterations;
- :mod:`scar.runtime.engine`: :class:`~scar.runtime.engine.LiveEngine`, the coordinator, which
  implements the measurement's engine seam over the actors, checkpoints and recovers;
- :mod:`scar.runtime.faults`: SIGKILL of a shard's process, and the punisher;
- :mod:`scar.runtime.live`: one live failure measured beside the simulated trial of the same failure;
- :mod:`scar.runtime.soak`: a run to the target while the punisher kills random shards.

Its modules import ``ray``; outside benchmarks and tests only :mod:`scar.stages.runtime` imports
them, inside the stage's function.
"""
