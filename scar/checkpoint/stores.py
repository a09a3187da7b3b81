"""Checkpoint stores: where checkpoint saves go and how the checkpoint image is read back.

A save writes some rows (blocks) of a few named 2D arrays; the *checkpoint image* holds, for
every row, its value at its last save and the iteration of that save (SCAR.md section 3).

Two implementations:

- :class:`InMemoryStore` keeps the image in memory (the simulation: cheap vectorised writes).
- :class:`DirectoryStore` is log-structured on disk: every write is one immutable record file,
  so a partial save writes only its rows; records are written atomically and checksummed, and
  ``read()`` replays the latest full record plus every later one.

Both count their cost as payload bytes: the bytes of the saved values (rows x width x itemsize),
not of indices, headers or framing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scar._atomic import TMP_PREFIX, atomic_write, fsync_dir

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CorruptCheckpointError",
    "MissingCheckpointError",
    "CheckpointStore",
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

# Numeric kinds only: these round-trip through .npz without pickling.
_ALLOWED_KINDS = frozenset("biufc")


class CheckpointStore(ABC):
    """Persists checkpoint saves.

    Call order: ``write(...)`` with ``rows=None`` first (a full save), then any mix of full and
    partial writes; ``read()`` at any time after the first write. The names, shapes and dtypes
    of the first full save fix the store's schema: later writes must match it.

    Attributes
    ----------
    bytes_written : int
        Total payload bytes written so far by this instance (values only:
        ``n_saved_rows * row_width * itemsize`` summed over arrays and writes).
    """

    bytes_written: int

    def __init__(self) -> None:
        self.bytes_written = 0
        self._schema: _Schema | None = None

    @abstractmethod
    def write(
        self,
        iteration: int,
        arrays: Mapping[str, np.ndarray],
        rows: Mapping[str, np.ndarray] | None = None,
    ) -> int:
        """Save rows of named 2D arrays.

        Parameters
        ----------
        iteration : the training iteration the values belong to (>= 0).
        arrays : name -> 2D array. For a full save, exactly the arrays of the schema; for a
            partial save, any of them (at least those named in ``rows``).
        rows : name -> 1D integer array of row indices to save from ``arrays[name]``.
            ``None`` means every row of every array (a full save). Names absent from ``rows``
            are not saved. Duplicate indices are saved (and counted) once.

        Returns
        -------
        int
            The payload bytes of this write.

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
    def read(self) -> Checkpoint:
        """The current checkpoint image: for each row, its value at its last save.

        Returns copies: mutating them does not change the store.

        Raises
        ------
        MissingCheckpointError
            Nothing has been saved yet (or, on disk, a record is missing).
        """

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
        if isinstance(iteration, bool) or not isinstance(iteration, (int, np.integer)):
            raise ValueError(f"iteration must be an integer, got {iteration!r}")
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
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
                self._check_schema(name, arrays[name])
            return {name: None for name in arrays}

        if self._schema is None:
            raise MissingCheckpointError(missing_full)
        plan: _Plan = {}
        for name, idx in rows.items():
            if name not in arrays:
                raise ValueError(f"rows given for array {name!r}, which is not among the arrays")
            a = arrays[name]
            self._check_schema(name, a)
            idx = np.asarray(idx)
            if idx.ndim != 1:
                raise ValueError(f"rows of array {name!r} must be a 1D index array, got shape {idx.shape}")
            if idx.size == 0:
                plan[name] = np.zeros(0, dtype=np.int64)
                continue
            if not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"rows of array {name!r} must have an integer dtype, got {idx.dtype}")
            n_rows = a.shape[0]
            if idx.min() < 0 or idx.max() >= n_rows:
                raise ValueError(f"rows of array {name!r} out of range [0, {n_rows}): min {idx.min()}, max {idx.max()}")
            plan[name] = np.unique(idx).astype(np.int64, copy=False)
        for name in arrays:
            self._check_schema(name, arrays[name])
        return plan

    def _check_schema(self, name: str, a: np.ndarray) -> None:
        if self._schema is None:
            return
        if name not in self._schema:
            raise ValueError(f"array {name!r} is not in the first full save (arrays {sorted(self._schema)})")
        shape, dtype = self._schema[name]
        a = np.asarray(a)
        if a.shape != shape or a.dtype != dtype:
            raise ValueError(
                f"array {name!r} has shape {a.shape} and dtype {a.dtype}; the first full save had shape {shape} and dtype {dtype}"
            )

    @staticmethod
    def _payload_bytes(arrays: Mapping[str, np.ndarray], plan: _Plan) -> int:
        total = 0
        for name, idx in plan.items():
            a = np.asarray(arrays[name])
            n = a.shape[0] if idx is None else idx.size
            total += int(n) * int(a.shape[1]) * a.dtype.itemsize
        return total

    @staticmethod
    def _schema_of(arrays: Mapping[str, np.ndarray]) -> _Schema:
        return {name: (np.asarray(a).shape, np.asarray(a).dtype) for name, a in arrays.items()}


