"""Tests of the checkpoint stores (scar.checkpoint.stores)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scar.checkpoint.codecs import EncodedRows, RawCodec
from scar.checkpoint.stores import (
    CheckpointError,
    CheckpointStore,
    CorruptCheckpointError,
    DirectoryStore,
    InMemoryStore,
    MissingCheckpointError,
)


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Two arrays of different widths and dtypes."""
    rng = np.random.default_rng(seed)
    return {
        "w": rng.standard_normal((6, 3)),
        "counts": rng.integers(-1000, 1000, size=(4, 5), dtype=np.int32),
    }


@pytest.fixture(params=["memory", "directory"])
def make_store(request, tmp_path):
    """A factory of fresh stores of each kind (the directory one in tmp_path)."""

    def make() -> CheckpointStore:
        if request.param == "memory":
            return InMemoryStore()
        return DirectoryStore(tmp_path / "ckpt")

    return make


def _record_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.startswith("ckpt-"))


def _assert_image(store: CheckpointStore, values: dict, saved_at: dict) -> None:
    ck = store.read()
    assert set(ck.values) == set(values)
    for name in values:
        assert ck.values[name].dtype == values[name].dtype
        assert ck.values[name].tobytes() == values[name].tobytes()  # bitwise
        assert ck.saved_at[name].dtype == np.int64
        np.testing.assert_array_equal(ck.saved_at[name], saved_at[name])


# -- both stores -------------------------------------------------------------------------


def test_full_save_roundtrips_bitwise(make_store):
    arrays = _arrays()
    arrays["w"][0, 0] = -0.0  # bitwise, not just ==
    arrays["w"][1, 1] = np.nan
    store = make_store()
    store.write(7, arrays)
    _assert_image(store, arrays, {n: np.full(a.shape[0], 7) for n, a in arrays.items()})


def test_partial_write_updates_only_named_rows(make_store):
    arrays = _arrays(0)
    store = make_store()
    store.write(0, arrays)
    new = _arrays(1)
    store.write(3, new, rows={"w": np.array([1, 4])})

    want = {n: a.copy() for n, a in arrays.items()}
    want["w"][[1, 4]] = new["w"][[1, 4]]
    saved_at = {"w": np.array([0, 3, 0, 0, 3, 0]), "counts": np.zeros(4)}
    _assert_image(store, want, saved_at)


def test_read_returns_copies(make_store):
    arrays = _arrays()
    store = make_store()
    store.write(0, arrays)
    ck = store.read()
    ck.values["w"][:] = 0
    ck.saved_at["w"][:] = 99
    arrays["w"][:] = 1  # nor does the store alias its input
    _assert_image(store, _arrays(), {n: np.zeros(a.shape[0]) for n, a in arrays.items()})


def test_bytes_written_accounting(make_store):
    arrays = _arrays()
    store = make_store()
    assert store.bytes_written == 0
    full = 6 * 3 * 8 + 4 * 5 * 4
    assert store.write(0, arrays) == full
    n = store.write(1, arrays, rows={"w": np.array([0, 2, 2]), "counts": np.array([3])})
    assert n == 2 * 3 * 8 + 1 * 5 * 4  # the duplicate row is saved once
    assert store.write(2, arrays, rows={"w": np.array([], dtype=np.int64)}) == 0
    assert store.write(3, arrays, rows={}) == 0
    assert store.bytes_written == full + n
    assert store.write(4, arrays) == full
    assert store.bytes_written == 2 * full + n


