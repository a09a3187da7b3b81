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

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = ["CODECS", "Codec", "EncodedRows", "RawCodec", "make_codec"]


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

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


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


CODECS: dict[str, type[Codec]] = {cls.name: cls for cls in (RawCodec,)}


def make_codec(codec: str | Codec | None = None) -> Codec:
    """A codec by name (``None``: raw); a :class:`Codec` instance is returned as is.

    Raises ValueError naming an unknown codec and the known ones.
    """
    if codec is None:
        return RawCodec()
    if isinstance(codec, Codec):
        return codec
    if codec not in CODECS:
        raise ValueError(f"unknown checkpoint codec {codec!r}; expected one of {sorted(CODECS)}")
    return CODECS[codec]()