class InMemoryStore(CheckpointStore):
    """A checkpoint store that keeps the image in memory (for the simulation).

    A write costs one vectorised row assignment per array; nothing is kept but the image.
    """

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[str, np.ndarray] = {}
        self._saved_at: dict[str, np.ndarray] = {}

    def write(
        self,
        iteration: int,
        arrays: Mapping[str, np.ndarray],
        rows: Mapping[str, np.ndarray] | None = None,
    ) -> int:
        plan = self._plan(iteration, arrays, rows, "partial write before any full save: write with rows=None first")
        if rows is None:
            self._values = {name: np.array(a, copy=True) for name, a in arrays.items()}
            self._saved_at = {name: np.full(a.shape[0], iteration, dtype=np.int64) for name, a in arrays.items()}
            self._schema = self._schema_of(arrays)
        else:
            for name, idx in plan.items():
                self._values[name][idx] = np.asarray(arrays[name])[idx]
                self._saved_at[name][idx] = iteration
        n = self._payload_bytes(arrays, plan)
        self.bytes_written += n
        return n

    def read(self) -> Checkpoint:
        if self._schema is None:
            raise MissingCheckpointError("nothing saved yet: the in-memory store has no full save")
        return Checkpoint(
            values={name: v.copy() for name, v in self._values.items()},
            saved_at={name: s.copy() for name, s in self._saved_at.items()},
        )


# Record framing: MAGIC | header length (u64 LE) | sha256(header) | header JSON | payload.
_MAGIC = b"SCARREC1"
_PREFIX = struct.Struct("<8sQ32s")
_FORMAT_VERSION = 1
_RECORD_RE = re.compile(r"^ckpt-(\d{10})\.rec$")
_TMP_PREFIX = TMP_PREFIX
_HEADER_KEYS = ("format", "seq", "iteration", "kind", "sha256", "payload_bytes", "arrays")


def _record_name(seq: int) -> str:
    return f"ckpt-{seq:010d}.rec"


@dataclass
class _Record:
    path: Path
    header: dict[str, Any]
    payload: bytes | None  # None when only the header was read


