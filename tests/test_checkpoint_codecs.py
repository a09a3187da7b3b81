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
    assert set(CODECS) == {"raw"}
    assert isinstance(make_codec("raw"), RawCodec) and isinstance(make_codec(None), RawCodec)
    assert RawCodec.lossless and not RawCodec.needs_previous
    mine = RawCodec()
    assert make_codec(mine) is mine
    with pytest.raises(ValueError, match=r"unknown checkpoint codec 'zstd'; expected one of \['raw'\]"):
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
