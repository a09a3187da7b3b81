"""Whole training runs under random failures: the check of the planner's predictions.

A run trains the model from ``x_0`` with a checkpoint policy and, after every iteration, may
fail: failures arrive as a seeded Poisson process with a mean of ``mtbf`` iterations between
them (a geometric number of iterations, each with probability ``1 - exp(-1 / mtbf)``). A
failure loses a random ``fraction`` of the server nodes. A partial strategy restores the lost
rows from the checkpoint its policy holds (its saves before that iteration), the model resyncs,
and training goes on with iteration ``k + 1``'s random stream; traditional recovery restarts
the whole job from its last full save ``s`` (server rows, workers' state, counters) and replays
``s + 1, s + 2, ...``. A run ends when the objective reaches the baseline's target. Its cost is

    iterations executed x time per iteration + bytes written x write cost + bytes restored x read cost

(the full save at iteration 0, the same for every strategy, is not counted).

The run is executed by a :class:`~scar.measure.baseline_engine.BaselineEngine` by default: the
iterations before the first failure, and a whole-job rollback's exact replay, are read off the
baseline instead of computed (the same numbers, without the model steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.strategy import Strategy
from scar.core.blocks import BlockLayout, assign_blocks, params_distance
from scar.core.failures import sample_failed_nodes
from scar.measure.baseline_engine import BaselineEngine
from scar.measure.engine import Engine, InProcessEngine, iteration_rng
from scar.measure.trajectory import Baseline
from scar.measure.trials import TrialSettings, model_policy, stable_seed
from scar.models.base import Model
from scar.planner.inputs import PlanInputs


@dataclass(frozen=True)
class SimulatedRun:
    iterations: int
    censored: bool
    n_failures: int
    checkpoint_bytes: int
    restore_bytes: float
    cost: float
    #: Iterations of the failures and the norms of the perturbations their recoveries caused.
    failure_iterations: tuple[int, ...] = ()
    perturbation_norms: tuple[float, ...] = ()


def simulate_run(
    model: Model,
    data: Any,
    baseline: Baseline,
    strategy: Strategy,
    interval: int,
    inputs: PlanInputs,
    settings: TrialSettings,
    *,
    replicate: int = 0,
    engine: Engine | None = None,
) -> SimulatedRun:
    """One training run to the baseline's target under failures (see the module's docstring)."""
    engine = engine if engine is not None else BaselineEngine(InProcessEngine(model, data, baseline.seed), baseline)
    engine.load(baseline.state_at(0), 0)
    names = baseline.server_params
    ckpt = Checkpointer(model_policy(strategy, interval, model, data, seed=settings.policy_seed))
    ckpt.start(engine.server_state())
    initial_bytes = ckpt.bytes_written
    layout = BlockLayout.from_arrays(engine.server_state())
    node_of_block = assign_blocks(layout.n_blocks, settings.n_nodes, settings.placement, settings.seed)  # type: ignore[arg-type]
    rng = np.random.default_rng(stable_seed(settings.seed, "simulated-failures", replicate))
    p = -math.expm1(-1.0 / inputs.mtbf_iterations)
    next_failure = int(rng.geometric(p))
    cap = settings.cap(baseline.k_base)
    # A whole-job strategy restarts from its last full save: keep the job's state there (server
    # rows, workers' state, counters), as its full checkpoint holds it.
    job, job_at = (engine.state(), 0) if strategy.whole_job else (None, 0)
    worker_bytes = baseline.worker_state_bytes if strategy.whole_job else 0
    executed, n_failures, restored_bytes, job_bytes = 0, 0, 0.0, 0
    failed_at: list[int] = []
    norms: list[float] = []
    loss = engine.objective()
    while loss > baseline.target and executed < cap:
        k = engine.step()
        executed += 1
        if executed == next_failure:
            nodes = np.array(sample_failed_nodes(settings.n_nodes, inputs.failure_fraction, rng))
            lost_rows = layout.row_masks(np.isin(node_of_block, nodes))
            assert ckpt.image is not None
            current = {n: np.array(a, copy=True) for n, a in engine.server_state().items()}
            failed_at.append(k)
            n_failures += 1
            next_failure = executed + int(rng.geometric(p))
            if job is not None:
                engine.rollback(job, job_at)
                ckpt.restart()
                norms.append(params_distance(engine.server_state(), current, names))
                restored_bytes += float(sum(a.nbytes for a in current.values()) + worker_bytes)
                loss = engine.objective()
                continue  # back at the last save: nothing new to save
            engine.kill(lost_rows)
            rows = engine.restore(strategy.recovery, ckpt.image.values, lost_rows)
            norms.append(params_distance(engine.server_state(), current, names))
            restored_bytes += sum(float(current[n][rows[n]].nbytes) for n in names)
        # The frequency policy counts the rows iteration k accessed (the model's draws of (seed, k)).
        touched = model.touched_rows(data, iteration_rng(baseline.seed, k)) if ckpt.accesses is not None else None
        if ckpt.after_iteration(k, engine.server_state(), touched) and job is not None:
            job, job_at = engine.state(), k
            job_bytes += worker_bytes
        loss = engine.objective()
    written = ckpt.bytes_written - initial_bytes + job_bytes
    cost = (
        executed * inputs.seconds_per_iteration
        + written * inputs.write_seconds_per_byte
        + restored_bytes * inputs.restore_per_byte
    )
    return SimulatedRun(
        executed, bool(loss > baseline.target), n_failures, int(written), restored_bytes, cost, tuple(failed_at), tuple(norms)
    )
