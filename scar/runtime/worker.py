"""Workers: Ray actors holding the data and the worker state (docs/design.md §11).

:class:`ReplicaWorker` is the reproduction mode: each iteration it pulls every server row from
the shards, runs the model's own iteration on the whole state with the iteration's random
stream (:func:`~scar.measure.engine.iteration_rng`) and pushes the new rows back, so a live run
is the in-process run, bit for bit, and a live failure compares exactly with a simulated one.

A step reports a shard that died instead of raising: ``("pull_failed", nodes)`` when a pull
failed (nothing changed: the iteration did not run) or ``("ok", nodes)`` with the nodes whose
push failed (the iteration completed on the survivors; the dead shards' rows come back from
their checkpoints).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray

from scar._atomic import atomic_write
from scar.measure.engine import copy_state, iteration_rng
from scar.models.base import Model, State

#: The Ray errors that mean "this actor's process is gone or restarting".
ACTOR_ERRORS: tuple[type[BaseException], ...] = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


def shard_replies(refs: Iterable[tuple[int, Any]]) -> tuple[dict[int, Any], list[int]]:
    """Wait for each ``(shard, call)`` pair: the replies of the shards that answered, and the
    shards whose actor was gone or restarting (a Ray actor error), in the order given."""
    replies, down = {}, []
    for j, ref in refs:
        try:
            replies[j] = ray.get(ref)
        except ACTOR_ERRORS:
            down.append(j)
    return replies, down


def gather_from(shards: Sequence[Any], shard_rows: Sequence[Mapping[str, np.ndarray]], shapes, dtypes):
    """Pull every shard's rows into whole arrays: ``(arrays, failed_nodes)``; ``arrays`` is None
    when some pull failed."""
    replies, _ = shard_replies(enumerate([s.pull.remote() for s in shards]))
    out = {n: np.empty(shapes[n], dtype=dtypes[n]) for n in shapes}
    failed = []
    for j in range(len(shards)):
        local = replies.get(j)
        if local is None:  # dead, or restarted and not restored yet
            failed.append(j)
            continue
        for n, idx in shard_rows[j].items():
            out[n][idx] = local[n]
    return (None if failed else out), tuple(failed)


def scatter_to(shards, shard_rows, arrays: Mapping[str, np.ndarray], method: str = "push") -> tuple[int, ...]:
    """Send every shard its rows of ``arrays``; the nodes whose call failed."""
    refs = [getattr(s, method).remote({n: np.ascontiguousarray(arrays[n][idx]) for n, idx in rows.items()})
            for s, rows in zip(shards, shard_rows)]  # fmt: skip
    return tuple(shard_replies(enumerate(refs))[1])


def save_worker_state(state: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write a worker state (the job checkpoint's part beside the shards' rows) atomically."""
    buf = io.BytesIO()
    np.savez(buf, **state)
    with atomic_write(Path(path)) as fh:
        fh.write(buf.getvalue())


def load_worker_state(path: str | Path) -> State:
    with np.load(path) as f:
        return {n: np.array(f[n]) for n in f.files}


class ReplicaWorker:
    """One worker running the model's whole iteration against the shards (reproduction mode)."""

    def __init__(self, model: Model, data: Any, seed: int, shards: Sequence[Any], shard_rows, shapes, dtypes) -> None:
        self.model, self.data, self.seed = model, data, int(seed)
        self.shards, self.shard_rows = list(shards), list(shard_rows)
        self.shapes, self.dtypes = dict(shapes), {n: np.dtype(d) for n, d in dtypes.items()}
        self.worker_state: State = {}

    def _state(self) -> tuple[State | None, tuple[int, ...]]:
        server, failed = gather_from(self.shards, self.shard_rows, self.shapes, self.dtypes)
        if server is None:
            return None, failed
        return {**server, **self.worker_state}, ()

    def load_worker_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.worker_state = copy_state(state)

    def get_worker_state(self) -> State:
        return copy_state(self.worker_state)

    def step(self, k: int) -> tuple[str, tuple[int, ...]]:
        state, failed = self._state()
        if state is None:
            return "pull_failed", failed
        self.model.step(state, self.data, iteration_rng(self.seed, int(k)))
        for n in self.worker_state:
            self.worker_state[n] = state[n]
        return "ok", scatter_to(self.shards, self.shard_rows, state)

    def objective(self) -> float:
        state, failed = self._state()
        if state is None:
            raise RuntimeError(f"objective: shards {failed} are down")
        return float(self.model.objective(state, self.data))

    def after_recovery(self, rows: Mapping[str, np.ndarray], rebuild: Mapping[str, np.ndarray] | None = None) -> None:
        """The model's ``rebuild`` of the lost rows ``rebuild`` (if given), then its
        ``after_recovery`` (unless ``rows`` is None), on the recovered state; the server rows
        they change are pushed back."""
        state, failed = self._state()
        if state is None:
            raise RuntimeError(f"recovery: shards {failed} are still down")
        if rebuild is not None:
            self.model.rebuild(state, self.data, rebuild)
        if rows is not None:
            self.model.after_recovery(state, self.data, rows)
        for n in self.worker_state:
            self.worker_state[n] = state[n]
        scatter_to(self.shards, self.shard_rows, state)

    # -- whole-job checkpoints (the traditional strategy) ---------------------------------

    def save_job(self, path: str) -> None:
        """Write the worker state to ``path`` (with a full save of the shards: one job checkpoint)."""
        save_worker_state(self.worker_state, path)

    def load_job(self, path: str) -> None:
        self.worker_state = load_worker_state(path)