def test_partial_before_full_raises(make_store):
    store = make_store()
    with pytest.raises(MissingCheckpointError):
        store.write(0, _arrays(), rows={"w": np.array([0])})
    with pytest.raises(MissingCheckpointError):
        store.read()


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.update(w=np.zeros((6, 4))),  # shape
        lambda a: a.update(w=np.zeros((6, 3), dtype=np.float32)),  # dtype
        lambda a: a.update(extra=np.zeros((2, 2))),  # unknown name
        lambda a: a.pop("w"),  # missing name
    ],
    ids=["shape", "dtype", "extra", "missing"],
)
def test_schema_mismatch_raises_value_error(make_store, change):
    store = make_store()
    store.write(0, _arrays())
    changed = _arrays()
    change(changed)
    with pytest.raises(ValueError, match="'(w|extra)'"):
        store.write(1, changed)
    if "w" in changed:
        with pytest.raises(ValueError, match="'(w|extra)'"):
            store.write(1, changed, rows={"w": np.array([0])})
    _assert_image(store, _arrays(), {n: np.zeros(a.shape[0]) for n, a in _arrays().items()})


@pytest.mark.parametrize(
    ("iteration", "rows", "match"),
    [
        (-1, {"w": np.array([0])}, "iteration"),
        (1, {"w": np.array([6])}, "'w'.*out of range"),
        (1, {"w": np.array([-1])}, "'w'.*out of range"),
        (1, {"w": np.array([0.0, 1.0])}, "'w'.*integer"),
        (1, {"w": np.array([[0]])}, "'w'.*1D"),
        (1, {"nope": np.array([0])}, "'nope'"),
    ],
)
def test_bad_write_arguments_raise_value_error(make_store, iteration, rows, match):
    store = make_store()
    store.write(0, _arrays())
    with pytest.raises(ValueError, match=match):
        store.write(iteration, _arrays(), rows=rows)
    assert store.bytes_written == 6 * 3 * 8 + 4 * 5 * 4


def test_non_2d_array_raises(make_store):
    with pytest.raises(ValueError, match="'v'.*2D"):
        make_store().write(0, {"v": np.zeros(3)})


# -- DirectoryStore ----------------------------------------------------------------------


