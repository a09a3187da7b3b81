"""Tests of recovery policies (scar.core.recovery)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scar.checkpoint.stores import Checkpoint
from scar.core.blocks import BlockLayout, assign_blocks
from scar.core.failures import Failure
from scar.core.recovery import RECOVERY_POLICIES, recover, restored_rows


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    current = {"a": rng.standard_normal((6, 3)), "b": rng.standard_normal((4, 5)).astype(np.float32)}
    checkpoint = Checkpoint(
        values={n: (v + rng.standard_normal(v.shape)).astype(v.dtype) for n, v in current.items()},
        saved_at={n: rng.integers(0, 10, size=v.shape[0]) for n, v in current.items()},
    )
    return current, checkpoint


def _copy(x):
    return {n: v.copy() for n, v in x.items()}


def test_full_recovery_restores_every_block_bitwise():
    current, ckpt = _case()
    lost = {"a": np.zeros(6, dtype=bool), "b": np.zeros(4, dtype=bool)}
    lost["a"][2] = True
    out = recover("full", current, ckpt.values, lost)
    assert set(out) == set(current)
    for n in current:
        assert out[n].dtype == ckpt.values[n].dtype
        assert out[n].tobytes() == ckpt.values[n].tobytes()
        assert out[n] is not ckpt.values[n]
    # The result does not alias the checkpoint: editing it leaves the checkpoint as it was.
    before = _copy(ckpt.values)
    out["a"] += 1.0
    np.testing.assert_array_equal(ckpt.values["a"], before["a"])


def test_partial_recovery_on_a_node_failure():
    current, ckpt = _case(1)
    layout = BlockLayout.from_arrays(current)
    nodes = assign_blocks(layout.n_blocks, 4, "round_robin")
    lost_mask = Failure(7, (1, 2)).lost_blocks(nodes)
    lost = layout.row_masks(lost_mask)
    out = recover("partial", current, ckpt.values, lost)
    for n in current:
        for i in range(current[n].shape[0]):
            expected = ckpt.values[n][i] if lost[n][i] else current[n][i]
            assert out[n][i].tobytes() == expected.tobytes()


@pytest.mark.parametrize("policy", RECOVERY_POLICIES)
def test_recover_does_not_modify_inputs(policy):
    current, ckpt = _case(2)
    lost = {"a": np.array([1, 0, 1, 0, 0, 1], dtype=bool), "b": np.array([0, 1, 0, 0], dtype=bool)}
    before_cur, before_ck, before_at = _copy(current), _copy(ckpt.values), _copy(ckpt.saved_at)
    out = recover(policy, current, ckpt.values, lost)
    for n in current:
        assert out[n] is not current[n]
        out[n][...] = 0  # nor is the result a view of them
        np.testing.assert_array_equal(current[n], before_cur[n])
        np.testing.assert_array_equal(ckpt.values[n], before_ck[n])
        np.testing.assert_array_equal(ckpt.saved_at[n], before_at[n])


@settings(max_examples=100, deadline=None)
@given(
    mask_a=hnp.arrays(bool, 6),
    mask_b=hnp.arrays(bool, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_partial_recovery_property(mask_a, mask_b, seed):
    """Surviving blocks stay bitwise equal to current; lost blocks take their checkpoint value."""
    current, ckpt = _case(seed)
    # Garbage (including NaN) in the lost rows of current must not leak into the result.
    for n, m in (("a", mask_a), ("b", mask_b)):
        current[n][m] = np.nan
    lost = {"a": mask_a, "b": mask_b}
    before = _copy(current)
    out = recover("partial", current, ckpt.values, lost)
    for n, m in lost.items():
        assert out[n].shape == current[n].shape and out[n].dtype == current[n].dtype
        assert out[n][~m].tobytes() == current[n][~m].tobytes()
        assert out[n][m].tobytes() == ckpt.values[n][m].tobytes()
        assert not np.isnan(out[n]).any()
        assert current[n].tobytes() == before[n].tobytes()


def test_partial_recovery_with_nothing_lost_is_current_and_all_lost_is_full():
    current, ckpt = _case(3)
    none = {n: np.zeros(v.shape[0], dtype=bool) for n, v in current.items()}
    every = {n: np.ones(v.shape[0], dtype=bool) for n, v in current.items()}
    out = recover("partial", current, ckpt.values, none)
    full = recover("full", current, ckpt.values, none)
    for n in current:
        assert out[n].tobytes() == current[n].tobytes()
    out = recover("partial", current, ckpt.values, every)
    for n in current:
        assert out[n].tobytes() == full[n].tobytes()


def test_unknown_recovery_policy_is_named():
    current, ckpt = _case()
    lost = {n: np.zeros(v.shape[0], dtype=bool) for n, v in current.items()}
    with pytest.raises(ValueError, match="unknown recovery policy 'rollback'"):
        recover("rollback", current, ckpt.values, lost)  # type: ignore[arg-type]


def test_restored_rows_are_all_rows_for_full_and_the_lost_ones_for_partial():
    lost = {"a": np.array([True, False, False]), "b": np.array([False, True])}
    full = restored_rows("full", lost)
    assert all(m.all() and m.shape == lost[n].shape for n, m in full.items())
    partial = restored_rows("partial", lost)
    assert all(np.array_equal(partial[n], lost[n]) for n in lost)
    with pytest.raises(ValueError, match="unknown recovery policy 'rollback'"):
        restored_rows("rollback", lost)  # type: ignore[arg-type]
