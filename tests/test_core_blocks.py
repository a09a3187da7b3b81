"""Tests of parameter blocks and their placement on server nodes (scar.core.blocks)."""

from __future__ import annotations

import numpy as np
import pytest

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
