"""A soak run: train to the target while the punisher kills random shards (docs/design.md §11).

:func:`soak` runs a :class:`~scar.runtime.engine.LiveEngine` under a strategy's checkpoints with
a :class:`~scar.runtime.faults.Punisher` killing a random shard every ``Exp(mtbf)`` seconds, and
recovers from every failure it meets (a dead shard on a pull, a push, a checkpoint read or an
objective), until the objective reaches ``target`` or ``max_iters`` iterations ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import ray

from scar.checkpoint.strategy import Strategy
from scar.measure.trials import model_policy
from scar.runtime.engine import LiveEngine, Recovery, ShardsDown
from scar.runtime.faults import Punisher


@dataclass(frozen=True)
class SoakResult:
    """``iterations_run`` counts every executed iteration, replays included; ``reached`` the
    iteration at which the objective first met the target (None: not within ``max_iters``)."""

    reached: int | None
    iterations_run: int
    wall_s: float
    kills: int
    recoveries: tuple[Recovery, ...]
    final_objective: float


def soak(
    engine: LiveEngine,
    state: dict[str, np.ndarray],
    strategy: Strategy,
    *,
    interval: int,
    target: float,
    max_iters: int,
    mtbf: float,
    seed: int = 0,
    run: str = "soak",
) -> SoakResult:
    """Train from ``state`` (iteration 0) to ``target`` under the punisher (``mtbf`` seconds)."""
    engine.load(state, 0)
    engine.begin(strategy, model_policy(strategy, interval, engine.model, engine.data), run)
    recoveries: list[Recovery] = []
    executed = 0
    t0 = time.perf_counter()
    punisher = Punisher(engine.kill_nodes_of, engine.map.n_nodes, mtbf, engine.save_lock, seed=seed)
    loss = np.inf
    with punisher:
        while engine.iteration < max_iters:
            try:
                engine.step()
                executed += 1
                loss = engine.objective()
            except (ShardsDown, ray.exceptions.RayTaskError) as err:
                if isinstance(err, ShardsDown) and err.completed:
                    executed += 1
                recoveries.append(engine.recover())
                continue
            if loss <= target:
                break
    reached = engine.iteration if loss <= target else None
    return SoakResult(reached, executed, time.perf_counter() - t0, len(punisher.kills), tuple(recoveries), float(loss))
