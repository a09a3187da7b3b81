"""Tests of the checkpoint codecs (scar.checkpoint.codecs)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scar.checkpoint.codecs import CODECS, Codec, EncodedRows, RawCodec, make_codec

_DTYPES = st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.int32, np.uint8, np.bool_, np.complex128])


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=9)), st.booleans())
def test_raw_round_trips_exactly_and_counts_what_it_wrote(values, with_previous):
    codec = RawCodec()
    previous = np.zeros_like(values) if with_previous else None
    enc = codec.encode(values, previous)
    out = codec.decode(enc, previous)
    assert out.dtype == values.dtype and out.shape == values.shape
    assert out.tobytes() == values.tobytes()  # bitwise: NaN payloads, -0.0
    # What it wrote is its buffers, and for raw that is rows x width x itemsize.
    assert enc.nbytes == sum(b.nbytes for b in enc.buffers) == values.shape[0] * values.shape[1] * values.dtype.itemsize
    assert enc.codec == "raw" and enc.shape == values.shape and enc.dtype == values.dtype


def test_raw_encodes_non_contiguous_rows_contiguously():
    a = np.arange(40.0).reshape(8, 5)[::2, ::2]
    enc = RawCodec().encode(a, None)
    assert enc.buffers[0].flags.c_contiguous
    np.testing.assert_array_equal(RawCodec().decode(enc, None), a)


def test_raw_rejects_other_encodings():
    bad = EncodedRows("q8", (2, 2), np.dtype(np.float64), (np.zeros((2, 2), dtype=np.int8),))
    with pytest.raises(ValueError, match="not a raw encoding"):
        RawCodec().decode(bad, None)
    wrong_shape = EncodedRows("raw", (2, 3), np.dtype(np.float64), (np.zeros((2, 2)),))
    with pytest.raises(ValueError, match="shape"):
        RawCodec().decode(wrong_shape, None)
    with pytest.raises(ValueError, match="2D"):
        RawCodec().encode(np.zeros(3), None)


def test_registry_and_make_codec():
    assert set(CODECS) == {"raw", "delta", "quantized", "lc"}
    assert isinstance(make_codec("raw"), RawCodec) and isinstance(make_codec(None), RawCodec)
    assert RawCodec.lossless and not RawCodec.needs_previous
    mine = RawCodec()
    assert make_codec(mine) is mine
    with pytest.raises(
        ValueError, match=r"unknown checkpoint codec 'zstd'; expected one of \['delta', 'lc', 'quantized', 'raw'\]"
    ):
        make_codec("zstd")


def test_a_codec_is_one_class():
    class Half(Codec):
        name = "half"
        lossless = False

        def encode(self, rows_values, previous):
            return EncodedRows(self.name, rows_values.shape, rows_values.dtype, (rows_values.astype(np.float16),))

        def decode(self, encoded, previous):
            return encoded.buffers[0].astype(encoded.dtype)

    x = np.array([[1.0, 1.0 / 3.0]])
    enc = Half().encode(x, None)
    assert enc.nbytes == 4
    assert Half().decode(enc, None)[0, 1] != x[0, 1]
    assert repr(Half()) == "Half()"


# --------------------------------------------------------------------------------------------
# delta, quantized, lc (LC-Checkpoint)


def _moved(seed=0, shape=(40, 16), dtype=np.float64):
    rng = np.random.default_rng(seed)
    prev = rng.standard_normal(shape).astype(dtype)
    x = prev.copy()
    moving = rng.random(shape[0]) < 0.5
    x[moving] += (0.01 * rng.standard_normal((int(moving.sum()), shape[1]))).astype(dtype)
    return prev, x


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.int64])
def test_delta_round_trips_bit_for_bit_with_raw_bytes(dtype):
    prev, x = _moved(dtype=np.float64)
    prev, x = (prev * 1000).astype(dtype), (x * 1000).astype(dtype)
    codec = make_codec("delta")
    enc = codec.encode(x, prev)
    assert enc.nbytes == x.nbytes
    assert codec.decode(enc, prev).tobytes() == x.tobytes()
    full = codec.encode(x, None)
    assert codec.decode(full, None).tobytes() == x.tobytes()
    with pytest.raises(ValueError, match="previous"):
        codec.decode(enc, None)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_quantized_error_is_within_its_buckets_and_bytes_are_bits_per_element(bits):
    prev, x = _moved(seed=bits)
    codec = make_codec("quantized", bits=bits)
    enc = codec.encode(x, prev)
    n = x.size
    assert enc.nbytes == -(-n * bits // 8) + 8 * len(enc.buffers[-1])
    assert len(enc.buffers[-1]) <= 2**bits - 1
    got = codec.decode(enc, prev)
    d, err = x - prev, got - x
    # An element of a kept bucket is off by less than its bucket's width (values in one binary
    # exponent differ by < 2^e); a dropped element is off by its whole (smaller) change.
    assert np.all(np.abs(err) <= np.abs(d) + 1e-12)
    # Unchanged rows decode to their previous values exactly.
    still = np.all(d == 0, axis=1)
    assert np.array_equal(got[still], prev[still])
    # More bits, smaller error.
    if bits < 8:
        finer = make_codec("quantized", bits=bits + 1)
        assert np.linalg.norm(finer.decode(finer.encode(x, prev), prev) - x) <= np.linalg.norm(err) + 1e-15


def test_quantized_with_error_feedback_does_not_accumulate_error():
    # Repeated saves of a drifting row against the image (the lossy reconstruction): the error
    # stays at the last step's quantisation, it does not grow with the number of saves.
    rng = np.random.default_rng(1)
    codec = make_codec("quantized", bits=2)
    x = rng.standard_normal((8, 32))
    image = x.copy()
    errors = []
    for _ in range(50):
        x = x + 0.01 * rng.standard_normal(x.shape)
        image = codec.decode(codec.encode(x, image), image)
        errors.append(np.linalg.norm(image - x))
    assert max(errors[25:]) < 3 * max(errors[:5])


def test_lc_compresses_the_indices_of_a_quiet_row_and_decodes_as_quantized():
    rng = np.random.default_rng(2)
    prev = rng.standard_normal((200, 64))
    x = prev.copy()
    x[:10] += 0.1 * rng.standard_normal((10, 64))  # 5% of rows moved: most indices are 0
    q, lc = make_codec("quantized", bits=3), make_codec("lc", bits=3)
    eq, el = q.encode(x, prev), lc.encode(x, prev)
    assert el.nbytes < 0.5 * eq.nbytes < 0.5 * x.nbytes
    np.testing.assert_array_equal(lc.decode(el, prev), q.decode(eq, prev))


@pytest.mark.parametrize("name", ["quantized", "lc"])
def test_integer_state_stays_exact_and_bad_bits_are_refused(name):
    rng = np.random.default_rng(4)
    prev = rng.integers(0, 50, size=(30, 20)).astype(np.int32)
    x = prev.copy()
    x[:3] += rng.integers(-2, 3, size=(3, 20)).astype(np.int32)  # a few counts moved
    codec = make_codec(name)
    enc = codec.encode(x, prev)
    got = codec.decode(enc, prev)
    assert got.dtype == x.dtype and got.tobytes() == x.tobytes()
    if name == "quantized":
        assert enc.nbytes == x.nbytes
    else:  # the exclusive-or delta of mostly unchanged counts compresses
        assert enc.nbytes < 0.2 * x.nbytes
    with pytest.raises(ValueError, match="bits must be an integer in"):
        make_codec(name, bits=9)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["raw", "delta", "quantized", "lc"]),
    st.sampled_from([1, 3, 8]),
    st.sampled_from([np.float64, np.float32, np.int32, np.int64]),
    st.integers(1, 40),
    st.integers(1, 12),
    st.integers(0, 2**31),
    st.floats(0.0, 1.0),
)
def test_budget_cost_bounds_what_every_codec_writes(name, bits, dtype, n_rows, width, seed, moving):
    rng = np.random.default_rng(seed)
    prev = (100 * rng.standard_normal((n_rows, width))).astype(dtype)
    x = prev.copy()
    moved = rng.random(n_rows) < moving
    x[moved] = (100 * rng.standard_normal((int(moved.sum()), width))).astype(dtype)
    codec = make_codec(name, bits=bits) if name in ("quantized", "lc") else make_codec(name)
    per, fixed = codec.budget_cost(np.dtype(dtype), x.size)
    enc = codec.encode(x, prev)
    assert enc.nbytes <= -(-per * x.size // 8) + fixed
    # and round trips: exactly where lossless or integer, within the change where quantized
    got = codec.decode(enc, prev)
    if codec.lossless or np.dtype(dtype).kind != "f":
        assert got.tobytes() == x.tobytes()
    else:
        assert np.all(np.abs(got.astype(np.float64) - x) <= np.abs(x.astype(np.float64) - prev) * (1 + 1e-6) + 1e-30)


def test_codec_params_rebuild_an_equal_codec():
    for name in CODECS:
        codec = make_codec(name, bits=5) if name in ("quantized", "lc") else make_codec(name)
        again = make_codec(name, **codec.params())
        assert again.params() == codec.params() and type(again) is type(codec)
    assert make_codec("lc", bits=5).params() == {"bits": 5}


@pytest.mark.parametrize("name", ["delta", "quantized", "lc"])
def test_codecs_through_a_directory_store_read_back_the_image_and_count_what_they_wrote(tmp_path, name):
    from scar.checkpoint.checkpointer import Checkpointer
    from scar.checkpoint.policies import PriorityCheckpoint
    from scar.checkpoint.stores import DirectoryStore

    rng = np.random.default_rng(3)
    params = {"w": rng.standard_normal((64, 8)), "b": rng.standard_normal((16, 4))}
    store = DirectoryStore(tmp_path, keep_history=True)
    ckpt = Checkpointer(PriorityCheckpoint(interval=4, fraction=0.25), store, codec=name)
    ckpt.start(params)
    written = [store.bytes_written]
    for k in range(1, 13):
        params = {n: a + 0.05 * rng.standard_normal(a.shape) for n, a in params.items()}
        ckpt.after_iteration(k, params)
        written.append(store.bytes_written)
    back = DirectoryStore(tmp_path).read()
    for n in params:
        np.testing.assert_array_equal(back.values[n], ckpt.image.values[n])
        np.testing.assert_array_equal(back.saved_at[n], ckpt.image.saved_at[n])
    assert ckpt.bytes_written == store.bytes_written == written[-1]
    if name == "delta":  # lossless: the image is the saved values
        for n in params:
            rows = ckpt.image.saved_at[n] == 12
            assert np.array_equal(ckpt.image.values[n][rows], params[n][rows])
    else:  # lossy partial records write fewer bytes than raw rows would
        assert written[-1] - written[0] < 0.5 * (sum(a.nbytes for a in params.values()) * 0.25 * 12)