class DirectoryStore(CheckpointStore):
    """A log-structured checkpoint store in a directory.

    Every write is one immutable record file ``ckpt-{seq:010d}.rec`` (seq = 0, 1, 2, ...),
    holding a JSON header (format version, seq, iteration, kind ``"full"``/``"partial"``, the
    sha256 of the payload, array names, shapes and dtypes) and an uncompressed ``.npz`` payload
    (the saved rows' values, and for partial records their row indices). A record is written to
    a ``.tmp-`` file, fsynced, renamed into place and the directory fsynced, so a crash leaves
    either the whole record or none; readers ignore stray temp files.

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
    """

    def __init__(self, path: str | os.PathLike, keep_history: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.keep_history = keep_history
        self.path.mkdir(parents=True, exist_ok=True)
        self._cleaned = False
        seqs = self._record_seqs()
        self._next_seq = seqs[-1] + 1 if seqs else 0
        self._open_error: CheckpointError | None = None
        try:
            full = self._latest_full(seqs, with_payload=False)
        except CheckpointError as e:
            self._open_error = e
        else:
            if full is not None:
                self._schema = {a["name"]: (tuple(a["shape"]), np.dtype(a["dtype"])) for a in full.header["arrays"]}

    def write(
        self,
        iteration: int,
        arrays: Mapping[str, np.ndarray],
        rows: Mapping[str, np.ndarray] | None = None,
    ) -> int:
        if rows is not None and self._schema is None and self._open_error is not None:
            raise CorruptCheckpointError(
                f"cannot append a partial save: the latest full record is unreadable ({self._open_error})"
            )
        plan = self._plan(
            iteration,
            arrays,
            rows,
            f"partial write before any full save: no full checkpoint record in {self.path}; write with rows=None first",
        )
        if not self._cleaned:
            # Leftovers of a crashed writer. Only a writer removes them (there is one writer per
            # directory): a reader doing so could delete a live writer's temp file under it.
            self._remove_temp_files()
            self._cleaned = True
        full = rows is None
        seq = self._next_seq
        payload, entries = self._encode_payload(arrays, plan, full)
        header = {
            "format": _FORMAT_VERSION,
            "seq": seq,
            "iteration": int(iteration),
            "kind": "full" if full else "partial",
            "sha256": hashlib.sha256(payload).hexdigest(),
            "payload_bytes": len(payload),
            "arrays": entries,
        }
        header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
        prefix = _PREFIX.pack(_MAGIC, len(header_bytes), hashlib.sha256(header_bytes).digest())
        self._write_atomically(_record_name(seq), (prefix, header_bytes, payload))

        # The record is in place: from here on the store's state must follow it.
        self._next_seq = seq + 1
        n = self._payload_bytes(arrays, plan)
        self.bytes_written += n
        if full:
            self._schema = self._schema_of(arrays)
            self._open_error = None
        fsync_dir(self.path)
        if full and not self.keep_history:
            self._compact(before=seq)
        return n

    def read(self) -> Checkpoint:
        seqs = self._record_seqs()
        if not seqs:
            raise MissingCheckpointError(f"no checkpoint records in {self.path}: nothing saved yet")
        base = self._latest_full(seqs, with_payload=True)
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

        schema = {a["name"]: (tuple(a["shape"]), np.dtype(a["dtype"])) for a in base.header["arrays"]}
        values = self._decode_payload(base, schema)
        it = base.header["iteration"]
        saved_at = {name: np.full(schema[name][0][0], it, dtype=np.int64) for name in schema}
        for s in range(start + 1, seqs[-1] + 1):
            rec = self._load_record(self.path / _record_name(s), with_payload=True)
            if rec.header["kind"] != "partial":
                # Only possible if a newer full record appeared since we listed the directory.
                raise CorruptCheckpointError(f"{rec.path}: unexpected full record after {base.path.name}")
            for name, (idx, vals) in self._decode_payload(rec, schema).items():
                values[name][idx] = vals
                saved_at[name][idx] = rec.header["iteration"]
        return Checkpoint(values=values, saved_at=saved_at)

    # -- record encoding ---------------------------------------------------------------

    @staticmethod
    def _encode_payload(arrays: Mapping[str, np.ndarray], plan: _Plan, full: bool) -> tuple[bytes, list[dict[str, Any]]]:
        # Arrays are keyed by position, so any string name is safe inside the zip.
        entries: list[dict[str, Any]] = []
        members: dict[str, np.ndarray] = {}
        for i, (name, idx) in enumerate(plan.items()):
            a = np.asarray(arrays[name])
            entries.append({"name": name, "shape": list(a.shape), "dtype": a.dtype.str})
            if full:
                members[f"v{i}"] = a
            else:
                members[f"v{i}"] = a[idx]
                members[f"r{i}"] = idx
        buf = io.BytesIO()
        np.savez(buf, **members)
        return buf.getvalue(), entries

    def _decode_payload(self, rec: _Record, schema: _Schema) -> dict[str, Any]:
        """Full record: name -> values. Partial record: name -> (rows, values)."""
        path = rec.path
        full = rec.header["kind"] == "full"
        try:
            npz = np.load(io.BytesIO(rec.payload), allow_pickle=False)
            members = {k: npz[k] for k in npz.files}
        except Exception as e:  # a zip or npy parse error of any kind
            raise CorruptCheckpointError(f"{path}: unreadable payload ({e})") from e
        out: dict[str, Any] = {}
        for i, entry in enumerate(rec.header["arrays"]):
            name = entry["name"]
            shape, dtype = schema.get(name, (None, None))
            if shape is None or tuple(entry["shape"]) != shape or np.dtype(entry["dtype"]) != dtype:
                raise CorruptCheckpointError(
                    f"{path}: array {name!r} {entry['shape']} {entry['dtype']} does not match the full record"
                )
            vals = members.get(f"v{i}")
            if full:
                if vals is None or vals.shape != shape or vals.dtype != dtype:
                    raise CorruptCheckpointError(f"{path}: values of array {name!r} are missing or malformed")
                out[name] = vals
                continue
            idx = members.get(f"r{i}")
            if (
                idx is None
                or vals is None
                or idx.ndim != 1
                or not np.issubdtype(idx.dtype, np.integer)
                or vals.dtype != dtype
                or vals.shape != (idx.size, shape[1])
                or (idx.size and (idx.min() < 0 or idx.max() >= shape[0]))
            ):
                raise CorruptCheckpointError(f"{path}: rows or values of array {name!r} are missing or malformed")
            out[name] = (idx, vals)
        if full and set(out) != set(schema):
            raise CorruptCheckpointError(f"{path}: full record lacks arrays {sorted(set(schema) - set(out))}")
        return out

    def _load_record(self, path: Path, with_payload: bool) -> _Record:
        """Read and verify one record (its header always, its payload if asked)."""
        try:
            with open(path, "rb") as fh:
                prefix = fh.read(_PREFIX.size)
                if len(prefix) != _PREFIX.size:
                    raise CorruptCheckpointError(f"{path}: truncated record (no complete prefix)")
                magic, header_len, header_sha = _PREFIX.unpack(prefix)
                if magic != _MAGIC:
                    raise CorruptCheckpointError(f"{path}: not a checkpoint record (bad magic bytes)")
                header_bytes = fh.read(header_len)
                if len(header_bytes) != header_len or hashlib.sha256(header_bytes).digest() != header_sha:
                    raise CorruptCheckpointError(f"{path}: header checksum mismatch or truncated header")
                try:
                    header = json.loads(header_bytes.decode("utf-8"))
                    missing = [k for k in _HEADER_KEYS if k not in header]
                    if missing:
                        raise KeyError(f"missing header fields {missing}")
                    kind, seq = header["kind"], header["seq"]
                except (ValueError, KeyError, TypeError) as e:
                    raise CorruptCheckpointError(f"{path}: unparsable header ({e})") from e
                if header.get("format") != _FORMAT_VERSION:
                    raise CorruptCheckpointError(f"{path}: unsupported record format {header.get('format')!r}")
                if kind not in ("full", "partial") or _record_name(seq) != path.name:
                    raise CorruptCheckpointError(f"{path}: header (kind {kind!r}, seq {seq!r}) does not match the file")
                payload = None
                if with_payload:
                    payload = fh.read()
                    if len(payload) != header["payload_bytes"]:
                        raise CorruptCheckpointError(
                            f"{path}: payload is {len(payload)} bytes, header says {header['payload_bytes']}"
                        )
                    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
                        raise CorruptCheckpointError(f"{path}: payload checksum mismatch")
        except FileNotFoundError as e:
            raise MissingCheckpointError(f"checkpoint record {path.name} is missing from {self.path}") from e
        except OSError as e:
            raise CorruptCheckpointError(f"{path}: cannot read record ({e})") from e
        return _Record(path=path, header=header, payload=payload)

    # -- directory -------------------------------------------------------------------

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

    def _write_atomically(self, name: str, chunks: tuple[bytes, ...]) -> None:
        with atomic_write(self.path / name) as fh:
            for chunk in chunks:
                fh.write(chunk)

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