def partition(data: Any, index: int, n_workers: int) -> Any:
    """Worker ``index``'s share of ``data``: a dataclass of per-example arrays (first axis: the
    examples), cut into ``n_workers`` contiguous parts of near-equal size."""
    fields = dataclasses.fields(data)
    n = int(getattr(data, fields[0].name).shape[0])
    lo, hi = n * index // n_workers, n * (index + 1) // n_workers
    return dataclasses.replace(data, **{f.name: getattr(data, f.name)[lo:hi] for f in fields})


class PartitionWorker:
    """Data-parallel mode (local SGD with model averaging, bulk-synchronous): worker ``index``
    of ``n_workers`` holds a partition of the data; each iteration it pulls the parameters, runs
    the model's iteration on its partition (its own stream ``(seed, k, index)``) and sends the
    shards its change divided by ``n_workers``: once every worker's change is in, the shards add
    them, so the new parameters are the mean of the workers' local models.

    The worker state (counters) travels with each step: the coordinator keeps it.
    """

    def __init__(
        self, model: Model, data: Any, seed: int, index: int, n_workers: int, shards, shard_rows, shapes, dtypes
    ) -> None:
        self.model, self.seed, self.index, self.n_workers = model, int(seed), int(index), int(n_workers)
        self.data = partition(data, self.index, self.n_workers)
        self.shards, self.shard_rows = list(shards), list(shard_rows)
        self.shapes, self.dtypes = dict(shapes), {n: np.dtype(d) for n, d in dtypes.items()}

    #: The iteration's bulk-synchronous phases; the shards then commit the held updates.
    phases: tuple[str, ...] = ("step",)
    commits = True

    def run_phase(self, k: int, phase: str, worker_state: Mapping[str, np.ndarray]) -> tuple[str, tuple[int, ...], State]:
        server, failed = gather_from(self.shards, self.shard_rows, self.shapes, self.dtypes)
        if server is None:
            return "pull_failed", failed, {}
        state = {**{n: a.copy() for n, a in server.items()}, **copy_state(worker_state)}
        self.model.step(state, self.data, np.random.default_rng([self.seed, int(k), self.index]))
        refs = []
        for s, rows in zip(self.shards, self.shard_rows):
            delta = {n: (state[n][idx] - server[n][idx]) / self.n_workers for n, idx in rows.items()}
            refs.append(s.accumulate.remote(int(k), self.index, delta))
        replies, _ = shard_replies(enumerate(refs))
        failed = tuple(j for j in range(len(refs)) if not replies.get(j, False))  # down, or refused the update
        return "ok", failed, {n: state[n] for n in worker_state}


def _range(n: int, index: int, n_workers: int) -> tuple[int, int]:
    return n * index // n_workers, n * (index + 1) // n_workers


class AlsWorker:
    """Data-parallel ALS (a model with ``solve_factor``, MF): worker ``index`` of ``n_workers``
    owns a contiguous range of the users and one of the items. An iteration has two
    bulk-synchronous phases: every worker solves its users' rows of ``U`` from ``V`` and writes
    them to the shards; then its items' rows of ``V`` from the new ``U``. Each row's solve is the
    sweep's own, so the run is the in-process run bit for bit. (Each worker holds all ratings
    here; it reads only those of its users and items.)

    A failure between the phases leaves ``U`` of iteration ``k`` and ``V`` of ``k - 1``: rerunning
    iteration ``k`` recomputes ``U`` from that ``V``, the same values.
    """

    phases: tuple[str, ...] = ("U", "V")
    commits = False

    def __init__(
        self, model: Model, data: Any, seed: int, index: int, n_workers: int, shards, shard_rows, shapes, dtypes
    ) -> None:
        self.model, self.data = model, data
        self.shards, self.shard_rows = list(shards), list(shard_rows)
        self.shapes, self.dtypes = dict(shapes), {n: np.dtype(d) for n, d in dtypes.items()}
        self.ranges = {n: _range(int(self.shapes[n][0]), int(index), int(n_workers)) for n in ("U", "V")}

    def run_phase(self, k: int, phase: str, worker_state: Mapping[str, np.ndarray]) -> tuple[str, tuple[int, ...], State]:
        server, failed = gather_from(self.shards, self.shard_rows, self.shapes, self.dtypes)
        if server is None:
            return "pull_failed", failed, {}
        lo, hi = self.ranges[phase]
        solved = self.model.solve_factor(phase, server, self.data, lo, hi)  # type: ignore[attr-defined]
        refs = []
        for j, (s, rows) in enumerate(zip(self.shards, self.shard_rows)):
            mine = (rows[phase] >= lo) & (rows[phase] < hi)
            if mine.any():
                values = np.ascontiguousarray(solved[rows[phase][mine] - lo])
                refs.append((j, s.write_rows.remote({phase: values}, {phase: np.flatnonzero(mine)})))
        return "ok", tuple(shard_replies(refs)[1]), dict(worker_state)


def data_parallel_worker(model: Model) -> type:
    """The data-parallel program of ``model``: ALS's row solves where the model has them
    (``solve_factor``), else local SGD with model averaging."""
    return AlsWorker if hasattr(model, "solve_factor") else PartitionWorker
