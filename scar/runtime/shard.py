"""A parameter-server shard: a Ray actor holding its rows and checkpointing them (docs/design.md §11).

Each shard holds its rows of every server-held array (the models here keep no per-row
optimizer state beyond those arrays: SGD without momentum, ALS) and writes its own rows to its
own :class:`~scar.checkpoint.stores.DirectoryStore` (one writer per directory). The directory
of the current run is named in a file under the shard's ``home``, so a shard that Ray restarts
after its process died (the constructor runs again with the same arguments) finds its
checkpoint again; until it is restored its rows are lost (NaN, or the most negative integer,
as the simulation's poison), and the coordinator refuses to pull them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from scar._atomic import atomic_write
from scar.checkpoint.stores import DirectoryStore

_CURRENT = "current-run"


def _poisoned(shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    return np.full(shape, np.nan if dtype.kind in "fc" else np.iinfo(dtype).min, dtype=dtype)


class ServerShard:
    """Server node ``node``: the rows of each array named in ``schema`` (name -> (rows, width, dtype))."""

    def __init__(self, node: int, home: str, schema: Mapping[str, tuple[int, int, str]]) -> None:
        self.node = int(node)
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.schema = {n: (int(r), int(w), np.dtype(d)) for n, (r, w, d) in schema.items()}
        self.values = {n: _poisoned((r, w), d) for n, (r, w, d) in self.schema.items()}
        self.lost = True  # nothing loaded yet (or the process died and restarted)
        self._pending: dict[int, dict[int, dict[str, np.ndarray]]] = {}
        self.store: DirectoryStore | None = None
        current = self.home / _CURRENT
        if current.exists():
            self.store = DirectoryStore(self.home / current.read_text().strip())

    # -- liveness ----------------------------------------------------------------------

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> tuple[int, bool]:
        """This process's pid, and whether its rows are lost (restarted, not restored yet)."""
        return os.getpid(), self.lost

    # -- the run -----------------------------------------------------------------------

    def begin(self, run: str) -> None:
        """Checkpoint the coming run to ``home/run`` (a fresh directory)."""
        with atomic_write(self.home / _CURRENT, "w") as fh:
            fh.write(run)
        self.store = DirectoryStore(self.home / run)

    def load(self, values: Mapping[str, np.ndarray]) -> None:
        for n, a in values.items():
            np.copyto(self.values[n], a)
        self.lost = False

    def node_id(self) -> str:
        """The Ray node this shard runs on (where its process must be killed)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def pull(self) -> dict[str, np.ndarray] | None:
        """The rows, or None while they are lost (a restarted shard not restored yet)."""
        return None if self.lost else self.values

    def push(self, values: Mapping[str, np.ndarray]) -> None:
        self.load(values)

    def write_rows(self, values: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray]) -> None:
        """Set local rows ``rows[name]`` (indices) to ``values[name]`` (their new values)."""
        for n, idx in rows.items():
            self.values[n][idx] = values[n]

    def accumulate(self, k: int, worker: int, deltas: Mapping[str, np.ndarray]) -> bool:
        """Hold worker ``worker``'s update of iteration ``k`` (data-parallel mode) until
        :meth:`commit`; False while the rows are lost."""
        if self.lost:
            return False
        self._pending.setdefault(int(k), {})[int(worker)] = dict(deltas)
        return True

    def commit(self, k: int) -> None:
        """Add the held updates of iteration ``k`` to the rows, in worker order (so the sum's
        rounding does not depend on which worker's push arrived first)."""
        updates = self._pending.pop(int(k), {})
        for w in sorted(updates):
            for n, d in updates[w].items():
                self.values[n] += d
        self._pending.clear()  # updates of an iteration that never committed are void

    def discard(self) -> None:
        """Drop held updates (their iteration did not complete on every worker)."""
        self._pending.clear()

    # -- checkpoints -------------------------------------------------------------------

    def save(self, iteration: int, rows: Mapping[str, np.ndarray] | None) -> int:
        """Write local ``rows`` (None: all of them) of iteration ``iteration`` to this shard's store."""
        if self.store is None:
            raise RuntimeError(f"shard {self.node}: begin(run) before saving")
        if rows is not None:
            rows = {n: r for n, r in rows.items() if r.size}
            if not rows:
                return 0
        return self.store.write(iteration, self.values, rows)

    def restore(self) -> dict[str, np.ndarray]:
        """Reload every row from this shard's checkpoint; returns the per-row save iterations."""
        if self.store is None:
            raise RuntimeError(f"shard {self.node}: no checkpoint directory to restore from")
        ck = self.store.read()
        for n, a in ck.values.items():
            np.copyto(self.values[n], a)
        self.lost = False
        return ck.saved_at
