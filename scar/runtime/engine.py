"""The coordinator: the measurement's engine seam over live Ray actors (docs/design.md §11).

:class:`LiveEngine` implements :class:`~scar.measure.engine.Engine`, so the code that measures a
simulated recovery (:func:`~scar.measure.rework.measure_rework`) measures a live one with the
same arithmetic. Its state lives in :class:`~scar.runtime.shard.ServerShard` actors (one per
server node) and a worker actor; it checkpoints through a :class:`ShardedStore` (each save's
rows go to the shards holding them, each shard writing its own directory), detects dead shards
(the actor errors Ray raises, or a new pid), waits for Ray's restart of them and recovers:

- ``partial`` / ``rebuild``: only the restarted shards reload their rows from their own
  checkpoints; every other shard and the worker keep their values; then the model's resync;
- ``full`` (traditional): every shard reloads its last full save and the worker its state of
  that save; the iterations since are replayed.

The priority budget is one global selection: the coordinator runs the strategy's policy over
the whole layout (as the simulation does) and sends each shard its selected rows, so the live
and simulated checkpoints hold the same rows. A per-shard split of the budget would select
other rows whenever the top blocks are not spread evenly over the nodes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray

from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.policies import CheckpointPolicy
from scar.checkpoint.stores import InMemoryStore
from scar.checkpoint.strategy import Strategy
from scar.core.blocks import BlockLayout
from scar.measure.engine import Engine, copy_state
from scar.models.base import Model, State
from scar.runtime.faults import sigkill_on_node
from scar.runtime.placement import ShardMap
from scar.runtime.shard import ServerShard
from scar.runtime.worker import (
    ACTOR_ERRORS,
    ReplicaWorker,
    data_parallel_worker,
    load_worker_state,
    save_worker_state,
    shard_replies,
)


class ShardsDown(RuntimeError):
    """Shards ``nodes`` died; ``completed``: whether the iteration that met it had completed on
    the survivors (a push failed) or had not run (a pull failed)."""

    def __init__(self, nodes: tuple[int, ...], completed: bool) -> None:
        super().__init__(f"server shards {list(nodes)} are down")
        self.nodes, self.completed = nodes, completed


class ShardedStore(InMemoryStore):
    """Each save's rows are written by the shards that hold them, to their own directories; the
    coordinator keeps the image in memory for the priority rule (the image the simulation's
    replay holds). ``on_full(iteration)`` runs after every full save (the traditional
    strategy's job checkpoint: the worker state)."""

    def __init__(self, shards: list[Any], shard_map: ShardMap, on_full: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.shards, self.map, self.on_full = shards, shard_map, on_full

    def write(self, iteration, arrays, rows=None, *, meta=None):
        local = [None if rows is None else self.map.local_rows(j, rows) for j in range(self.map.n_nodes)]
        ray.get([s.save.remote(int(iteration), r) for s, r in zip(self.shards, local)])
        if rows is None and self.on_full is not None:
            self.on_full(int(iteration))
        return super().write(iteration, arrays, rows, meta=meta)

    def write_encoded(self, *args, **kwargs):
        raise ValueError("the live runtime's shards write raw rows only (codec 'raw')")


@dataclass(frozen=True)
class Recovery:
    """One recovery's wall times (seconds) from the kill: to detection of the dead shards, to
    their restart by Ray, to the end of the restore (rows reloaded and resynchronised)."""

    nodes: tuple[int, ...]
    policy: str
    detect_s: float
    restart_s: float
    restore_s: float
    restored_to: int

    @property
    def total_s(self) -> float:
        return self.detect_s + self.restart_s + self.restore_s


MODES: tuple[str, ...] = ("reproduction", "data_parallel")


class LiveEngine(Engine):
    """A live parameter server: ``n_nodes`` shard actors and its workers.

    ``mode`` ``"reproduction"``: one :class:`~scar.runtime.worker.ReplicaWorker` (the live run
    is the in-process run, bit for bit); ``"data_parallel"``: ``n_workers`` workers of the
    model's data-parallel program (:func:`~scar.runtime.worker.data_parallel_worker`: ALS's
    row solves by ranges, or local SGD on partitions of the data), the objective evaluated here
    on the whole data, the worker state (counters) kept here.
    ``example_state`` gives the arrays' names, shapes and dtypes (e.g. the state at iteration 0);
    ``home`` is a directory for the shards' checkpoints. Call :meth:`close` when done.
    """

    def __init__(
        self,
        model: Model,
        data: Any,
        seed: int,
        example_state: Mapping[str, np.ndarray],
        *,
        n_nodes: int,
        home: str | Path,
        placement: str = "round_robin",
        placement_seed: int = 0,
        worker_cpus: float = 1,
        mode: str = "reproduction",
        n_workers: int = 1,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown runtime mode {mode!r}; expected one of {MODES}")
        if mode == "reproduction" and n_workers != 1:
            raise ValueError(f"reproduction mode runs one worker, got n_workers={n_workers}")
        self.model, self.data, self.seed, self.iteration = model, data, int(seed), 0
        self.mode = mode
        self.home = Path(home)
        server = {n: np.asarray(example_state[n]) for n in model.server_params}
        self.layout = BlockLayout.from_arrays(server)
        self.map = ShardMap.build(self.layout, n_nodes, placement, placement_seed)
        self.shapes = {n: a.shape for n, a in server.items()}
        self.dtypes = {n: a.dtype.str for n, a in server.items()}
        # SPREAD: on a cluster the shards go to different machines (as server nodes do).
        shard_cls = ray.remote(ServerShard).options(max_restarts=-1, max_task_retries=0, num_cpus=0, scheduling_strategy="SPREAD")
        self.shards = [
            shard_cls.remote(j, str(self.home / f"shard-{j}"), {n: (r.size, server[n].shape[1], self.dtypes[n]) for n, r in rows.items()})
            for j, rows in enumerate(self.map.rows)
        ]  # fmt: skip
        if mode == "reproduction":
            self.workers = [
                ray.remote(ReplicaWorker)
                .options(num_cpus=worker_cpus)
                .remote(model, data, seed, self.shards, self.map.rows, self.shapes, self.dtypes)
            ]
        else:
            self.program = data_parallel_worker(model)
            self.workers = [
                ray.remote(self.program)
                .options(num_cpus=worker_cpus)
                .remote(model, data, seed, i, n_workers, self.shards, self.map.rows, self.shapes, self.dtypes)
                for i in range(n_workers)
            ]
        self.worker = self.workers[0]
        self.worker_state: State = {}  # data-parallel mode: the counters, kept here
        self.pids = ray.get([s.pid.remote() for s in self.shards])
        self.node_ids = ray.get([s.node_id.remote() for s in self.shards])
        self.checkpointer: Checkpointer | None = None
        self.checkpointing = False
        self.strategy: Strategy | None = None
        #: Held while a checkpoint is written or a recovery runs (the punisher waits for it).
        self.save_lock = threading.Lock()
        self._job_path: Path | None = None
        self.save_seconds = 0.0

    # -- the engine seam ---------------------------------------------------------------

    @property
    def data_parallel(self) -> bool:
        return self.mode == "data_parallel"

    def load(self, state, iteration):
        ray.get([s.load.remote(v) for s, v in zip(self.shards, self.map.split(state))])
        self._load_worker_state({n: a for n, a in state.items() if n not in self.shapes})
        self.iteration = int(iteration)

    def _load_worker_state(self, worker_state: State) -> None:
        if self.data_parallel:
            self.worker_state = copy_state(worker_state)
        else:
            ray.get(self.worker.load_worker_state.remote(worker_state))

    def _get_worker_state(self) -> State:
        return copy_state(self.worker_state) if self.data_parallel else ray.get(self.worker.get_worker_state.remote())

    def _run_iteration(self, k: int) -> None:
        """Iteration ``k`` on the workers; raises :class:`ShardsDown` when a shard died."""
        if not self.data_parallel:
            status, failed = ray.get(self.worker.step.remote(k))
            if status == "pull_failed":
                raise ShardsDown(failed, completed=False)
            self.iteration = k
            if failed:
                raise ShardsDown(failed, completed=True)
            return
        failed: set[int] = set()
        for phase in self.program.phases:  # bulk-synchronous: every worker, then the next phase
            out = ray.get([w.run_phase.remote(k, phase, self.worker_state) for w in self.workers])
            if any(status == "pull_failed" for status, _, _ in out):
                # Some worker did not run: the iteration is void everywhere.
                for s in self.shards:
                    s.discard.remote()
                raise ShardsDown(tuple(sorted({j for _, f, _ in out for j in f})), completed=False)
            failed |= {j for _, f, _ in out for j in f}
        self.worker_state = copy_state(out[0][2])
        if self.program.commits:
            refs = [(j, s.commit.remote(k)) for j, s in enumerate(self.shards) if j not in failed]
            failed.update(shard_replies(refs)[1])
        self.iteration = k
        if failed:
            raise ShardsDown(tuple(sorted(failed)), completed=True)

    def step(self):
        k = self.iteration + 1
        self._run_iteration(k)
        if self.checkpointing and self.checkpointer is not None:
            t = time.perf_counter()
            with self.save_lock:
                self.checkpointer.after_iteration(k, self.server_state())
            self.save_seconds += time.perf_counter() - t
        return k

    def objective(self):
        if self.data_parallel:  # an evaluation on the whole data, here
            return float(self.model.objective({**self.server_state(), **self.worker_state}, self.data))
        return ray.get(self.worker.objective.remote())

    def server_state(self):
        out = {n: np.empty(s, dtype=self.dtypes[n]) for n, s in self.shapes.items()}
        for rows, local in zip(self.map.rows, ray.get([s.pull.remote() for s in self.shards])):
            if local is None:
                raise ShardsDown(self.down_nodes(), completed=False)
            for n, idx in rows.items():
                out[n][idx] = local[n]
        return out

    def state(self):
        return {**self.server_state(), **self._get_worker_state()}

    def write_server_rows(self, values, rows):
        idx = {n: np.flatnonzero(m) for n, m in rows.items()}
        refs = []
        for j, s in enumerate(self.shards):
            local = self.map.local_rows(j, idx)
            mine = {n: np.ascontiguousarray(values[n][self.map.rows[j][n][r]]) for n, r in local.items() if r.size}
            if mine:
                refs.append(s.write_rows.remote(mine, {n: local[n] for n in mine}))
        ray.get(refs)

    def kill(self, lost_rows):
        """SIGKILL the shards holding ``lost_rows`` (which must be whole nodes' rows)."""
        nodes = self.map.nodes_of_rows(lost_rows)
        whole = self.map.row_masks_of(nodes)
        if any(not np.array_equal(np.asarray(lost_rows[n], dtype=bool), whole[n]) for n in whole):
            raise ValueError("a live shard dies whole: lost_rows must be exactly the rows of some nodes")
        self.kill_nodes(nodes)

    def _resync_and_rebuild(self, rows, rebuild) -> None:
        if rebuild is None and type(self.model).after_recovery is Model.after_recovery:
            return  # nothing to do: no round trip through the workers
        if self.data_parallel:
            raise NotImplementedError("data-parallel mode runs models without after_recovery or rebuild only")
        ray.get(self.worker.after_recovery.remote(rows, rebuild))

    def resync(self, rows):
        self._resync_and_rebuild(rows, None)

    def rebuild(self, lost_rows):
        if self.data_parallel:
            raise NotImplementedError("data-parallel mode runs models without after_recovery or rebuild only")
        ray.get(self.worker.after_recovery.remote(None, lost_rows))

    # -- checkpoints -------------------------------------------------------------------

    def begin(self, strategy: Strategy, policy: CheckpointPolicy, run: str) -> None:
        """Checkpoint from the current state on (a full save now) under ``strategy``, to fresh
        directories named ``run``; steps save from here on while :attr:`checkpointing` is true."""
        ray.get([s.begin.remote(run) for s in self.shards])
        self.strategy = strategy
        self._job_path = self.home / "jobs" / f"{run}.npz" if strategy.whole_job else None
        on_full = self._save_job if strategy.whole_job else None
        self.checkpointer = Checkpointer(policy, ShardedStore(self.shards, self.map, on_full))
        with self.save_lock:
            self.checkpointer.start(self.server_state())
        self.checkpointing = True

    def _save_job(self, iteration: int) -> None:
        assert self._job_path is not None
        if self.data_parallel:
            save_worker_state(self.worker_state, self._job_path)
        else:
            ray.get(self.worker.save_job.remote(str(self._job_path)))

    def _load_job(self) -> None:
        assert self._job_path is not None
        if self.data_parallel:
            self.worker_state = load_worker_state(self._job_path)
        else:
            ray.get(self.worker.load_job.remote(str(self._job_path)))

    # -- failures ----------------------------------------------------------------------

    def kill_nodes(self, nodes: tuple[int, ...]) -> None:
        """SIGKILL the processes of the shards of ``nodes`` (each checked gone)."""
        for j in nodes:
            sigkill_on_node(self.pids[j], self.node_ids[j])

    def kill_nodes_of(self, node: int) -> None:
        """SIGKILL the shard of ``node`` (the punisher's kill)."""
        self.kill_nodes((int(node),))

    def down_nodes(self) -> tuple[int, ...]:
        """Shards whose process died (an actor error, or a new pid: Ray restarted it)."""
        replies, _ = shard_replies(enumerate([s.ping.remote() for s in self.shards]))
        return tuple(j for j in range(len(self.shards)) if j not in replies or replies[j][1] or replies[j][0] != self.pids[j])

    def _wait_restarted(self, nodes: tuple[int, ...], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for j in nodes:
            while True:
                try:
                    self.pids[j] = ray.get(self.shards[j].pid.remote())
                    break
                except ACTOR_ERRORS:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"shard {j} was not restarted within {timeout} s") from None
                    time.sleep(0.01)

    def recover(self, since: float | None = None) -> Recovery:
        with self.save_lock:  # no injected failure strikes mid-recovery
            return self._recover(since)

    def _recover(self, since: float | None) -> Recovery:
        """Detect the dead shards, wait for Ray's restart of them and recover by the strategy's
        recovery policy. ``since``: when the failure struck (``time.perf_counter()``), for the
        detection time."""
        if self.checkpointer is None or self.strategy is None:
            raise RuntimeError("recover() needs a checkpointed run: begin(strategy, policy, run) first")
        t0 = time.perf_counter() if since is None else since
        nodes = self.down_nodes()
        if not nodes:
            raise RuntimeError("recover(): no shard is down")
        t1 = time.perf_counter()
        self._wait_restarted(nodes)
        t2 = time.perf_counter()
        policy = self.strategy.recovery
        if policy == "full":
            ray.get([s.restore.remote() for s in self.shards])
            self._load_job()
            self.checkpointer.restart()
            assert self.checkpointer.last_save is not None
            self.iteration = self.checkpointer.last_save
        else:
            ray.get([self.shards[j].restore.remote() for j in nodes])
            # As Engine.restore: the model's rebuild (if the policy says), then its resync; a
            # model without either needs no round trip through the worker.
            rows = self.map.row_masks_of(nodes)
            self._resync_and_rebuild(rows, rows if policy == "rebuild" else None)
        t3 = time.perf_counter()
        return Recovery(nodes, policy, t1 - t0, t2 - t1, t3 - t2, self.iteration)

    def close(self) -> None:
        for a in [*self.workers, *self.shards]:
            ray.kill(a, no_restart=True)


def shard_pids(engine: LiveEngine) -> list[int]:
    """The current pid of every shard (asked of the shards themselves)."""
    return ray.get([s.pid.remote() for s in engine.shards])


def image_rows(image_values: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray]) -> State:
    """The rows ``rows`` (masks) of a checkpoint image, for comparisons."""
    return {n: image_values[n][np.asarray(m, dtype=bool)] for n, m in rows.items()}
