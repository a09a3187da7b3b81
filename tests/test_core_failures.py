"""Tests of the failure model (scar.core.failures)."""

from __future__ import annotations

import numpy as np
import pytest

from scar.core.blocks import assign_blocks
from scar.core.failures import Failure, n_failed_nodes, sample_failed_nodes


@pytest.mark.parametrize(
    "n_nodes, fraction, expected",
    [
        (8, 1 / 8, 1),
        (8, 1 / 4, 2),
        (8, 1 / 2, 4),
        (8, 1.0, 8),
        (8, 0.01, 1),  # rounds to 0: at least one node fails
        (10, 0.26, 3),  # 2.6 rounds up
        (10, 0.24, 2),  # 2.4 rounds down
        (3, 0.9, 3),
        (1, 0.5, 1),
    ],
)
def test_n_failed_nodes_rounds_with_at_least_one(n_nodes, fraction, expected):
    assert n_failed_nodes(n_nodes, fraction) == expected


@pytest.mark.parametrize("fraction", [0.0, -0.25, 1.0001, 2.0, float("nan")])
def test_n_failed_nodes_rejects_fraction_outside_unit_interval(fraction):
    with pytest.raises(ValueError, match="fraction"):
        n_failed_nodes(8, fraction)


@pytest.mark.parametrize("n_nodes, fraction", [(8, 1 / 8), (8, 1 / 4), (8, 1 / 2), (8, 1.0), (13, 0.3)])
def test_sample_failed_nodes_count_unique_sorted_in_range(n_nodes, fraction):
    rng = np.random.default_rng(0)
    k = n_failed_nodes(n_nodes, fraction)
    for _ in range(50):
        nodes = sample_failed_nodes(n_nodes, fraction, rng)
        assert isinstance(nodes, tuple) and all(type(i) is int for i in nodes)
        assert len(nodes) == k
        assert len(set(nodes)) == k
        assert list(nodes) == sorted(nodes)
        assert all(0 <= i < n_nodes for i in nodes)


def test_sample_failed_nodes_seeded_and_varies():
    a = [sample_failed_nodes(8, 0.25, np.random.default_rng(s)) for s in range(20)]
    b = [sample_failed_nodes(8, 0.25, np.random.default_rng(s)) for s in range(20)]
    assert a == b
    assert len(set(a)) > 5  # not the same pair every time
    # Over many draws every node fails sometimes (uniform choice).
    rng = np.random.default_rng(1)
    seen = {i for _ in range(200) for i in sample_failed_nodes(8, 1 / 8, rng)}
    assert seen == set(range(8))


def test_full_failure_loses_every_node():
    assert sample_failed_nodes(6, 1.0, np.random.default_rng(0)) == tuple(range(6))


def test_lost_blocks_round_robin():
    nodes = assign_blocks(16, 8, "round_robin")
    failure = Failure(iteration=5, failed_nodes=(1, 6))
    lost = failure.lost_blocks(nodes)
    assert lost.dtype == bool and lost.shape == (16,)
    np.testing.assert_array_equal(np.flatnonzero(lost), [1, 6, 9, 14])


def test_lost_blocks_hashed_matches_placement():
    nodes = assign_blocks(40, 8, "hashed", seed=7)
    failure = Failure(iteration=3, failed_nodes=(0, 3, 5))
    lost = failure.lost_blocks(nodes)
    np.testing.assert_array_equal(lost, np.isin(nodes, [0, 3, 5]))
    assert lost.sum() == 15  # balanced placement: 5 blocks per node


def test_lost_blocks_no_nodes_and_all_nodes():
    nodes = assign_blocks(12, 4)
    assert not Failure(1, ()).lost_blocks(nodes).any()
    assert Failure(1, (0, 1, 2, 3)).lost_blocks(nodes).all()


def test_n_failed_nodes_rounds_halves_up_and_checks_nodes():
    assert n_failed_nodes(5, 0.5) == 3
    assert n_failed_nodes(3, 0.5) == 2
    with pytest.raises(ValueError, match="n_nodes"):
        n_failed_nodes(0, 0.5)
