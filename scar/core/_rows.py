"""Row kernels of the checkpoint path: per-row change norms and row copies at memory speed.

Private to :mod:`scar.core.blocks` and :mod:`scar.checkpoint`. Every kernel works on row ranges
and never makes a model-sized temporary; per-row results do not depend on how rows are split
into chunks or threads, so chunking and threading never change a result.

- float64 and integer (and any non-float32) arrays: per chunk of rows, exactly the historical
  ``d = float64(a) - float64(b); einsum("ij,ij->i", d, d)`` (bit-identical: the float64 models
  and LDA's integer counts select the same blocks as before).
- float32 arrays: a compiled kernel (numba) takes the difference in float32 and sums the squares
  in float64. Its summation order is the compiler's vectorisation for this CPU, so the last bits
  may differ from the float64 formula and between CPUs with different vector widths.
  Without numba, the same float32-difference, float64-sum is done in numpy chunks.

Threads: float32 norms and row copies of large arrays may be split over
:func:`set_num_threads` threads (default 1, so that parallel workflow jobs do not oversubscribe
the cores); the float64 formula always runs on the calling thread (numpy's einsum holds the GIL).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["copy_rows", "gather_rows", "get_num_threads", "row_sq_distances", "set_num_threads"]

# Rows per chunk of the float64 formula: about 1 MiB of float64 differences, which stays in L2.
_CHUNK_BYTES = 1 << 20
# Arrays smaller than this are never split over threads (thread hand-off costs more).
_THREAD_MIN_BYTES = 8 << 20

_num_threads = 1
_pool: ThreadPoolExecutor | None = None


def set_num_threads(n: int) -> None:
    """Threads for float32 change norms and row copies of large arrays (``n >= 1``)."""
    global _num_threads, _pool
    if int(n) != n or n < 1:
        raise ValueError(f"number of threads must be a positive integer, got {n!r}")
    if int(n) != _num_threads and _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None
    _num_threads = int(n)


def get_num_threads() -> int:
    """The current thread count of :func:`set_num_threads`."""
    return _num_threads


def _split(n_rows: int, nbytes: int) -> list[tuple[int, int]]:
    k = _num_threads if nbytes >= _THREAD_MIN_BYTES else 1
    k = max(1, min(k, n_rows))
    bounds = np.linspace(0, n_rows, k + 1).astype(np.int64)
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _run_split(fn: Callable[[int, int], None], parts: list[tuple[int, int]]) -> None:
    global _pool
    if len(parts) == 1:
        fn(*parts[0])
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_num_threads - 1, thread_name_prefix="scar-rows")
    futures = [_pool.submit(fn, lo, hi) for lo, hi in parts[1:]]
    try:
        fn(*parts[0])
    finally:
        for f in futures:
            f.result()


# -- numba kernels (compiled on first use, cached on disk) ------------------------------

_kernels: dict[str, Callable] | None = None


def _numba_kernels() -> dict[str, Callable] | None:
    """The compiled kernels, or None where numba is not importable."""
    global _kernels
    if _kernels is None:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency
            _kernels = {}
            return None

        # reassoc only: lets the float64 sum vectorise; NaN and inf propagate as usual.
        @numba.njit(nogil=True, cache=True, fastmath={"reassoc"})
        def sq_dist_f32(a, b, out):  # pragma: no cover - compiled
            n, w = a.shape
            for i in range(n):
                acc = 0.0
                for j in range(w):
                    d = np.float64(a[i, j] - b[i, j])
                    acc += d * d
                out[i] = acc

        @numba.njit(nogil=True, cache=True)
        def copy_rows_kernel(src, idx, dst):  # pragma: no cover - compiled
            w = src.shape[1]
            for k in range(idx.shape[0]):
                i = idx[k]
                for j in range(w):
                    dst[i, j] = src[i, j]

        _kernels = {"sq_dist_f32": sq_dist_f32, "copy_rows": copy_rows_kernel}
    return _kernels or None


# -- change norms -----------------------------------------------------------------------


def row_sq_distances(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[i] = ||a[i] - b[i]||^2`` for 2D arrays ``a``, ``b`` of one shape; returns ``out``.

    ``out`` is a float64 array of shape ``(n_rows,)``. See the module docstring for the
    arithmetic per dtype; no temporary larger than about 1 MiB (per thread) is made.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"row distances need two 2D arrays of one shape, got {a.shape} and {b.shape}")
    n, w = a.shape
    if n == 0:
        return out
    if a.dtype == np.float32 and b.dtype == np.float32:
        kernels = _numba_kernels()
        if kernels is not None:
            kernel = kernels["sq_dist_f32"]
            _run_split(lambda lo, hi: kernel(a[lo:hi], b[lo:hi], out[lo:hi]), _split(n, a.nbytes))
            return out
        _chunked(a, b, out, float32_difference=True)
        return out
    if not (a.flags.c_contiguous and b.flags.c_contiguous):
        # A chunk is C-ordered whatever the input; the historical formula on a non-C-ordered
        # difference may sum in another order, so keep it exactly here (rare: models are C-ordered).
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        np.einsum("ij,ij->i", d, d, out=out)
        return out
    _chunked(a, b, out, float32_difference=False)
    return out


def _chunked(a: np.ndarray, b: np.ndarray, out: np.ndarray, *, float32_difference: bool) -> None:
    n, w = a.shape
    rows = max(1, _CHUNK_BYTES // max(1, 8 * w))
    buf = np.empty((min(rows, n), w), dtype=np.float64)
    tmp = np.empty((min(rows, n), w), dtype=np.float32) if float32_difference else None
    for s in range(0, n, rows):
        e = min(s + rows, n)
        d = buf[: e - s]
        if tmp is not None:
            np.subtract(a[s:e], b[s:e], out=tmp[: e - s])
            np.copyto(d, tmp[: e - s])
        else:
            # float64(a) - float64(b), exactly: the casts are exact, so is the difference's rounding.
            np.subtract(a[s:e], b[s:e], out=d, dtype=np.float64, casting="unsafe")
        np.einsum("ij,ij->i", d, d, out=out[s:e])


# -- row copies -------------------------------------------------------------------------


def gather_rows(src: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[:len(idx)] = src[idx]`` (rows), into the preallocated ``out``; returns that view.

    ``idx`` must be valid row indices (not checked here).
    """
    m = idx.shape[0]
    view = out[:m]
    # mode="clip": with mode="raise" numpy buffers `out` (an extra copy); idx is valid anyway.
    np.take(src, idx, axis=0, out=view, mode="clip")
    return view


def copy_rows(src: np.ndarray, idx: np.ndarray, dst: np.ndarray) -> None:
    """``dst[idx] = src[idx]`` (rows) in one pass, without a temporary.

    ``src`` and ``dst`` are 2D of one shape; ``idx`` valid int64 row indices.
    """
    if idx.shape[0] == 0:
        return
    kernels = _numba_kernels()
    if kernels is not None and src.dtype == dst.dtype and src.dtype.kind in "biuf" and dst.flags.writeable:
        kernel = kernels["copy_rows"]
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        nbytes = idx.shape[0] * src.shape[1] * src.dtype.itemsize
        _run_split(lambda lo, hi: kernel(src, idx[lo:hi], dst), _split(idx.shape[0], nbytes))
        return
    dst[idx] = src[idx]


def reused_buffer(cache: dict[str, np.ndarray], name: str, like: np.ndarray, n: int) -> np.ndarray:
    """A buffer of at least ``n`` rows shaped and typed like ``like``'s, kept in ``cache`` under
    ``name`` and reused across saves (grown, never shrunk), so a gather allocates nothing."""
    buf = cache.get(name)
    if buf is None or buf.shape[0] < n or buf.shape[1:] != like.shape[1:] or buf.dtype != like.dtype:
        buf = np.empty((n, *like.shape[1:]), dtype=like.dtype)
        cache[name] = buf
    return buf