def _two_saves(path: Path) -> tuple[DirectoryStore, dict, dict]:
    """A full save at 0 and a partial at 1; returns the store and the expected image."""
    store = DirectoryStore(path)
    a0 = _arrays(0)
    store.write(0, a0)
    a1 = _arrays(1)
    store.write(1, a1, rows={"counts": np.array([2])})
    want = {n: a.copy() for n, a in a0.items()}
    want["counts"][2] = a1["counts"][2]
    saved_at = {"w": np.zeros(6), "counts": np.array([0, 0, 1, 0])}
    return store, want, saved_at


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
@pytest.mark.parametrize("kind", ["full", "partial"])
def test_killed_write_leaves_previous_checkpoint(tmp_path, monkeypatch, fail_at, kind):
    store, want, saved_at = _two_saves(tmp_path)
    before = _record_files(tmp_path)

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(os, fail_at, crash)
        with pytest.raises(OSError, match="simulated crash"):
            store.write(2, _arrays(2), rows=None if kind == "full" else {"w": np.array([0, 1])})

    assert _record_files(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert store.bytes_written == 6 * 3 * 8 + 4 * 5 * 4 + 5 * 4
    _assert_image(store, want, saved_at)
    _assert_image(DirectoryStore(tmp_path), want, saved_at)

    # The store is still usable, and the failed seq is reused.
    store.write(3, _arrays(3), rows={"w": np.array([5])})
    assert _record_files(tmp_path)[-1] == "ckpt-0000000002.rec"
    want["w"][5] = _arrays(3)["w"][5]
    saved_at["w"][5] = 3
    _assert_image(DirectoryStore(tmp_path), want, saved_at)


def test_truncated_temp_file_is_ignored_and_cleaned(tmp_path):
    store, want, saved_at = _two_saves(tmp_path)
    # What a write killed mid-payload leaves: a prefix of a record under a temp name.
    data = (tmp_path / "ckpt-0000000001.rec").read_bytes()
    tmp = tmp_path / ".tmp-crashed.part"
    tmp.write_bytes(data[: len(data) // 2])

    _assert_image(store, want, saved_at)
    reopened = DirectoryStore(tmp_path)
    _assert_image(reopened, want, saved_at)
    # Readers leave temp files alone (one may be a live writer's); the next write removes them.
    assert tmp.exists()
    reopened.write(9, _arrays(9))
    assert not tmp.exists()


def test_flipped_payload_byte_is_detected(tmp_path):
    _two_saves(tmp_path)
    rec = tmp_path / "ckpt-0000000001.rec"
    data = bytearray(rec.read_bytes())
    # Framing: 8 magic bytes, 8-byte little-endian header length, 32-byte header sha256, header;
    # the payload is the row indices (8 bytes), then the values: flip a byte of the values.
    payload_start = 48 + int.from_bytes(data[8:16], "little")
    assert len(data) - payload_start == 8 + 5 * 4
    data[payload_start + 8 + 10] ^= 0x01
    rec.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match=r"ckpt-0000000001\.rec.*payload checksum"):
        DirectoryStore(tmp_path).read()


@pytest.mark.parametrize("where", ["header", "truncated", "garbage"])
def test_damaged_record_is_detected(tmp_path, where):
    _two_saves(tmp_path)
    rec = tmp_path / "ckpt-0000000000.rec"
    data = bytearray(rec.read_bytes())
    if where == "header":
        data[60] ^= 0x20  # inside the JSON header (after the 48-byte prefix)
    elif where == "truncated":
        del data[len(data) // 2 :]
    else:
        data[:] = b"not a record"
    rec.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="ckpt-0000000000.rec"):
        DirectoryStore(tmp_path).read()


def test_missing_middle_record_is_named(tmp_path):
    store = DirectoryStore(tmp_path)
    store.write(0, _arrays())
    for it in range(1, 4):
        store.write(it, _arrays(it), rows={"w": np.array([it])})
    (tmp_path / "ckpt-0000000002.rec").unlink()
    with pytest.raises(MissingCheckpointError, match="ckpt-0000000002.rec"):
        store.read()


def test_missing_latest_full_record_is_not_bypassed(tmp_path):
    store = DirectoryStore(tmp_path, keep_history=True)
    store.write(0, _arrays(0))
    store.write(1, _arrays(1))
    store.write(2, _arrays(2), rows={"w": np.array([0])})
    (tmp_path / "ckpt-0000000001.rec").unlink()
    # Replaying from the older full record would restore stale values: refuse.
    with pytest.raises(MissingCheckpointError, match="ckpt-0000000001.rec"):
        store.read()


def test_empty_directory_names_it(tmp_path):
    with pytest.raises(MissingCheckpointError, match=re.escape(str(tmp_path / "empty"))):
        DirectoryStore(tmp_path / "empty").read()


@pytest.mark.parametrize("keep_history", [False, True])
def test_compaction(tmp_path, keep_history):
    store = DirectoryStore(tmp_path, keep_history=keep_history)
    store.write(0, _arrays(0))
    store.write(1, _arrays(1), rows={"w": np.array([0])})
    store.write(2, _arrays(2), rows={"w": np.array([1])})
    assert len(_record_files(tmp_path)) == 3
    store.write(3, _arrays(3))
    store.write(4, _arrays(4), rows={"counts": np.array([0])})
    names = _record_files(tmp_path)
    if keep_history:
        assert names == [f"ckpt-{s:010d}.rec" for s in range(5)]
    else:
        assert names == ["ckpt-0000000003.rec", "ckpt-0000000004.rec"]
    want = _arrays(3)
    want["counts"][0] = _arrays(4)["counts"][0]
    _assert_image(store, want, {"w": np.full(6, 3), "counts": np.array([4, 3, 3, 3])})


def test_reopen_continues_sequence(tmp_path):
    _, want, saved_at = _two_saves(tmp_path)
    store = DirectoryStore(tmp_path)
    assert store.bytes_written == 0
    _assert_image(store, want, saved_at)
    # The existing full record satisfies the first-full-save rule and fixes the schema.
    store.write(5, _arrays(5), rows={"w": np.array([2])})
    with pytest.raises(ValueError, match="'w'"):
        store.write(6, {**_arrays(), "w": np.zeros((7, 3))})
    assert _record_files(tmp_path) == [f"ckpt-{s:010d}.rec" for s in range(3)]
    assert store.bytes_written == 3 * 8
    want["w"][2] = _arrays(5)["w"][2]
    saved_at["w"][2] = 5
    _assert_image(store, want, saved_at)


def test_reopen_with_corrupt_full_record(tmp_path):
    _two_saves(tmp_path)
    (tmp_path / "ckpt-0000000000.rec").write_bytes(b"junk")
    store = DirectoryStore(tmp_path)
    with pytest.raises(CorruptCheckpointError, match="ckpt-0000000000.rec"):
        store.write(2, _arrays(), rows={"w": np.array([0])})
    # A full save starts afresh and compacts the damaged history away.
    store.write(2, _arrays(2))
    assert _record_files(tmp_path) == ["ckpt-0000000002.rec"]
    _assert_image(store, _arrays(2), {"w": np.full(6, 2), "counts": np.full(4, 2)})


def test_error_hierarchy():
    assert issubclass(CorruptCheckpointError, CheckpointError)
    assert issubclass(MissingCheckpointError, CheckpointError)
    assert issubclass(CheckpointError, RuntimeError)


# -- property: both stores agree with a row-by-row reference model -----------------------

_SHAPES = {"a": (5, 2), "b": (3, 4)}
_DTYPES = {"a": np.float64, "b": np.int32}

_step = st.tuples(
    st.booleans(),  # full save?
    st.dictionaries(st.sampled_from(sorted(_SHAPES)), st.lists(st.integers(0, 4), max_size=6)),
    st.integers(0, 2**31 - 1),  # seed of the values
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, min_size=1, max_size=6))
def test_stores_match_reference_model(steps):
    with tempfile.TemporaryDirectory() as d:
        stores = [InMemoryStore(), DirectoryStore(d)]
        ref_values: dict[str, np.ndarray] = {}
        ref_saved: dict[str, np.ndarray] = {}
        ref_bytes = 0
        for it, (full, rows, seed) in enumerate(steps):
            rng = np.random.default_rng(seed)
            arrays = {n: rng.standard_normal(s).astype(_DTYPES[n]) * 100 for n, s in _SHAPES.items()}
            full = full or it == 0
            rows = {n: np.array([r % _SHAPES[n][0] for r in rs], dtype=np.int64) for n, rs in rows.items()}
            for store in stores:
                store.write(it, arrays, rows=None if full else rows)
            if full:
                ref_values = {n: a.copy() for n, a in arrays.items()}
                ref_saved = {n: np.full(s[0], it) for n, s in _SHAPES.items()}
                ref_bytes += sum(a.nbytes for a in arrays.values())
            else:
                for n, rs in rows.items():
                    for r in set(rs.tolist()):
                        ref_values[n][r] = arrays[n][r]
                        ref_saved[n][r] = it
                        ref_bytes += arrays[n][r].nbytes
        for store in [*stores, DirectoryStore(d)]:
            _assert_image(store, ref_values, ref_saved)
        assert stores[0].bytes_written == stores[1].bytes_written == ref_bytes


# -- encoded writes, record info, bytes apart from values --------------------------------


def test_write_encoded_matches_write(make_store):
    arrays = _arrays(0)
    raw = RawCodec()
    a, b = make_store(), InMemoryStore()
    assert a.write_encoded(0, raw, {n: raw.encode(v, None) for n, v in arrays.items()}) == b.write(0, arrays)
    new = _arrays(1)
    rows = {"w": np.array([1, 4]), "counts": np.array([0])}
    enc = {n: raw.encode(new[n][r], None) for n, r in rows.items()}
    assert a.write_encoded(3, raw, enc, rows) == b.write(3, new, rows) == 2 * 3 * 8 + 5 * 4
    ref = b.read()
    _assert_image(a, ref.values, ref.saved_at)
    assert a.bytes_written == b.bytes_written
    assert a.index_bytes_written == b.index_bytes_written == 3 * 8


@pytest.mark.parametrize(
    ("rows", "encoded", "match"),
    [
        ({"w": np.array([4, 1])}, {"w": (2, 3)}, "sorted and unique"),
        ({"w": np.array([1, 1])}, {"w": (2, 3)}, "sorted and unique"),
        ({"w": np.array([1, 4])}, {"w": (3, 3)}, r"'w'.*\(3, 3\).*\(2, 3\)"),
        ({"w": np.array([1])}, {"counts": (1, 5)}, "rows are given for arrays"),
        ({"w": np.array([9])}, {"w": (1, 3)}, "out of range"),
    ],
)
def test_write_encoded_validates(make_store, rows, encoded, match):
    store = make_store()
    store.write(0, _arrays())
    raw = RawCodec()
    enc = {n: raw.encode(np.zeros(shape), None) for n, shape in encoded.items()}
    with pytest.raises(ValueError, match=match):
        store.write_encoded(1, raw, enc, rows)
    other = EncodedRows("q8", (1, 3), np.dtype(np.float64), (np.zeros((1, 3), dtype=np.int8),))
    with pytest.raises(ValueError, match="'q8'"):
        store.write_encoded(1, raw, {"w": other}, {"w": np.array([0])})
    assert store.bytes_written == 6 * 3 * 8 + 4 * 5 * 4


def test_last_record_and_meta(make_store):
    store = make_store()
    assert store.last_record() is None
    store.write(0, _arrays(), meta={"checkpointer": {"n_saves": 1}})
    store.write(5, _arrays(1), rows={"w": np.array([2])})
    info = store.last_record()
    assert (info.seq, info.iteration, info.kind, info.codec, info.meta) == (1, 5, "partial", "raw", None)
    store.write(6, _arrays(2), meta={"x": [1, 2.5, "a"]})
    assert store.last_record().meta == {"x": [1, 2.5, "a"]} and store.last_record().kind == "full"
    with pytest.raises(ValueError, match="JSON"):
        store.write(7, _arrays(2), meta={"x": object()})


def test_directory_store_reports_its_newest_record_after_reopening(tmp_path):
    store = DirectoryStore(tmp_path)
    store.write(0, _arrays(), meta={"k": 0})
    store.write(2, _arrays(), rows={"w": np.array([0])}, meta={"k": 2})
    assert DirectoryStore(tmp_path).last_record().meta == {"k": 2}
    assert store.file_bytes_written > store.bytes_written + store.index_bytes_written


@pytest.mark.parametrize("checksum", ["sha256", "blake2b-256"])
def test_checksums(tmp_path, checksum):
    store, want, saved_at = _two_saves_with(tmp_path, checksum=checksum)
    _assert_image(DirectoryStore(tmp_path), want, saved_at)  # a reader takes what the record names
    rec = tmp_path / "ckpt-0000000001.rec"
    data = bytearray(rec.read_bytes())
    data[-1] ^= 0x80
    rec.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="payload checksum"):
        DirectoryStore(tmp_path).read()
    with pytest.raises(ValueError, match="unknown checksum 'md5'"):
        DirectoryStore(tmp_path, checksum="md5")


