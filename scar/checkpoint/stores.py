"""Checkpoint stores: where checkpoint saves go and how the checkpoint image is read back.

A save writes some rows (blocks) of a few named 2D arrays; the *checkpoint image* holds, for
every row, its value at its last save and the iteration of that save (docs/design.md §4).

Two implementations:

- :class:`InMemoryStore` keeps the image in memory (the simulation: one row copy per write).
- :class:`DirectoryStore` is log-structured on disk: every write is one immutable record file,
  so a partial save writes only its rows; records are written atomically and checksummed, and
  ``read()`` replays the latest full record plus every later one.

Rows are written through a :class:`~scar.checkpoint.codecs.Codec` (``write`` uses the raw codec;
``write_encoded`` takes rows a caller encoded), and every record names its codec. A store counts
its cost as :attr:`~CheckpointStore.bytes_written`, the bytes the codec wrote (raw: the saved
values, rows x width x itemsize); row indices are counted apart in
:attr:`~CheckpointStore.index_bytes_written`, and headers and checksums not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scar._atomic import TMP_PREFIX, atomic_write, fsync_dir
from scar.checkpoint.codecs import Codec, EncodedRows, RawCodec, make_codec
from scar.core._rows import copy_rows, gather_rows, reused_buffer

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CorruptCheckpointError",
    "MissingCheckpointError",
    "CheckpointStore",
    "RecordInfo",
    "InMemoryStore",
    "DirectoryStore",
]


@dataclass
class Checkpoint:
    """A checkpoint image.

    Parameters
    ----------
    values : name -> 2D array, the saved value of every block (a block is one row).
    saved_at : name -> int64 array of shape (n_rows,), the iteration of each row's last save.
    """

    values: dict[str, np.ndarray]
    saved_at: dict[str, np.ndarray]


@dataclass(frozen=True)
class RecordInfo:
    """What a store knows of its newest write.

    Parameters
    ----------
    seq : position of the write in the store's sequence (0, 1, ...).
    iteration : the training iteration it saved.
    kind : ``"full"`` or ``"partial"``.
    codec : name of the codec its rows were written with.
    meta : the JSON ``meta`` given to the write (a Checkpointer's state), or None.
    """

    seq: int
    iteration: int
    kind: str
    codec: str
    meta: dict[str, Any] | None


class CheckpointError(RuntimeError):
    """Base class of checkpoint store errors."""


class CorruptCheckpointError(CheckpointError):
    """A record fails its checksum or cannot be parsed; the message names the file."""


class MissingCheckpointError(CheckpointError):
    """Nothing has been saved yet, or a record is missing from the sequence; the message says what."""


# name -> (shape, dtype) of every array of a full save.
_Schema = dict[str, tuple[tuple[int, int], np.dtype]]
# name -> sorted unique row indices to save, or None for every row.
_Plan = dict[str, np.ndarray | None]

# Numeric kinds only: raw bytes of these round-trip exactly and need no pickling.
_ALLOWED_KINDS = frozenset("biufc")
_RAW = RawCodec()


def _sorted_unique(idx: np.ndarray) -> np.ndarray:
    idx = idx.astype(np.int64, copy=False)
    if idx.size < 2 or bool(np.all(idx[1:] > idx[:-1])):
        return idx  # already sorted and unique (a Checkpointer's rows always are)
    return np.unique(idx)


def _json_copy(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``meta`` through JSON, so that both stores keep exactly what a record file would."""
    if meta is None:
        return None
    try:
        return json.loads(json.dumps(meta, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise ValueError(f"record meta must be JSON-serialisable: {e}") from e


class CheckpointStore(ABC):
    """Persists checkpoint saves.

    Call order: ``write(...)`` (or ``write_encoded``) with ``rows=None`` first (a full save),
    then any mix of full and partial writes; ``read()`` at any time after the first write. The
    names, shapes and dtypes of the first full save fix the store's schema: later writes must
    match it.

    Attributes
    ----------
    bytes_written : int
        Bytes the codecs wrote so far through this instance (raw: values only,
        ``n_saved_rows * row_width * itemsize`` summed over arrays and writes).
    index_bytes_written : int
        Bytes of row indices of partial writes so far (8 per saved row), not in ``bytes_written``.
    """

    bytes_written: int
    index_bytes_written: int

    def __init__(self) -> None:
        self.bytes_written = 0
        self.index_bytes_written = 0
        self._schema: _Schema | None = None

    @property
    def schema(self) -> _Schema | None:
        """name -> (shape, dtype) of the arrays of a full save; None before the first one."""
        return None if self._schema is None else dict(self._schema)

    @abstractmethod
    def write(
        self,
        iteration: int,
        arrays: Mapping[str, np.ndarray],
        rows: Mapping[str, np.ndarray] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Save rows of named 2D arrays with the raw codec.

        Parameters
        ----------
        iteration : the training iteration the values belong to (>= 0).
        arrays : name -> 2D array. For a full save, exactly the arrays of the schema; for a
            partial save, any of them (at least those named in ``rows``).
        rows : name -> 1D integer array of row indices to save from ``arrays[name]``.
            ``None`` means every row of every array (a full save). Names absent from ``rows``
            are not saved. Duplicate indices are saved (and counted) once.
        meta : JSON-able data kept with the record (see :meth:`last_record`).

        Returns
        -------
        int
            The payload bytes of this write (what the codec wrote).

        Raises
        ------
        MissingCheckpointError
            A partial write before any full write.
        ValueError
            A negative iteration, a non-2D or non-numeric array, an array whose name, shape or
            dtype differs from the first full save, or bad row indices (not 1D integers, out of
            range); the message names the array.
        """

    @abstractmethod
    def write_encoded(
        self,
        iteration: int,
        codec: Codec,
        encoded: Mapping[str, EncodedRows],
        rows: Mapping[str, np.ndarray] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Save rows already encoded by ``codec``.

        ``rows=None``: a full save, ``encoded`` holds every array of the schema (every row,
        encoded with ``previous=None``). Otherwise ``rows[name]`` are the sorted, unique row
        indices that ``encoded[name]`` holds, encoded against the image's values of those rows.
        Returns the bytes the codec wrote; raises as :meth:`write` does.
        """

    @abstractmethod
    def read(self) -> Checkpoint:
        """The current checkpoint image: for each row, its value at its last save.

        Returns copies: mutating them does not change the store.

        Raises
        ------
        MissingCheckpointError
            Nothing has been saved yet (or, on disk, a record is missing).
        """

    @abstractmethod
    def last_record(self) -> RecordInfo | None:
        """The newest write (None before any); for a directory, its newest record file."""

    def image_view(self) -> Checkpoint | None:
        """The live image if the store keeps one in memory (not a copy; do not modify), else None.

        A :class:`~scar.checkpoint.checkpointer.Checkpointer` uses it as its own image instead
        of keeping a second copy.
        """
        return None

    # -- validation ---------------------------------------------------------------------

    @staticmethod
    def _check_iteration(iteration: int) -> None:
        if isinstance(iteration, bool) or not isinstance(iteration, (int, np.integer)):
            raise ValueError(f"iteration must be an integer, got {iteration!r}")
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")

    def _plan(
        self,
        iteration: int,
        arrays: Mapping[str, np.ndarray],
        rows: Mapping[str, np.ndarray] | None,
        missing_full: str,
    ) -> _Plan:
        """Validate a write against the schema and return what to save.

        ``missing_full`` is the message of the error raised for a partial write without schema.
        """
        self._check_iteration(iteration)
        for name, a in arrays.items():
            if not isinstance(name, str):
                raise ValueError(f"array names must be strings, got {name!r}")
            if np.ndim(a) != 2:
                raise ValueError(f"array {name!r} must be 2D (rows are blocks), got shape {np.shape(a)}")
            if np.asarray(a).dtype.kind not in _ALLOWED_KINDS:
                raise ValueError(f"array {name!r} must be numeric, got dtype {np.asarray(a).dtype}")

        if rows is None:
            if self._schema is not None:
                for name in self._schema:
                    if name not in arrays:
                        raise ValueError(f"array {name!r} of the first full save is missing from this full save")
            for name in arrays:
                self._check_schema(name, np.shape(arrays[name]), np.asarray(arrays[name]).dtype)
            return {name: None for name in arrays}

        if self._schema is None:
            raise MissingCheckpointError(missing_full)
        plan: _Plan = {}
        for name, idx in rows.items():
            if name not in arrays:
                raise ValueError(f"rows given for array {name!r}, which is not among the arrays")
            a = np.asarray(arrays[name])
            self._check_schema(name, a.shape, a.dtype)
            plan[name] = self._check_rows(name, idx, a.shape[0], require_sorted=False)
        for name in arrays:
            self._check_schema(name, np.shape(arrays[name]), np.asarray(arrays[name]).dtype)
        return plan

    def _check_rows(self, name: str, idx: Any, n_rows: int, *, require_sorted: bool) -> np.ndarray:
        idx = np.asarray(idx)
        if idx.ndim != 1:
            raise ValueError(f"rows of array {name!r} must be a 1D index array, got shape {idx.shape}")
        if idx.size == 0:
            return np.zeros(0, dtype=np.int64)
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"rows of array {name!r} must have an integer dtype, got {idx.dtype}")
        lo, hi = idx.min(), idx.max()
        if lo < 0 or hi >= n_rows:
            raise ValueError(f"rows of array {name!r} out of range [0, {n_rows}): min {lo}, max {hi}")
        if require_sorted:
            idx = idx.astype(np.int64, copy=False)
            if idx.size > 1 and not bool(np.all(idx[1:] > idx[:-1])):
                raise ValueError(f"rows of array {name!r} must be sorted and unique for an encoded write")
            return idx
        return _sorted_unique(idx)

    def _plan_encoded(
        self,
        iteration: int,
        codec: Codec,
        encoded: Mapping[str, EncodedRows],
        rows: Mapping[str, np.ndarray] | None,
        missing_full: str,
    ) -> _Plan:
        self._check_iteration(iteration)
        for name, enc in encoded.items():
            if not isinstance(name, str):
                raise ValueError(f"array names must be strings, got {name!r}")
            if enc.codec != codec.name:
                raise ValueError(f"array {name!r} was encoded by {enc.codec!r}, not by this write's codec {codec.name!r}")
            if len(enc.shape) != 2 or np.dtype(enc.dtype).kind not in _ALLOWED_KINDS:
                raise ValueError(f"array {name!r} must be 2D and numeric, got shape {enc.shape} and dtype {enc.dtype}")
        if rows is None:
            if self._schema is not None:
                for name in self._schema:
                    if name not in encoded:
                        raise ValueError(f"array {name!r} of the first full save is missing from this full save")
            for name, enc in encoded.items():
                self._check_schema(name, tuple(enc.shape), np.dtype(enc.dtype))
            return {name: None for name in encoded}
        if self._schema is None:
            raise MissingCheckpointError(missing_full)
        if set(rows) != set(encoded):
            raise ValueError(f"rows are given for arrays {sorted(rows)} but encoded values for {sorted(encoded)}")
        plan: _Plan = {}
        for name, idx in rows.items():
            if name not in self._schema:
                raise ValueError(f"array {name!r} is not in the first full save (arrays {sorted(self._schema)})")
            shape, dtype = self._schema[name]
            idx = self._check_rows(name, idx, shape[0], require_sorted=True)
            enc = encoded[name]
            if tuple(enc.shape) != (idx.size, shape[1]) or np.dtype(enc.dtype) != dtype:
                raise ValueError(
                    f"encoded rows of array {name!r} have shape {tuple(enc.shape)} and dtype {enc.dtype}; "
                    f"expected {(idx.size, shape[1])} and {dtype}"
                )
            plan[name] = idx
        return plan

    def _check_schema(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if self._schema is None:
            return
        if name not in self._schema:
            raise ValueError(f"array {name!r} is not in the first full save (arrays {sorted(self._schema)})")
        want_shape, want_dtype = self._schema[name]
        if tuple(shape) != want_shape or dtype != want_dtype:
            raise ValueError(
                f"array {name!r} has shape {tuple(shape)} and dtype {dtype}; "
                f"the first full save had shape {want_shape} and dtype {want_dtype}"
            )

    @staticmethod
    def _raw_bytes(arrays: Mapping[str, np.ndarray], plan: _Plan) -> int:
        total = 0
        for name, idx in plan.items():
            a = np.asarray(arrays[name])
            n = a.shape[0] if idx is None else idx.size
            total += int(n) * int(a.shape[1]) * a.dtype.itemsize
        return total

    @staticmethod
    def _index_bytes(plan: _Plan) -> int:
        return int(sum(8 * idx.size for idx in plan.values() if idx is not None))


class InMemoryStore(CheckpointStore):
    """A checkpoint store that keeps the image in memory (for the simulation).

    A write costs one row copy per array into the image (the only thing kept); its image is
    shared with a :class:`~scar.checkpoint.checkpointer.Checkpointer` through :meth:`image_view`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[str, np.ndarray] = {}
        self._saved_at: dict[str, np.ndarray] = {}
        self._last: RecordInfo | None = None
        self._seq = 0

    def write(
        self,
        iteration: int,
        arrays: Mapping[str, np.ndarray],
        rows: Mapping[str, np.ndarray] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        plan = self._plan(iteration, arrays, rows, "partial write before any full save: write with rows=None first")
        meta = _json_copy(meta)
        if rows is None:
            self._full({name: np.asarray(a) for name, a in arrays.items()}, iteration)
        else:
            for name, idx in plan.items():
                copy_rows(np.asarray(arrays[name]), idx, self._values[name])
                self._saved_at[name][idx] = iteration
        return self._commit(iteration, rows is None, _RAW.name, self._raw_bytes(arrays, plan), plan, meta)

    def write_encoded(
        self,
        iteration: int,
        codec: Codec,
        encoded: Mapping[str, EncodedRows],
        rows: Mapping[str, np.ndarray] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        plan = self._plan_encoded(
            iteration, codec, encoded, rows, "partial write before any full save: write with rows=None first"
        )
        meta = _json_copy(meta)
        if rows is None:
            self._full({name: codec.decode(enc, None) for name, enc in encoded.items()}, iteration)
        else:
            for name, idx in plan.items():
                image = self._values[name]
                previous = image[idx] if codec.needs_previous else None
                image[idx] = codec.decode(encoded[name], previous)
                self._saved_at[name][idx] = iteration
        nbytes = int(sum(enc.nbytes for enc in encoded.values()))
        return self._commit(iteration, rows is None, codec.name, nbytes, plan, meta)

    def _full(self, values: Mapping[str, np.ndarray], iteration: int) -> None:
        if self._schema is not None and set(values) == set(self._values):
            # In place: the live image (image_view) stays the current one.
            for name, v in values.items():
                np.copyto(self._values[name], v)
                self._saved_at[name].fill(iteration)
            return
        self._values.clear()
        self._saved_at.clear()
        for name, v in values.items():
            self._values[name] = np.array(v, copy=True, order="C")
            self._saved_at[name] = np.full(v.shape[0], iteration, dtype=np.int64)
        self._schema = {name: (v.shape, v.dtype) for name, v in self._values.items()}

    def _commit(self, iteration: int, full: bool, codec: str, nbytes: int, plan: _Plan, meta: dict | None) -> int:
        self._last = RecordInfo(self._seq, int(iteration), "full" if full else "partial", codec, meta)
        self._seq += 1
        self.bytes_written += nbytes
        self.index_bytes_written += self._index_bytes(plan)
        return nbytes

    def read(self) -> Checkpoint:
        if self._schema is None:
            raise MissingCheckpointError("nothing saved yet: the in-memory store has no full save")
        return Checkpoint(
            values={name: v.copy() for name, v in self._values.items()},
            saved_at={name: s.copy() for name, s in self._saved_at.items()},
        )

    def last_record(self) -> RecordInfo | None:
        return self._last

    def image_view(self) -> Checkpoint | None:
        if self._schema is None:
            return None
        return Checkpoint(values=self._values, saved_at=self._saved_at)


# Record framing: MAGIC | header length (u64 LE) | sha256(header) | header JSON | payload.
# The payload is, per array in header order: its row indices (int64 LE; partial records only),
# then the codec's buffers, each as raw C-order bytes; its checksum is in the header.
_MAGIC = b"SCARREC2"
_OLD_MAGICS = {b"SCARREC1": 1}
_PREFIX = struct.Struct("<8sQ32s")
_FORMAT_VERSION = 2
_RECORD_RE = re.compile(r"^ckpt-(\d{10})\.rec$")
_TMP_PREFIX = TMP_PREFIX
_HEADER_KEYS = ("format", "seq", "iteration", "kind", "codec", "checksum", "digest", "payload_bytes", "arrays", "meta")
_CHECKSUMS = {
    "sha256": lambda: hashlib.sha256(),
    "blake2b-256": lambda: hashlib.blake2b(digest_size=32),
}
_DIGEST_PLACEHOLDER = "0" * 64  # both checksums give 32 bytes: 64 hex digits
# Payloads at least this big are hashed on a second thread while they are written and synced.
_HASH_THREAD_BYTES = 4 << 20
# Reads and hashes go in pieces of this size (a piece stays in cache between the two).
_IO_CHUNK = 16 << 20


def _record_name(seq: int) -> str:
    return f"ckpt-{seq:010d}.rec"


def _byte_view(a: np.ndarray) -> memoryview:
    return memoryview(a).cast("B") if a.size else memoryview(b"")


@dataclass
class _Record:
    path: Path
    header: dict[str, Any]
    # name -> (row indices or None for a full record, encoded rows); None when only the header was read
    arrays: dict[str, tuple[np.ndarray | None, EncodedRows]] | None


class DirectoryStore(CheckpointStore):
    """A log-structured checkpoint store in a directory.

    Every write is one immutable record file ``ckpt-{seq:010d}.rec`` (seq = 0, 1, 2, ...),
    holding a JSON header (format version, seq, iteration, kind ``"full"``/``"partial"``, the
    codec, the checksum algorithm and the payload's digest, array names, shapes and dtypes, the
    layout of each array's buffers, and the writer's ``meta``) and the payload: per array its row
    indices (partial records) and the codec's buffers as raw bytes, written straight from the
    arrays. A record is written to a ``.tmp-`` file, fsynced, renamed into place and the
    directory fsynced, so a crash leaves either the whole record or none; readers ignore stray
    temp files.

    ``read()`` replays the latest full record and every later record in seq order. A gap in the
    sequence raises :class:`MissingCheckpointError`, a bad checksum or unparsable record
    :class:`CorruptCheckpointError`: a record is never skipped, since that would restore stale
    values. After a full save, older records are deleted (once the new one is durable) unless
    ``keep_history`` is true.

    Reopening an existing directory continues its sequence, and its latest full record fixes the
    schema (so partial writes may follow at once). If that record's header is unreadable, the
    next partial write raises :class:`CorruptCheckpointError`; a full write starts afresh.
    One writer per directory at a time; any number of readers. Temp files of a crashed write
    are ignored by readers and removed by the next writer's first write.

    Parameters
    ----------
    path : the directory; created if missing.
    keep_history : keep records older than the latest full save.
    checksum : ``"sha256"`` (the default: hardware-accelerated on most current x86 and ARM
        CPUs) or ``"blake2b-256"``; each record names its own, so readers take either.
    """

    def __init__(self, path: str | os.PathLike, keep_history: bool = False, checksum: str = "sha256") -> None:
        super().__init__()
        if checksum not in _CHECKSUMS:
            raise ValueError(f"unknown checksum {checksum!r}; expected one of {sorted(_CHECKSUMS)}")
        self.path = Path(path)
        self.keep_history = keep_history
        self.checksum = checksum
        #: Bytes of record files written by this instance (headers, indices, payload).
        self.file_bytes_written = 0
        self.path.mkdir(parents=True, exist_ok=True)
        self._cleaned = False
        self._gather: dict[str, np.ndarray] = {}
        seqs = self._record_seqs()
        self._next_seq = seqs[-1] + 1 if seqs else 0
        self._open_error: CheckpointError | None = None
        try:
            full = self._latest_full(seqs, with_payload=False)
        except CheckpointError as e:
            self._open_error = e
        else:
            if full is not None:
                self._schema = self._schema_of_header(full.header)

    # -- writing ------------------------------------------------------------------------

    def write(
        self,
        iteration: int,
        arrays: Mapping[str, np.ndarray],
        rows: Mapping[str, np.ndarray] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        self._check_open(rows is not None)
        plan = self._plan(iteration, arrays, rows, self._missing_full_message())
        encoded: dict[str, EncodedRows] = {}
        for name, idx in plan.items():
            a = np.asarray(arrays[name])
            if idx is None:
                encoded[name] = _RAW.encode(a, None)
            else:
                encoded[name] = _RAW.encode(gather_rows(a, idx, reused_buffer(self._gather, name, a, idx.size)), None)
        return self._write_record(iteration, rows is None, _RAW, encoded, plan, meta)

    def write_encoded(
        self,
        iteration: int,
        codec: Codec,
        encoded: Mapping[str, EncodedRows],
        rows: Mapping[str, np.ndarray] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        self._check_open(rows is not None)
        plan = self._plan_encoded(iteration, codec, encoded, rows, self._missing_full_message())
        return self._write_record(iteration, rows is None, codec, encoded, plan, meta)

    def _missing_full_message(self) -> str:
        return f"partial write before any full save: no full checkpoint record in {self.path}; write with rows=None first"

    def _check_open(self, partial: bool) -> None:
        if partial and self._schema is None and self._open_error is not None:
            raise CorruptCheckpointError(
                f"cannot append a partial save: the latest full record is unreadable ({self._open_error})"
            )

    def _write_record(
        self,
        iteration: int,
        full: bool,
        codec: Codec,
        encoded: Mapping[str, EncodedRows],
        plan: _Plan,
        meta: Mapping[str, Any] | None,
    ) -> int:
        meta = _json_copy(meta)
        if not self._cleaned:
            # Leftovers of a crashed writer. Only a writer removes them (there is one writer per
            # directory): a reader doing so could delete a live writer's temp file under it.
            self._remove_temp_files()
            self._cleaned = True
        seq = self._next_seq
        entries: list[dict[str, Any]] = []
        chunks: list[memoryview] = []
        keep: list[np.ndarray] = []  # owners of the memoryviews
        for name, idx in plan.items():
            enc = encoded[name]
            buffers = [np.ascontiguousarray(b) for b in enc.buffers]
            entries.append(
                {
                    "name": name,
                    "shape": [int(x) for x in (enc.shape if full else self._schema[name][0])],
                    "dtype": np.dtype(enc.dtype).str,
                    "rows": None if idx is None else int(idx.size),
                    "buffers": [{"dtype": b.dtype.str, "shape": list(b.shape)} for b in buffers],
                    "meta": _json_copy(enc.meta) or {},
                }
            )
            if idx is not None:
                le = np.ascontiguousarray(idx, dtype="<i8")
                keep.append(le)
                chunks.append(_byte_view(le))
            keep.extend(buffers)
            chunks.extend(_byte_view(b) for b in buffers)
        payload_bytes = sum(len(c) for c in chunks)
        header = {
            "format": _FORMAT_VERSION,
            "seq": seq,
            "iteration": int(iteration),
            "kind": "full" if full else "partial",
            "codec": codec.name,
            "checksum": self.checksum,
            "digest": _DIGEST_PLACEHOLDER,
            "payload_bytes": payload_bytes,
            "arrays": entries,
            "meta": meta,
        }
        header_bytes = self._write_atomically(_record_name(seq), header, chunks)

        # The record is in place: from here on the store's state must follow it.
        self._next_seq = seq + 1
        nbytes = int(sum(encoded[name].nbytes for name in plan))
        self.bytes_written += nbytes
        self.index_bytes_written += self._index_bytes(plan)
        self.file_bytes_written += _PREFIX.size + len(header_bytes) + payload_bytes
        if full:
            self._schema = {name: (tuple(encoded[name].shape), np.dtype(encoded[name].dtype)) for name in plan}
            self._open_error = None
        fsync_dir(self.path)
        if full and not self.keep_history:
            self._compact(before=seq)
        return nbytes

    def _write_atomically(self, name: str, header: dict[str, Any], chunks: list[memoryview]) -> bytes:
        """Write prefix, header and payload; the digest is filled into the header at the end.

        The header is written first with a placeholder digest of the same length; the payload
        goes straight from the arrays to the file while a second thread hashes it (hashlib and
        file writes release the GIL), and the bulk is fsynced before the final header is written
        over the placeholder, so hashing overlaps the disk. Returns the final header bytes.
        """
        hasher = _CHECKSUMS[header["checksum"]]()
        placeholder = json.dumps(header, sort_keys=True).encode("utf-8")
        big = header["payload_bytes"] >= _HASH_THREAD_BYTES
        errors: list[BaseException] = []

        def hash_all() -> None:
            try:
                for c in chunks:
                    for s in range(0, len(c), _IO_CHUNK):
                        hasher.update(c[s : s + _IO_CHUNK])
            except BaseException as e:  # pragma: no cover - hashing a memoryview does not fail
                errors.append(e)

        with atomic_write(self.path / name) as fh:
            fh.write(_PREFIX.pack(_MAGIC, len(placeholder), bytes(32)))
            fh.write(placeholder)
            thread = threading.Thread(target=hash_all, name="scar-record-hash") if big else None
            if thread is not None:
                thread.start()
            try:
                for c in chunks:
                    fh.write(c)
                if thread is not None:
                    fh.flush()
                    os.fsync(fh.fileno())
            finally:
                if thread is not None:
                    thread.join()
            if thread is None:
                hash_all()
            if errors:  # pragma: no cover
                raise errors[0]
            header["digest"] = hasher.hexdigest()
            header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
            assert len(header_bytes) == len(placeholder)
            fh.seek(0)
            fh.write(_PREFIX.pack(_MAGIC, len(header_bytes), hashlib.sha256(header_bytes).digest()))
            fh.write(header_bytes)
        return header_bytes

    # -- reading ------------------------------------------------------------------------

    def read(self) -> Checkpoint:
        seqs = self._record_seqs()
        if not seqs:
            raise MissingCheckpointError(f"no checkpoint records in {self.path}: nothing saved yet")
        base = self._latest_full(seqs, with_payload=False)
        if base is None:
            raise MissingCheckpointError(f"no full checkpoint record in {self.path}")
        start = base.header["seq"]
        present = set(seqs)
        for s in range(start, seqs[-1] + 1):
            if s not in present:
                raise MissingCheckpointError(
                    f"checkpoint record {_record_name(s)} is missing from {self.path} "
                    f"(sequence runs from {_record_name(start)} to {_record_name(seqs[-1])})"
                )

        schema = self._schema_of_header(base.header)
        base = self._load_record(base.path, with_payload=True, schema=schema)
        assert base.arrays is not None
        values: dict[str, np.ndarray] = {}
        for name, (_, enc) in base.arrays.items():
            values[name] = self._decoded(base, name, enc, None)
        if set(values) != set(schema):  # pragma: no cover - the schema is read from this header
            raise CorruptCheckpointError(f"{base.path}: full record lacks arrays {sorted(set(schema) - set(values))}")
        it = base.header["iteration"]
        saved_at = {name: np.full(schema[name][0][0], it, dtype=np.int64) for name in schema}
        for s in range(start + 1, seqs[-1] + 1):
            rec = self._load_record(self.path / _record_name(s), with_payload=True, schema=schema)
            if rec.header["kind"] != "partial":
                # Only possible if a newer full record appeared since we listed the directory.
                raise CorruptCheckpointError(f"{rec.path}: unexpected full record after {base.path.name}")
            assert rec.arrays is not None
            for name, (idx, enc) in rec.arrays.items():
                assert idx is not None
                codec = self._codec_of(rec)
                previous = values[name][idx] if codec.needs_previous else None
                values[name][idx] = self._decoded(rec, name, enc, previous)
                saved_at[name][idx] = rec.header["iteration"]
        return Checkpoint(values=values, saved_at=saved_at)

    def last_record(self) -> RecordInfo | None:
        seqs = self._record_seqs()
        if not seqs:
            return None
        h = self._load_record(self.path / _record_name(seqs[-1]), with_payload=False).header
        return RecordInfo(int(h["seq"]), int(h["iteration"]), h["kind"], h["codec"], h["meta"])

    def _codec_of(self, rec: _Record) -> Codec:
        try:
            return make_codec(rec.header["codec"])
        except ValueError as e:
            raise CorruptCheckpointError(f"{rec.path}: {e}") from e

    def _decoded(self, rec: _Record, name: str, enc: EncodedRows, previous: np.ndarray | None) -> np.ndarray:
        try:
            out = np.asarray(self._codec_of(rec).decode(enc, previous))
        except ValueError as e:
            raise CorruptCheckpointError(f"{rec.path}: array {name!r} does not decode ({e})") from e
        if out.shape != tuple(enc.shape) or out.dtype != enc.dtype:
            raise CorruptCheckpointError(f"{rec.path}: array {name!r} decodes to shape {out.shape} and dtype {out.dtype}")
        if not out.flags.writeable or not out.flags.c_contiguous:
            out = np.array(out, copy=True, order="C")
        return out

    @staticmethod
    def _schema_of_header(header: dict[str, Any]) -> _Schema:
        return {a["name"]: (tuple(a["shape"]), np.dtype(a["dtype"])) for a in header["arrays"]}

    def _load_record(self, path: Path, with_payload: bool, schema: _Schema | None = None) -> _Record:
        """Read and verify one record (its header always, its payload if asked).

        With the payload, every array must match ``schema`` (that of the full record replayed).
        """
        try:
            with open(path, "rb", buffering=0) as fh:
                header = self._read_header(fh, path)
                arrays = None
                if with_payload:
                    if schema is None:
                        schema = self._schema_of_header(header)
                    arrays = self._read_payload(fh, path, header, schema)
        except FileNotFoundError as e:
            raise MissingCheckpointError(f"checkpoint record {path.name} is missing from {self.path}") from e
        except OSError as e:
            raise CorruptCheckpointError(f"{path}: cannot read record ({e})") from e
        return _Record(path=path, header=header, arrays=arrays)

    @staticmethod
    def _read_exact(fh: Any, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = fh.read(n - len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def _read_header(self, fh: Any, path: Path) -> dict[str, Any]:
        prefix = self._read_exact(fh, _PREFIX.size)
        if len(prefix) != _PREFIX.size:
            raise CorruptCheckpointError(f"{path}: truncated record (no complete prefix)")
        magic, header_len, header_sha = _PREFIX.unpack(prefix)
        if magic in _OLD_MAGICS:
            raise CorruptCheckpointError(
                f"{path}: unsupported record format {_OLD_MAGICS[magic]} (written by an older scar); "
                f"this version reads format {_FORMAT_VERSION}"
            )
        if magic != _MAGIC:
            raise CorruptCheckpointError(f"{path}: not a checkpoint record (bad magic bytes)")
        if header_len > (64 << 20):
            raise CorruptCheckpointError(f"{path}: header checksum mismatch or truncated header")
        header_bytes = self._read_exact(fh, header_len)
        if len(header_bytes) != header_len or hashlib.sha256(header_bytes).digest() != header_sha:
            raise CorruptCheckpointError(f"{path}: header checksum mismatch or truncated header")
        try:
            header = json.loads(header_bytes.decode("utf-8"))
            if not isinstance(header, dict):
                raise TypeError("header is not a JSON object")
            missing = [k for k in _HEADER_KEYS if k not in header]
            if missing:
                raise KeyError(f"missing header fields {missing}")
            kind, seq = header["kind"], header["seq"]
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptCheckpointError(f"{path}: unparsable header ({e})") from e
        if header.get("format") != _FORMAT_VERSION:
            raise CorruptCheckpointError(f"{path}: unsupported record format {header.get('format')!r}")
        if kind not in ("full", "partial") or not isinstance(seq, int) or _record_name(seq) != path.name:
            raise CorruptCheckpointError(f"{path}: header (kind {kind!r}, seq {seq!r}) does not match the file")
        if header["checksum"] not in _CHECKSUMS:
            raise CorruptCheckpointError(f"{path}: unknown checksum {header['checksum']!r}")
        try:
            for entry in header["arrays"]:
                if not isinstance(entry["name"], str) or len(entry["shape"]) != 2:
                    raise ValueError(f"bad array entry {entry!r}")
                np.dtype(entry["dtype"])
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptCheckpointError(f"{path}: unparsable header ({e})") from e
        return header

    def _read_payload(
        self, fh: Any, path: Path, header: dict[str, Any], schema: _Schema
    ) -> dict[str, tuple[np.ndarray | None, EncodedRows]]:
        full = header["kind"] == "full"
        payload_start = fh.tell()
        # Lay out every buffer from the header before reading a byte.
        layout: list[tuple[str, int | None, list[np.ndarray], dict[str, Any]]] = []
        expected = 0
        try:
            for entry in header["arrays"]:
                name = entry["name"]
                shape, dtype = schema.get(name, (None, None))
                if shape is None or tuple(entry["shape"]) != shape or np.dtype(entry["dtype"]) != dtype:
                    raise CorruptCheckpointError(
                        f"{path}: array {name!r} {entry['shape']} {entry['dtype']} does not match the full record"
                    )
                m = entry["rows"]
                if full != (m is None) or (m is not None and (not isinstance(m, int) or not 0 <= m <= shape[0])):
                    raise CorruptCheckpointError(f"{path}: rows or values of array {name!r} are missing or malformed")
                buffers = []
                for spec in entry["buffers"]:
                    bshape = tuple(int(x) for x in spec["shape"])
                    if any(x < 0 for x in bshape):
                        raise ValueError(f"negative buffer shape {bshape}")
                    buffers.append(np.empty(bshape, dtype=np.dtype(spec["dtype"])))
                    expected += buffers[-1].nbytes
                if m is not None:
                    expected += 8 * m
                meta = entry.get("meta") or {}
                layout.append((name, m, buffers, meta))
        except CorruptCheckpointError:
            raise
        except (KeyError, TypeError, ValueError, MemoryError) as e:
            raise CorruptCheckpointError(f"{path}: unparsable header ({e})") from e
        if full and {name for name, *_ in layout} != set(schema):
            raise CorruptCheckpointError(f"{path}: full record lacks arrays {sorted(set(schema) - {n for n, *_ in layout})}")
        if expected != header["payload_bytes"]:
            raise CorruptCheckpointError(f"{path}: header describes {expected} payload bytes but says {header['payload_bytes']}")

        hasher = _CHECKSUMS[header["checksum"]]()
        read_total = 0

        def read_into(a: np.ndarray) -> bool:
            nonlocal read_total
            view = _byte_view(a)
            for s in range(0, len(view), _IO_CHUNK):
                piece = view[s : s + _IO_CHUNK]
                got = 0
                while got < len(piece):
                    n = fh.readinto(piece[got:])
                    if not n:
                        read_total += got
                        return False
                    got += n
                hasher.update(piece)
                read_total += got
            return True

        out_raw: list[tuple[str, np.ndarray | None, EncodedRows]] = []
        complete = True
        for name, m, buffers, meta in layout:
            idx = None
            if m is not None:
                idx = np.empty(m, dtype="<i8")
                complete = complete and read_into(idx)
            for b in buffers:
                complete = complete and read_into(b)
            shape, dtype = schema[name]
            enc_shape = (shape[0] if m is None else m, shape[1])
            out_raw.append((name, idx, EncodedRows(header["codec"], enc_shape, dtype, tuple(buffers), meta)))
        if not complete or fh.read(1):
            size = path.stat().st_size - payload_start
            raise CorruptCheckpointError(f"{path}: payload is {size} bytes, header says {header['payload_bytes']}")
        if hasher.hexdigest() != header["digest"]:
            raise CorruptCheckpointError(f"{path}: payload checksum mismatch")

        out: dict[str, tuple[np.ndarray | None, EncodedRows]] = {}
        for name, idx, enc in out_raw:
            if idx is not None:
                idx = idx.astype(np.int64, copy=False)
                n_rows = schema[name][0][0]
                if idx.size and (idx[0] < 0 or idx[-1] >= n_rows or not bool(np.all(idx[1:] > idx[:-1]))):
                    raise CorruptCheckpointError(f"{path}: rows or values of array {name!r} are missing or malformed")
            out[name] = (idx, enc)
        return out

    # -- directory ----------------------------------------------------------------------

    def _record_seqs(self) -> list[int]:
        seqs = []
        for entry in os.scandir(self.path):
            m = _RECORD_RE.match(entry.name)
            if m:
                seqs.append(int(m.group(1)))
        return sorted(seqs)

    def _latest_full(self, seqs: list[int], with_payload: bool) -> _Record | None:
        """The newest full record; raises on any unreadable record newer than it."""
        for s in reversed(seqs):
            rec = self._load_record(self.path / _record_name(s), with_payload=False)
            if rec.header["kind"] == "full":
                return self._load_record(rec.path, with_payload=True) if with_payload else rec
        return None

    def _compact(self, before: int) -> None:
        removed = False
        for s in self._record_seqs():
            if s < before:
                (self.path / _record_name(s)).unlink(missing_ok=True)
                removed = True
        if removed:
            fsync_dir(self.path)

    def _remove_temp_files(self) -> None:
        # Leftovers of writes that died before their rename: never part of the checkpoint.
        for entry in os.scandir(self.path):
            if entry.name.startswith(_TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass
