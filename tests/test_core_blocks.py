"""Tests of parameter blocks and their placement on server nodes (scar.core.blocks)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scar.core import _rows
from scar.core.blocks import BlockLayout, assign_blocks, params_distance


def _arrays() -> dict[str, np.ndarray]:
    """Two arrays of different widths: 3 rows of width 4, then 5 rows of width 2."""
    rng = np.random.default_rng(0)
    return {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal((5, 2))}


def test_layout_from_arrays_counts_and_offsets():
    layout = BlockLayout.from_arrays(_arrays())
    assert layout.names == ("a", "b")
    assert layout.n_rows == (3, 5)
    assert layout.widths == (4, 2)
    assert layout.n_blocks == 8
    assert layout.n_params == 3 * 4 + 5 * 2
    np.testing.assert_array_equal(layout.offsets, [0, 3])
    np.testing.assert_array_equal(layout.block_sizes, [4, 4, 4, 2, 2, 2, 2, 2])
    assert int(layout.block_sizes.sum()) == layout.n_params


def test_layout_keeps_mapping_order():
    arrays = _arrays()
    layout = BlockLayout.from_arrays({"b": arrays["b"], "a": arrays["a"]})
    assert layout.names == ("b", "a")
    np.testing.assert_array_equal(layout.offsets, [0, 5])
    np.testing.assert_array_equal(layout.block_sizes, [2] * 5 + [4] * 3)


def test_layout_rejects_non_2d_arrays():
    with pytest.raises(ValueError, match="'v'.*2D"):
        BlockLayout.from_arrays({"v": np.zeros(4)})


def test_rows_of_splits_global_mask_per_array():
    layout = BlockLayout.from_arrays(_arrays())
    mask = np.zeros(8, dtype=bool)
    mask[[0, 2, 3, 7]] = True  # rows 0, 2 of a; rows 0, 4 of b
    rows = layout.rows_of(mask)
    assert set(rows) == {"a", "b"}
    np.testing.assert_array_equal(rows["a"], [0, 2])
    np.testing.assert_array_equal(rows["b"], [0, 4])
    empty = layout.rows_of(np.zeros(8, dtype=bool))
    assert empty["a"].size == 0 and empty["b"].size == 0


def test_rows_of_rejects_wrong_length():
    layout = BlockLayout.from_arrays(_arrays())
    with pytest.raises(ValueError, match=r"\(8,\)"):
        layout.rows_of(np.ones(7, dtype=bool))


def test_row_masks_splits_global_mask_per_array():
    layout = BlockLayout.from_arrays(_arrays())
    mask = np.array([1, 0, 1, 0, 0, 1, 0, 1], dtype=bool)
    masks = layout.row_masks(mask)
    np.testing.assert_array_equal(masks["a"], [True, False, True])
    np.testing.assert_array_equal(masks["b"], [False, False, True, False, True])
    assert masks["a"].dtype == bool and masks["b"].dtype == bool


def test_block_distances_are_per_row_norms():
    a = _arrays()
    b = {n: v.copy() for n, v in a.items()}
    b["a"][1] += np.array([3.0, 0.0, 4.0, 0.0])  # norm 5
    b["b"][4] += np.array([0.0, -2.0])  # norm 2
    layout = BlockLayout.from_arrays(a)
    d = layout.block_distances(a, b)
    assert d.shape == (8,)
    np.testing.assert_allclose(d, [0, 5, 0, 0, 0, 0, 0, 2], atol=1e-12)
    # Symmetric, and zero against itself.
    np.testing.assert_allclose(layout.block_distances(b, a), d)
    assert np.all(layout.block_distances(a, a) == 0)


def test_block_distances_agree_with_params_distance():
    rng = np.random.default_rng(1)
    a = _arrays()
    b = {n: v + rng.standard_normal(v.shape) for n, v in a.items()}
    layout = BlockLayout.from_arrays(a)
    per_block = layout.block_distances(a, b)
    total = params_distance(a, b, layout.names)
    assert total == pytest.approx(float(np.sqrt(np.sum(per_block**2))), rel=1e-12)
    assert params_distance(a, b, ("a",)) == pytest.approx(float(np.linalg.norm(a["a"] - b["a"])), rel=1e-12)


@pytest.mark.parametrize("n_blocks, n_nodes", [(16, 8), (17, 8), (8, 8), (100, 7), (5, 1)])
def test_round_robin_placement(n_blocks, n_nodes):
    nodes = assign_blocks(n_blocks, n_nodes, "round_robin")
    np.testing.assert_array_equal(nodes, np.arange(n_blocks) % n_nodes)
    loads = np.bincount(nodes, minlength=n_nodes)
    assert loads.max() - loads.min() <= 1


@pytest.mark.parametrize("n_blocks, n_nodes", [(16, 8), (17, 8), (8, 8), (100, 7), (31, 4)])
def test_hashed_placement_is_balanced_and_seeded(n_blocks, n_nodes):
    nodes = assign_blocks(n_blocks, n_nodes, "hashed", seed=3)
    assert nodes.shape == (n_blocks,)
    assert nodes.min() >= 0 and nodes.max() < n_nodes
    loads = np.bincount(nodes, minlength=n_nodes)
    assert loads.max() - loads.min() <= 1
    np.testing.assert_array_equal(nodes, assign_blocks(n_blocks, n_nodes, "hashed", seed=3))


def test_hashed_placement_depends_on_seed_and_differs_from_round_robin():
    placements = {tuple(assign_blocks(64, 8, "hashed", seed=s)) for s in range(5)}
    assert len(placements) == 5
    assert tuple(assign_blocks(64, 8, "round_robin")) not in placements


def test_assign_blocks_errors():
    with pytest.raises(ValueError, match="n_nodes"):
        assign_blocks(8, 0)
    with pytest.raises(ValueError, match="n_nodes"):
        assign_blocks(8, -2, "hashed")
    with pytest.raises(ValueError, match="3 blocks.*4 server nodes"):
        assign_blocks(3, 4)
    with pytest.raises(ValueError, match="unknown placement scheme 'modulo'"):
        assign_blocks(8, 2, "modulo")  # type: ignore[arg-type]


def test_row_masks_rejects_a_mask_of_the_wrong_length():
    layout = BlockLayout.from_arrays({"a": np.zeros((3, 2)), "b": np.zeros((2, 5))})
    with pytest.raises(ValueError, match=r"\(5,\)"):
        layout.row_masks(np.ones(4, dtype=bool))


# -- change norms: chunked, without model-sized copies, bit-identical for float64 and integers --


def _historical_block_distances(layout, a, b):
    """block_distances as first written: whole-array float64 copies, one einsum."""
    return np.concatenate(
        [
            np.sqrt(np.einsum("ij,ij->i", d, d))
            for d in (np.asarray(a[n], dtype=np.float64) - np.asarray(b[n], dtype=np.float64) for n in layout.names)
        ]
    )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shapes=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 70)), min_size=1, max_size=3),
    dtype=st.sampled_from(["float64", "int64", "int32", "uint8", "float16", "bool"]),
    chunk_bytes=st.sampled_from([8, 64, 1000, 1 << 20]),
)
def test_block_distances_bit_identical_to_the_whole_array_formula(seed, shapes, dtype, chunk_bytes):
    rng = np.random.default_rng(seed)

    def draw(shape):
        if dtype == "float64":
            return rng.standard_normal(shape) * 10.0 ** rng.integers(-8, 8)
        if dtype == "float16":
            return (rng.standard_normal(shape) * 100).astype(dtype)
        if dtype == "bool":
            return rng.random(shape) < 0.5
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)

    a = {f"p{i}": draw(s) for i, s in enumerate(shapes)}
    b = {n: draw(v.shape) for n, v in a.items()}
    layout = BlockLayout.from_arrays(a)
    old_chunk = _rows._CHUNK_BYTES
    _rows._CHUNK_BYTES = chunk_bytes  # many chunks, ragged last chunk
    try:
        got = layout.block_distances(a, b)
    finally:
        _rows._CHUNK_BYTES = old_chunk
    want = _historical_block_distances(layout, a, b)
    assert got.dtype == np.float64
    assert got.tobytes() == want.tobytes()


def test_block_distances_of_non_contiguous_arrays_keep_the_formula():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((50, 42))
    a = {"w": base[::2, ::3], "f": np.asfortranarray(rng.standard_normal((20, 9)))}
    b = {"w": base[1::2, 1::3], "f": rng.standard_normal((20, 9))}
    layout = BlockLayout.from_arrays(a)
    assert layout.block_distances(a, b).tobytes() == _historical_block_distances(layout, a, b).tobytes()


@pytest.mark.parametrize("threads", [1, 3])
def test_float32_block_distances_sum_in_float64(threads, monkeypatch):
    rng = np.random.default_rng(4)
    a = {"w": rng.standard_normal((257, 1031)).astype(np.float32)}
    b = {"w": (a["w"] + rng.standard_normal((257, 1031)).astype(np.float32) * 1e-3).astype(np.float32)}
    layout = BlockLayout.from_arrays(a)
    monkeypatch.setattr(_rows, "_THREAD_MIN_BYTES", 0)
    _rows.set_num_threads(threads)
    try:
        got = layout.block_distances(a, b)
    finally:
        _rows.set_num_threads(1)
    want = _historical_block_distances(layout, a, b)
    # The float32 difference rounds once (relative 6e-8); a float32 sum would be far worse here.
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # Threads split rows, never a row: the same bits whatever the split.
    assert got.tobytes() == layout.block_distances(a, b).tobytes()
    # The numpy fallback (no numba) does the same arithmetic up to summation order.
    out = np.empty(257)
    _rows._chunked(a["w"], b["w"], out, float32_difference=True)
    np.testing.assert_allclose(np.sqrt(out), want, rtol=1e-6)


def test_float32_nan_and_inf_propagate():
    a = {"w": np.array([[1.0, np.nan], [np.inf, 0.0], [1.0, 2.0]], dtype=np.float32)}
    b = {"w": np.zeros((3, 2), dtype=np.float32)}
    d = BlockLayout.from_arrays(a).block_distances(a, b)
    assert np.isnan(d[0]) and np.isinf(d[1]) and d[2] == pytest.approx(np.sqrt(5.0))


def test_set_num_threads_rejects_non_positive():
    with pytest.raises(ValueError, match="threads"):
        _rows.set_num_threads(0)
    assert _rows.get_num_threads() == 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.complex128])
@pytest.mark.parametrize("threads", [1, 2])
def test_copy_rows_and_gather_rows(dtype, threads, monkeypatch):
    rng = np.random.default_rng(5)
    src = (rng.standard_normal((40, 6)) * 100).astype(dtype)
    dst = np.zeros_like(src)
    idx = np.array([0, 3, 4, 17, 39], dtype=np.int64)
    monkeypatch.setattr(_rows, "_THREAD_MIN_BYTES", 0)
    _rows.set_num_threads(threads)
    try:
        _rows.copy_rows(src, idx, dst)
        _rows.copy_rows(src, idx[:0], dst)
    finally:
        _rows.set_num_threads(1)
    want = np.zeros_like(src)
    want[idx] = src[idx]
    np.testing.assert_array_equal(dst, want)
    buf = np.full((8, 6), 7, dtype=dtype)
    view = _rows.gather_rows(src, idx, buf)
    np.testing.assert_array_equal(view, src[idx])
    assert np.shares_memory(view, buf) and view.shape == (5, 6)
    # Non-contiguous source rows (a column slice) copy too.
    dst2 = np.zeros((40, 3), dtype=dtype)
    _rows.copy_rows(src[:, ::2], idx, dst2)
    np.testing.assert_array_equal(dst2[idx], src[idx][:, ::2])
