"""Saves that do not stall training: snapshot on the training thread, persist on another
(docs/design.md §12.3).

:class:`BackgroundStore` wraps a :class:`~scar.checkpoint.stores.CheckpointStore` (a
:class:`~scar.checkpoint.stores.DirectoryStore`, typically). A write validates its rows against
the schema and copies them into buffers it owns (the *snapshot*, at memory speed, on the calling
thread), then hands them to the wrapped store on one background thread (the *persist*: encoding
of the record, checksum, file write, fsync, rename), as PyTorch DCP's ``async_save`` and
CheckFreq's snapshot/persist split do. Only one persist is in flight: the next write first waits
for the previous one, so the snapshot buffers are reused and records land in order. An error of
the background write is raised, as :class:`PersistError`, by the next call (write, read, wait,
poll); the wrapped store's records are atomic, so the previous checkpoint stays readable.

The class uses no torch: any caller of a store may use it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from scar.checkpoint.codecs import Codec, EncodedRows, RawCodec
from scar.checkpoint.stores import Checkpoint, CheckpointError, CheckpointStore, RecordInfo
from scar.core._rows import gather_rows, reused_buffer

__all__ = ["BackgroundStore", "PersistError"]

_RAW = RawCodec()


class PersistError(CheckpointError):
    """A background persist failed; the message names its iteration. The wrapped store holds
    every record before it."""


class BackgroundStore(CheckpointStore):
    """A store whose writes return after the snapshot; the wrapped ``inner`` store persists them
    on a background thread.

    Attributes
    ----------
    persists : list of (iteration, payload bytes, seconds) of every finished background write.
    snapshot_seconds : list of the seconds each write's snapshot took on the calling thread.
    """

    def __init__(self, inner: CheckpointStore) -> None:
        super().__init__()
        self.inner = inner
        self._schema = inner.schema
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scar-persist")
        self._pending: tuple[int, Future] | None = None
        self._buffers: dict[str, np.ndarray] = {}
        self.persists: list[tuple[int, int, float]] = []
        self.snapshot_seconds: list[float] = []

    # -- writes -----------------------------------------------------------------------------

    def write(self, iteration, arrays, rows=None, *, meta=None):
        self.wait()
        t = time.perf_counter()
        plan = self._plan(iteration, arrays, rows, "partial write before any full save: write with rows=None first")
        encoded: dict[str, EncodedRows] = {}
        for name, idx in plan.items():
            a = np.asarray(arrays[name])
            if idx is None:
                snap = np.array(a, copy=True, order="C")  # not kept: a full save is rare, its buffer model-sized
            else:
                snap = gather_rows(a, idx, reused_buffer(self._buffers, name, a, idx.size))
            encoded[name] = _RAW.encode(snap, None)
        if rows is None:
            self._schema = {name: (tuple(np.shape(a)), np.asarray(a).dtype) for name, a in arrays.items()}
        self.snapshot_seconds.append(time.perf_counter() - t)
        return self._submit(iteration, _RAW, encoded, None if rows is None else plan, meta)

    def write_encoded(self, iteration, codec, encoded, rows=None, *, meta=None):
        self.wait()
        t = time.perf_counter()
        plan = self._plan_encoded(
            iteration, codec, encoded, rows, "partial write before any full save: write with rows=None first"
        )
        # The caller may reuse its buffers at once (a Checkpointer's gather buffers): copy them.
        owned = {
            n: EncodedRows(e.codec, e.shape, e.dtype, tuple(np.array(b, copy=True) for b in e.buffers), dict(e.meta))
            for n, e in encoded.items()
        }
        if rows is None:
            self._schema = {n: (tuple(e.shape), np.dtype(e.dtype)) for n, e in encoded.items()}
        self.snapshot_seconds.append(time.perf_counter() - t)
        return self._submit(iteration, codec, owned, None if rows is None else plan, meta)

    def _submit(
        self,
        iteration: int,
        codec: Codec,
        encoded: Mapping[str, EncodedRows],
        plan: Mapping[str, np.ndarray] | None,
        meta: Mapping[str, Any] | None,
    ) -> int:
        nbytes = int(sum(e.nbytes for e in encoded.values()))

        def persist() -> None:
            t = time.perf_counter()
            self.inner.write_encoded(iteration, codec, encoded, plan, meta=meta)
            self.persists.append((int(iteration), nbytes, time.perf_counter() - t))

        self._pending = (int(iteration), self._pool.submit(persist))
        self.bytes_written += nbytes
        if plan is not None:
            self.index_bytes_written += self._index_bytes(dict(plan))
        return nbytes

    # -- waiting ----------------------------------------------------------------------------

    def wait(self) -> None:
        """Block until the write in flight is durable; raise :class:`PersistError` if it failed."""
        if self._pending is None:
            return
        iteration, future = self._pending
        self._pending = None
        try:
            future.result()
        except BaseException as e:
            raise PersistError(
                f"the background persist of the save at iteration {iteration} failed ({type(e).__name__}: {e}); "
                "the store keeps every earlier record"
            ) from e

    def poll(self) -> None:
        """Raise :class:`PersistError` now if the write in flight has failed; never blocks."""
        if self._pending is not None and self._pending[1].done():
            self.wait()

    @property
    def in_flight(self) -> bool:
        """Whether a background write has not finished."""
        return self._pending is not None and not self._pending[1].done()

    def close(self) -> None:
        """Wait for the write in flight (raising its error), then stop the background thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    # -- reads go to the wrapped store once it is durable -------------------------------

    def read(self) -> Checkpoint:
        self.wait()
        return self.inner.read()

    def last_record(self) -> RecordInfo | None:
        self.wait()
        return self.inner.last_record()

    def __repr__(self) -> str:
        return f"BackgroundStore({self.inner!r})"
