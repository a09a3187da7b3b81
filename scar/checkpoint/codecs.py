"""Checkpoint codecs: how the rows a policy chose are written (docs/design.md §4).

The policy chooses rows; the codec turns their values into the buffers a store writes, and back.
A store record names its codec, the bytes a store counts are the bytes the codec wrote
(:attr:`EncodedRows.nbytes`), and the checkpoint image holds ``decode(encode(x))``: what a
restore returns. For the lossless :class:`RawCodec` that is ``x`` itself; a lossy codec's error
thus counts in the perturbation a recovery measures.

Adding a codec is one class: subclass :class:`Codec`, set ``name`` and ``lossless``, implement
:meth:`~Codec.encode` and :meth:`~Codec.decode`, and add it to :data:`CODECS`. ``previous`` is
the image's current value of the same rows (``None`` in a full record, which must decode on its
own); a delta or quantized codec encodes against it, so its error feeds back: the next save of a
row measures against the lossy reconstruction, not the true value, and errors do not accumulate.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = ["CODECS", "Codec", "DeltaCodec", "EncodedRows", "LCCodec", "QuantizedCodec", "RawCodec", "make_codec"]


@dataclass(frozen=True)
class EncodedRows:
    """The encoded values of some rows of one array: what a store writes for them.

    Parameters
    ----------
    codec : name of the codec that wrote it.
    shape : shape ``(n_rows, width)`` of the decoded values.
    dtype : dtype of the decoded values (the array's dtype).
    buffers : the arrays written, in order (each written as its raw C-order bytes). A store
        writes or copies them before ``write`` returns and keeps no reference.
    meta : small JSON-able parameters of the encoding (e.g. a quantizer's scale); stored in the
        record header.
    """

    codec: str
    shape: tuple[int, int]
    dtype: np.dtype
    buffers: tuple[np.ndarray, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes the codec wrote: the sum of its buffers' sizes."""
        return int(sum(b.nbytes for b in self.buffers))


class Codec(ABC):
    """Encodes the values of rows for a store, and decodes them back.

    Call order: per array and save, ``encode(rows_values, previous)`` once; a store writes the
    result, and ``decode(encoded, previous)`` with the same ``previous`` returns what a restore
    gives for these rows. Both must be deterministic.
    """

    name: ClassVar[str]
    #: Whether ``decode(encode(x, p), p)`` is ``x`` bit for bit.
    lossless: ClassVar[bool]
    #: Whether encode/decode read ``previous`` (if not, callers may pass ``None``).
    needs_previous: ClassVar[bool] = False
    #: Whether what it writes depends on the data (entropy coding) and may be far below
    #: :meth:`budget_cost`'s bound: a byte budget then measures candidates by encoding them.
    entropy_coded: ClassVar[bool] = False

    @abstractmethod
    def encode(self, rows_values: np.ndarray, previous: np.ndarray | None) -> EncodedRows:
        """Encode ``rows_values`` (2D: the rows' current values).

        ``previous`` is the image's value of the same rows, or ``None`` for a self-contained
        encoding (a full record). The result may alias ``rows_values``.
        """

    @abstractmethod
    def decode(self, encoded: EncodedRows, previous: np.ndarray | None) -> np.ndarray:
        """The values a restore returns for the encoded rows, shape ``encoded.shape``.

        The result may alias ``encoded``'s buffers; callers copy it where they keep it.
        """

    def params(self) -> dict[str, Any]:
        """The constructor parameters (JSON-able): ``make_codec(name, **params())`` rebuilds an
        equal codec, which is how a resumed Checkpointer gets its codec back."""
        return {}

    def budget_cost(self, dtype: np.dtype, n_elements: int) -> tuple[int, int]:
        """An upper bound on what an encoding against ``previous`` of up to ``n_elements``
        elements of ``dtype`` (one array, one save) writes: ``(bits per element, fixed bytes)``,
        so that it writes at most ``ceil(bits * n / 8) + fixed`` bytes for any ``n <= n_elements``
        and any data. A byte budget selects rows with it (docs/design.md §4). Default: raw."""
        return 8 * np.dtype(dtype).itemsize, 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _zlib_slack(n: int) -> int:
    """Most bytes zlib adds to ``n`` incompressible bytes (zlib's compressBound minus ``n``)."""
    return (n >> 12) + (n >> 14) + (n >> 25) + 13


class RawCodec(Codec):
    """The values as they are: lossless, ``rows x width x itemsize`` bytes."""

    name = "raw"
    lossless = True

    def encode(self, rows_values: np.ndarray, previous: np.ndarray | None) -> EncodedRows:
        values = np.ascontiguousarray(rows_values)
        if values.ndim != 2:
            raise ValueError(f"rows to encode must be 2D, got shape {values.shape}")
        return EncodedRows(self.name, (int(values.shape[0]), int(values.shape[1])), values.dtype, (values,))

    def decode(self, encoded: EncodedRows, previous: np.ndarray | None) -> np.ndarray:
        if encoded.codec != self.name or len(encoded.buffers) != 1:
            raise ValueError(f"not a raw encoding: codec {encoded.codec!r} with {len(encoded.buffers)} buffers")
        (values,) = encoded.buffers
        if values.shape != tuple(encoded.shape) or values.dtype != encoded.dtype:
            raise ValueError(
                f"raw buffer has shape {values.shape} and dtype {values.dtype}, "
                f"expected {tuple(encoded.shape)} and {encoded.dtype}"
            )
        return values


def _as_2d(rows_values: np.ndarray) -> np.ndarray:
    values = np.ascontiguousarray(rows_values)
    if values.ndim != 2:
        raise ValueError(f"rows to encode must be 2D, got shape {values.shape}")
    return values


def _bits_view(a: np.ndarray) -> np.ndarray:
    """The array's bytes as unsigned integers of its itemsize (floats as their bit patterns)."""
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


class DeltaCodec(Codec):
    """Each saved row as its difference from the row's last saved value, exactly.

    The difference is taken on the bit patterns (exclusive or, for floats and integers alike),
    so it inverts bit for bit: lossless, and the same bytes as raw. Rows that barely moved have
    differences with many zero bits, which is what an entropy coder downstream exploits. A full
    record (``previous=None``) is written raw.
    """

    name = "delta"
    lossless = True
    needs_previous = True

    def encode(self, rows_values: np.ndarray, previous: np.ndarray | None) -> EncodedRows:
        values = _as_2d(rows_values)
        if previous is None:
            return EncodedRows(self.name, values.shape, values.dtype, (values,), {"kind": "raw"})
        prev = np.ascontiguousarray(previous, dtype=values.dtype)
        return EncodedRows(self.name, values.shape, values.dtype, (_bits_view(values) ^ _bits_view(prev),), {"kind": "xor"})

    def decode(self, encoded: EncodedRows, previous: np.ndarray | None) -> np.ndarray:
        (buf,) = encoded.buffers
        if encoded.meta.get("kind") == "raw":
            return buf
        if previous is None:
            raise ValueError("a delta record decodes only against the previous values of its rows")
        prev = np.ascontiguousarray(previous, dtype=encoded.dtype)
        return (np.asarray(buf).reshape(encoded.shape) ^ _bits_view(prev)).view(encoded.dtype)


class QuantizedCodec(Codec):
    """LC-Checkpoint's quantization (Chen et al., ICML 2020) of each row's change, with error
    feedback.

    The change ``d = x - previous`` is taken against the image (the lossy reconstruction of the
    last save), so errors do not accumulate: the next save measures from what a restore would
    return. Each element's sign and binary exponent (``np.frexp``) pick a bucket; the ``2^bits -
    1`` non-empty buckets of largest magnitude are kept, each represented by the mean of its
    elements (the value that minimises the squared error), and every other element decodes to
    no change. Written: ``bits`` per element (packed) and one float64 per kept bucket. A full
    record (``previous=None``) is written raw. Integer state (LDA's counts) is never quantized:
    counts must stay exact, so an integer array is written raw (``kind: exact``); :class:`LCCodec`
    entropy-codes its exclusive-or delta instead, still exactly.
    """

    name = "quantized"
    lossless = False
    needs_previous = True

    def __init__(self, bits: int = 3) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
            raise ValueError(f"quantized codec: bits must be an integer in [1, 8], got {bits!r}")
        self.bits = bits

    def params(self) -> dict[str, Any]:
        return {"bits": int(self.bits)}

    def budget_cost(self, dtype: np.dtype, n_elements: int) -> tuple[int, int]:
        if np.dtype(dtype).kind != "f":
            return 8 * np.dtype(dtype).itemsize, 0
        # bits per element, packed (one byte of rounding), and one float64 per kept bucket.
        return self.bits, 1 + 8 * (2**self.bits - 1)

    def _quantize(self, values: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bucket index per element (0: no change) and the kept buckets' values."""
        if values.dtype.kind not in "f":
            raise ValueError(
                f"the quantized codec takes floating-point arrays; {values.dtype} state must stay exact (raw or delta)"
            )
        d = values.astype(np.float64) - np.asarray(previous, dtype=np.float64)
        _, exponent = np.frexp(d)
        nonzero = d != 0
        key = np.where(nonzero, exponent.astype(np.int64) * 2 + (d > 0), np.iinfo(np.int64).min)
        keys, inverse = np.unique(key[nonzero], return_inverse=True)
        # Largest magnitude first: by exponent (key // 2), the sign breaking ties.
        kept = keys[np.argsort(-(keys // 2), kind="stable")][: 2**self.bits - 1]
        rank = np.full(keys.size, 0, dtype=np.int64)
        rank[np.searchsorted(keys, kept)] = np.arange(1, kept.size + 1)
        index = np.zeros(d.shape, dtype=np.uint8)
        index[nonzero] = rank[inverse]
        sums = np.bincount(index.ravel(), weights=d.ravel(), minlength=kept.size + 1)
        counts = np.bincount(index.ravel(), minlength=kept.size + 1)
        table = sums[1:] / np.maximum(counts[1:], 1)
        return index, table

    def _pack(self, index: np.ndarray) -> np.ndarray:
        bits = np.unpackbits(index.reshape(-1, 1), axis=1, count=8, bitorder="little")[:, : self.bits]
        return np.packbits(bits.ravel(), bitorder="little")

    def _unpack(self, packed: np.ndarray, n: int, bits: int) -> np.ndarray:
        flat = np.unpackbits(packed, count=n * bits, bitorder="little").reshape(n, bits)
        return (flat.astype(np.uint8) << np.arange(bits, dtype=np.uint8)).sum(axis=1, dtype=np.uint8)

    def encode(self, rows_values: np.ndarray, previous: np.ndarray | None) -> EncodedRows:
        values = _as_2d(rows_values)
        if previous is None:
            return EncodedRows(self.name, values.shape, values.dtype, (values,), {"kind": "raw"})
        if values.dtype.kind != "f":
            return self._encode_exact(values, previous)
        index, table = self._quantize(values, previous)
        return EncodedRows(
            self.name, values.shape, values.dtype, (self._pack(index), table), {"kind": "quantized", "bits": self.bits}
        )

    def _encode_exact(self, values: np.ndarray, previous: np.ndarray) -> EncodedRows:
        """Integer state, kept exact: the values as they are."""
        return EncodedRows(self.name, values.shape, values.dtype, (values,), {"kind": "exact"})

    def _decode_exact(self, encoded: EncodedRows, previous: np.ndarray) -> np.ndarray:
        return np.asarray(encoded.buffers[0]).reshape(encoded.shape)

    def _index(self, encoded: EncodedRows) -> np.ndarray:
        packed = encoded.buffers[0]
        n = int(np.prod(encoded.shape))
        return self._unpack(np.asarray(packed, dtype=np.uint8), n, int(encoded.meta["bits"])).reshape(encoded.shape)

    def decode(self, encoded: EncodedRows, previous: np.ndarray | None) -> np.ndarray:
        if encoded.meta.get("kind") == "raw":
            return encoded.buffers[0]
        if previous is None:
            raise ValueError("a quantized record decodes only against the previous values of its rows")
        if encoded.meta.get("kind") == "exact":
            return self._decode_exact(encoded, previous)
        table = np.concatenate([[0.0], np.asarray(encoded.buffers[-1], dtype=np.float64)])
        change = table[self._index(encoded)]
        return (np.asarray(previous, dtype=np.float64) + change).astype(encoded.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits})"


class LCCodec(QuantizedCodec):
    """LC-Checkpoint whole: the quantized change, its bucket indices entropy-coded (zlib).

    Integer state stays exact: its exclusive-or delta (as :class:`DeltaCodec`), zlib-coded.
    """

    name = "lc"
    entropy_coded = True

    def budget_cost(self, dtype: np.dtype, n_elements: int) -> tuple[int, int]:
        per, fixed = super().budget_cost(dtype, n_elements)
        # zlib may expand what it cannot compress, by at most its slack on the largest input.
        return per, fixed + _zlib_slack(-(-int(n_elements) * per // 8))

    def _encode_exact(self, values: np.ndarray, previous: np.ndarray) -> EncodedRows:
        prev = np.ascontiguousarray(previous, dtype=values.dtype)
        xor = np.ascontiguousarray(_bits_view(values) ^ _bits_view(prev))
        squeezed = np.frombuffer(zlib.compress(xor.tobytes(), 6), dtype=np.uint8)
        return EncodedRows(self.name, values.shape, values.dtype, (squeezed,), {"kind": "exact"})

    def _decode_exact(self, encoded: EncodedRows, previous: np.ndarray) -> np.ndarray:
        raw = zlib.decompress(np.asarray(encoded.buffers[0], dtype=np.uint8).tobytes())
        xor = np.frombuffer(raw, dtype=np.dtype(f"u{encoded.dtype.itemsize}")).reshape(encoded.shape)
        prev = np.ascontiguousarray(previous, dtype=encoded.dtype)
        return (xor ^ _bits_view(prev)).view(encoded.dtype)

    def encode(self, rows_values: np.ndarray, previous: np.ndarray | None) -> EncodedRows:
        enc = super().encode(rows_values, previous)
        if enc.meta.get("kind") in ("raw", "exact"):
            return enc
        packed, table = enc.buffers
        # Bucket 0 (no change) dominates a mostly quiet row: the packed indices compress well.
        squeezed = np.frombuffer(zlib.compress(packed.tobytes(), 6), dtype=np.uint8)
        return EncodedRows(self.name, enc.shape, enc.dtype, (squeezed, table), {**enc.meta, "kind": "lc"})

    def _index(self, encoded: EncodedRows) -> np.ndarray:
        packed = np.frombuffer(zlib.decompress(np.asarray(encoded.buffers[0], dtype=np.uint8).tobytes()), dtype=np.uint8)
        n = int(np.prod(encoded.shape))
        return self._unpack(packed, n, int(encoded.meta["bits"])).reshape(encoded.shape)


CODECS: dict[str, type[Codec]] = {cls.name: cls for cls in (RawCodec, DeltaCodec, QuantizedCodec, LCCodec)}


def make_codec(codec: str | Codec | None = None, **params: Any) -> Codec:
    """A codec by name (``None``: raw), built with ``params`` (e.g. ``bits`` of ``quantized``);
    a :class:`Codec` instance is returned as is.

    Raises ValueError naming an unknown codec and the known ones.
    """
    if codec is None:
        return RawCodec()
    if isinstance(codec, Codec):
        return codec
    if codec not in CODECS:
        raise ValueError(f"unknown checkpoint codec {codec!r}; expected one of {sorted(CODECS)}")
    return CODECS[codec](**params)