def _two_saves_with(path: Path, **kw) -> tuple[DirectoryStore, dict, dict]:
    store = DirectoryStore(path, **kw)
    a0, a1 = _arrays(0), _arrays(1)
    store.write(0, a0)
    store.write(1, a1, rows={"counts": np.array([2])})
    want = {n: a.copy() for n, a in a0.items()}
    want["counts"][2] = a1["counts"][2]
    return store, want, {"w": np.zeros(6), "counts": np.array([0, 0, 1, 0])}


def _header_of(rec: Path) -> tuple[bytearray, int, dict]:
    data = bytearray(rec.read_bytes())
    n = int.from_bytes(data[8:16], "little")
    return data, n, json.loads(bytes(data[48 : 48 + n]))


def _rewrite_header(rec: Path, data: bytearray, n: int, header: dict) -> None:
    """Replace the header, with a valid header checksum: only the checks after it can object."""
    hb = json.dumps(header, sort_keys=True).encode()
    prefix = bytes(data[:8]) + len(hb).to_bytes(8, "little") + hashlib.sha256(hb).digest()
    rec.write_bytes(prefix + hb + bytes(data[48 + n :]))


def test_flipped_row_index_byte_is_detected(tmp_path):
    _two_saves(tmp_path)
    rec = tmp_path / "ckpt-0000000001.rec"
    data, n, _ = _header_of(rec)
    data[48 + n] ^= 0x01  # the first byte of the partial record's row indices
    rec.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="payload checksum"):
        DirectoryStore(tmp_path).read()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h.update(codec="zstd"), "unknown checkpoint codec 'zstd'"),
        (lambda h: h.update(format=1), "unsupported record format 1"),
        (lambda h: h.update(payload_bytes=h["payload_bytes"] + 8), "payload bytes"),
        (lambda h: h["arrays"][0].update(rows=None), "malformed"),
        (lambda h: h["arrays"][0]["buffers"][0].update(shape=[2, 5]), "payload bytes"),
        (lambda h: h.update(digest="0" * 64), "payload checksum"),
        (lambda h: h.pop("meta"), "missing header fields"),
    ],
    ids=["codec", "format", "size", "kind", "buffer", "digest", "field"],
)
def test_inconsistent_header_is_detected(tmp_path, edit, match):
    _two_saves(tmp_path)
    rec = tmp_path / "ckpt-0000000001.rec"
    data, n, header = _header_of(rec)
    edit(header)
    _rewrite_header(rec, data, n, header)
    with pytest.raises(CorruptCheckpointError, match=match):
        DirectoryStore(tmp_path).read()


