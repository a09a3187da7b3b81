"""One live failure, measured beside the simulated trial of the same failure (docs/design.md §11).

:func:`live_trial` runs the baseline's iterations on a :class:`~scar.runtime.engine.LiveEngine`
from ``x_0`` under a strategy's checkpoints (saves of iterations ``< T``), SIGKILLs the shards
of trial ``spec``'s failed nodes right after iteration ``T``, recovers, checks the recovered
state and measures the rework with :func:`~scar.measure.rework.measure_rework`, the function the
simulated trial (:func:`~scar.measure.trials.run_trial`, run here on the same failure) uses.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from scar.checkpoint.strategy import Strategy
from scar.measure.rework import measure_rework
from scar.measure.trajectory import Baseline
from scar.measure.trials import TrialSettings, TrialSpec, run_trial, trial_failure
from scar.models.base import Model
from scar.runtime.engine import LiveEngine
from scar.runtime.faults import process_gone

#: Columns of ``live_vs_simulated.csv``, in order.
LIVE_COLUMNS: tuple[str, ...] = (
    "model", "dataset", "strategy", "recovery_policy", "trial", "failure_iteration", "failed_nodes",
    "n_nodes", "k_base", "live_rework", "simulated_rework", "live_rework_fractional",
    "simulated_rework_fractional", "rework_difference", "detect_s", "restart_s", "restore_s",
    "recovery_s", "restored_to", "iteration_s", "iterations_per_s", "checkpoint_s_per_save",
    "reproduced_baseline", "process_gone", "restored_exact", "survivors_kept",
)  # fmt: skip


def live_trial(
    engine: LiveEngine,
    model: Model,
    data: Any,
    baseline: Baseline,
    spec: TrialSpec,
    settings: TrialSettings,
    strategy: Strategy,
    *,
    dataset: str = "",
    run: str = "run",
    simulate: bool = True,
) -> dict[str, Any]:
    """One row of :data:`LIVE_COLUMNS`: the live and simulated rework of ``strategy`` on trial ``spec``.

    ``baseline`` is the run the engine reproduces without failure: the in-process baseline in
    reproduction mode; in data-parallel mode one recorded on the engine itself
    (:func:`~scar.measure.trajectory.run_baseline` with ``engine=``), and ``simulate=False``
    (the simulation runs the model's own iteration, not the data-parallel one: its columns are NaN).
    """
    failure, layout, lost_mask = trial_failure(baseline, spec, settings)
    T, nodes = failure.iteration, failure.failed_nodes
    engine.load(baseline.state_at(0), 0)
    engine.begin(strategy, settings.policy(strategy, model, data), run)
    assert engine.checkpointer is not None
    engine.save_seconds, saves_before = 0.0, engine.checkpointer.n_saves
    t = time.perf_counter()
    while engine.iteration < T - 1:
        engine.step()
    engine.checkpointing = False  # the failure strikes after iteration T, before its save
    engine.step()
    elapsed = time.perf_counter() - t
    n_saves = engine.checkpointer.n_saves - saves_before
    iteration_s = (elapsed - engine.save_seconds) / T
    reproduced = engine.same_state_as(baseline.state_at(T))
    before = engine.server_state()
    image = {n: engine.checkpointer.image.values[n].copy() for n in layout.names}  # type: ignore[union-attr]
    lost = layout.row_masks(lost_mask)

    pids = [engine.pids[j] for j in nodes]
    t_kill = time.perf_counter()
    engine.kill_nodes(nodes)
    gone = all(process_gone(p) for p in pids)
    rec = engine.recover(since=t_kill)
    if tuple(rec.nodes) != tuple(nodes):
        raise RuntimeError(f"killed shards {list(nodes)} but detected {list(rec.nodes)} as down")
    after = engine.server_state()
    if strategy.whole_job:
        restored_exact = all(np.array_equal(after[n], image[n]) for n in layout.names)
        survivors_kept = True  # every shard rolled back: no survivor keeps its values
    else:
        restored_exact = all(np.array_equal(after[n][lost[n]], image[n][lost[n]]) for n in layout.names)
        survivors_kept = all(np.array_equal(after[n][~lost[n]], before[n][~lost[n]]) for n in layout.names)
    live = measure_rework(engine, baseline, settings.limits(baseline), failed_at=T)

    if simulate:
        (sim,) = run_trial(model, data, baseline, spec, replace(settings, strategies=(strategy,)), dataset=dataset)
    else:
        sim = {"rework": np.nan, "rework_fractional": np.nan}
    return {
        "model": model.name,
        "dataset": dataset,
        "strategy": strategy.name,
        "recovery_policy": strategy.recovery,
        "trial": spec.trial,
        "failure_iteration": T,
        "failed_nodes": ";".join(map(str, nodes)),
        "n_nodes": settings.n_nodes,
        "k_base": baseline.k_base,
        "live_rework": live.rework,
        "simulated_rework": sim["rework"],
        "live_rework_fractional": live.rework_fractional,
        "simulated_rework_fractional": sim["rework_fractional"],
        "rework_difference": live.rework - sim["rework"],
        "detect_s": rec.detect_s,
        "restart_s": rec.restart_s,
        "restore_s": rec.restore_s,
        "recovery_s": rec.total_s,
        "restored_to": rec.restored_to,
        "iteration_s": iteration_s,
        "iterations_per_s": 1.0 / iteration_s if iteration_s > 0 else np.nan,
        "checkpoint_s_per_save": engine.save_seconds / n_saves if n_saves else np.nan,
        "reproduced_baseline": bool(reproduced),
        "process_gone": bool(gone),
        "restored_exact": bool(restored_exact),
        "survivors_kept": bool(survivors_kept),
    }