def test_trailing_bytes_are_detected(tmp_path):
    _two_saves(tmp_path)
    rec = tmp_path / "ckpt-0000000001.rec"
    rec.write_bytes(rec.read_bytes() + b"\0")
    with pytest.raises(CorruptCheckpointError, match="payload is"):
        DirectoryStore(tmp_path).read()


def test_format_1_records_are_named_not_misread(tmp_path):
    (tmp_path / "ckpt-0000000000.rec").write_bytes(b"SCARREC1" + bytes(40) + b"{}")
    with pytest.raises(CorruptCheckpointError, match="record format 1"):
        DirectoryStore(tmp_path).read()


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_killed_large_write_leaves_previous_checkpoint(tmp_path, monkeypatch, fail_at):
    # Large enough to be hashed on a second thread while it is written: that path must clean up too.
    big = {"w": np.random.default_rng(0).standard_normal((1024, 1024))}
    store = DirectoryStore(tmp_path)
    store.write(0, big)
    before = _record_files(tmp_path)

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(os, fail_at, crash)
        with pytest.raises(OSError, match="simulated crash"):
            store.write(1, {"w": big["w"] + 1})
    assert _record_files(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    _assert_image(DirectoryStore(tmp_path), big, {"w": np.zeros(1024)})
    half = {"w": big["w"] * 2}
    store.write(2, half, rows={"w": np.arange(0, 1024, 2)})
    want = big["w"].copy()
    want[::2] = half["w"][::2]
    _assert_image(DirectoryStore(tmp_path), {"w": want}, {"w": np.tile([2, 0], 512)})
