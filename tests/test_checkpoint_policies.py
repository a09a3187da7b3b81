"""Tests of the checkpoint policies (scar.checkpoint.policies), run through a Checkpointer where a
run is needed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import POLICY_NAMES, checkpoint_runs, greedy_fill, random_walk
from scar.checkpoint.checkpointer import Checkpointer
from scar.checkpoint.policies import (
    CHECKPOINT_POLICIES,
    FullCheckpoint,
    PriorityCheckpoint,
    RandomCheckpoint,
    RoundRobinCheckpoint,
    make_checkpoint_policy,
)
from scar.checkpoint.stores import Checkpoint, InMemoryStore
from scar.core.blocks import BlockLayout


class RecordingStore(InMemoryStore):
    """An in-memory store that also logs every write (iteration, rows, bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[int, dict[str, np.ndarray] | None, int]] = []

    def write(self, iteration, arrays, rows=None, **kwargs):
        n = super().write(iteration, arrays, rows, **kwargs)
        logged_rows = None if rows is None else {k: np.array(v, copy=True) for k, v in rows.items()}
        self.log.append((iteration, logged_rows, n))
        return n


def _image(values: dict[str, np.ndarray], saved_at: dict[str, np.ndarray] | None = None) -> Checkpoint:
    if saved_at is None:
        saved_at = {n: np.zeros(v.shape[0], dtype=np.int64) for n, v in values.items()}
    return Checkpoint(values={n: v.copy() for n, v in values.items()}, saved_at=saved_at)


# --------------------------------------------------------------------------------------------
# The I/O budget, as a property over random layouts, schedules and trajectories.


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoint_runs(max_rows=8, dtypes=[np.float64, np.float32], max_every=4, max_iters=40))
def test_policy_never_exceeds_io_budget_and_image_matches_reference(scenario):
    shapes, dtype, r, C, n_iters, name, seed = scenario
    traj = random_walk(shapes, dtype, n_iters, seed)
    layout = BlockLayout.from_arrays(traj[0])
    d = layout.n_params
    itemsize = np.dtype(dtype).itemsize
    policy = make_checkpoint_policy(name, C, r, seed=seed % 1000)
    store = RecordingStore()
    ckpt = Checkpointer(policy, store)
    ckpt.start(traj[0])
    assert store.bytes_written == itemsize * d  # the initial full save
    reference = _image(traj[0])
    per_save_params = policy.fraction * d  # r * d (full: r is 1)
    for k in range(1, n_iters + 1):
        before = store.bytes_written
        saved = ckpt.after_iteration(k, traj[k])
        written = store.bytes_written - before
        assert saved == policy.is_due(k)
        if not saved:
            assert written == 0
        else:
            assert written <= itemsize * per_save_params + 1e-9
            iteration, rows, _ = store.log[-1]
            assert iteration == k
            if rows is None:  # every block selected: written as a full record
                rows = {n: np.arange(a.shape[0]) for n, a in traj[k].items()}
            for n, idx in rows.items():
                reference.values[n][idx] = traj[k][n][idx]
                reference.saved_at[n][idx] = k
        total = store.bytes_written
        # On average d parameters per C iterations, never ahead of that schedule:
        # total <= itemsize * d * (1 + k / C), compared exactly in integers.
        assert total * C <= itemsize * d * (C + k)
        if k % C == 0:
            # At the end of each interval, the budget in the brief's form holds exactly.
            assert total <= itemsize * d * (1 + k // C)
    # The in-memory image is exactly what a hand replay of the writes gives, and what the store holds.
    stored = store.read()
    for n in layout.names:
        np.testing.assert_array_equal(ckpt.image.values[n], reference.values[n])
        np.testing.assert_array_equal(ckpt.image.saved_at[n], reference.saved_at[n])
        np.testing.assert_array_equal(stored.values[n], reference.values[n])
        np.testing.assert_array_equal(stored.saved_at[n], reference.saved_at[n])
    assert ckpt.bytes_written == store.bytes_written


def test_budget_in_floor_form_does_not_hold_between_full_intervals():
    """Documents why the property above uses k / C (not floor(k / C)) between interval ends:
    with r = 1/2 and C = 4, the saves at 2, 4, 6 write 1.5 d by iteration 6, which is within
    d per C on average but above floor(6 / 4) * d."""
    x = {"w": np.arange(8.0).reshape(4, 2)}
    ckpt = Checkpointer(make_checkpoint_policy("round_robin", 4, 0.5))
    ckpt.start(x)
    for k in range(1, 7):
        ckpt.after_iteration(k, x)
    itemsize, d = 8, 8
    assert ckpt.bytes_written == itemsize * d * 2.5
    assert ckpt.bytes_written * 4 <= itemsize * d * (4 + 6)


# --------------------------------------------------------------------------------------------
# Priority


def _equal_width_case():
    """8 blocks of width 2; current - saved has a known norm per block."""
    saved = {"w": np.zeros((8, 2))}
    change = np.array([1.0, 5.0, 2.0, 7.0, 0.0, 3.0, 6.0, 4.0])
    current = {"w": np.stack([change * 0.6, change * 0.8], axis=1)}  # row norm = change
    return saved, current, change


@pytest.mark.parametrize("r, expected", [(0.125, [3]), (0.25, [3, 6]), (0.5, [1, 3, 6, 7]), (1.0, list(range(8)))])
def test_priority_picks_largest_changes(r, expected):
    saved, current, _ = _equal_width_case()
    layout = BlockLayout.from_arrays(current)
    policy = PriorityCheckpoint(8, r)
    mask = policy.select(8, layout, current, _image(saved))
    np.testing.assert_array_equal(np.flatnonzero(mask), expected)


def test_priority_change_is_measured_against_the_saved_value_not_zero():
    # Block 0 is far from 0 but equal to its saved value; block 1 moved a little.
    saved = {"w": np.array([[100.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])}
    current = {"w": saved["w"].copy()}
    current["w"][1] += 0.5
    current["w"][3] -= 0.1
    layout = BlockLayout.from_arrays(current)
    mask = PriorityCheckpoint(4, 0.25).select(4, layout, current, _image(saved))
    np.testing.assert_array_equal(np.flatnonzero(mask), [1])
    mask = PriorityCheckpoint(4, 0.5).select(4, layout, current, _image(saved))
    np.testing.assert_array_equal(np.flatnonzero(mask), [1, 3])


def test_priority_ties_go_to_the_oldest_save_then_lowest_id():
    saved = {"w": np.zeros((8, 1))}
    current = {"w": np.array([[1.0], [3.0], [3.0], [3.0], [0.0], [3.0], [-3.0], [2.0]])}
    saved_at = {"w": np.array([0, 5, 2, 7, 0, 2, 1, 0], dtype=np.int64)}
    layout = BlockLayout.from_arrays(current)
    # Change 3 for blocks 1, 2, 3, 5, 6 with last saves 5, 2, 7, 2, 1.
    mask = PriorityCheckpoint(8, 0.25).select(8, layout, current, _image(saved, saved_at))
    np.testing.assert_array_equal(np.flatnonzero(mask), [2, 6])  # saved at 1, then 2 (lower id of 2, 5)
    mask = PriorityCheckpoint(8, 0.375).select(8, layout, current, _image(saved, saved_at))
    np.testing.assert_array_equal(np.flatnonzero(mask), [2, 5, 6])


def test_priority_through_checkpointer_resets_after_a_save():
    # 4 blocks of width 1; r = 1/4 -> one block per save; C = 4 -> a save every iteration.
    x = {"w": np.zeros((4, 1))}
    ckpt = Checkpointer(PriorityCheckpoint(4, 0.25))
    ckpt.start(x)
    picks = []
    moves = [
        {0: 10.0, 1: 5.0},  # 1: block 0 moved most
        {},  # 2: block 0 is saved; block 1 still 5 away from its save
        {0: 1.0, 2: 0.5},  # 3: block 0 moved 1 since its save, block 2 0.5
        {3: 0.25},  # 4: block 2 (0.5) beats block 3 (0.25)
    ]
    for k, move in enumerate(moves, start=1):
        for i, v in move.items():
            x["w"][i] += v
        before = ckpt.image.saved_at["w"].copy()
        assert ckpt.after_iteration(k, x)
        picks.append(int(np.flatnonzero(ckpt.image.saved_at["w"] != before)[0]))
    assert picks == [0, 1, 0, 2]
    np.testing.assert_array_equal(ckpt.image.saved_at["w"], [3, 2, 4, 0])
    np.testing.assert_array_equal(ckpt.image.values["w"][:, 0], [11.0, 5.0, 0.5, 0.0])


# --------------------------------------------------------------------------------------------
# Round robin and random


def test_round_robin_cycles_through_all_blocks():
    x = {"a": np.zeros((5, 2)), "b": np.zeros((3, 2))}  # 8 blocks of width 2
    layout = BlockLayout.from_arrays(x)
    policy = RoundRobinCheckpoint(8, 0.25)  # 2 blocks per save
    image = _image(x)
    picks = [tuple(np.flatnonzero(policy.select(k, layout, x, image))) for k in range(2, 20, 2)]
    assert picks[:5] == [(0, 1), (2, 3), (4, 5), (6, 7), (0, 1)]
    assert picks[4:] == picks[: len(picks) - 4]


def test_round_robin_covers_every_block_with_uneven_budget():
    x = {"w": np.zeros((7, 1))}  # 7 blocks of width 1
    layout = BlockLayout.from_arrays(x)
    policy = RoundRobinCheckpoint(4, 0.5)  # budget floor(3.5) = 3 blocks: the cycle wraps mid-save
    image = _image(x)
    seen = []
    for k in range(7):
        mask = policy.select(k, layout, x, image)
        assert mask.sum() == 3
        seen.extend(np.flatnonzero(mask).tolist())
    # 21 picks over 7 blocks: each block exactly 3 times.
    np.testing.assert_array_equal(np.bincount(seen, minlength=7), [3] * 7)


def test_round_robin_state_dict_round_trip():
    x = {"w": np.zeros((8, 3))}
    layout = BlockLayout.from_arrays(x)
    image = _image(x)
    a = RoundRobinCheckpoint(8, 0.25)
    for k in (2, 4, 6):
        a.select(k, layout, x, image)
    state = a.state_dict()
    assert state == {"next": 6}
    b = RoundRobinCheckpoint(8, 0.25)
    b.load_state_dict(state)
    for k in (8, 10, 12):
        np.testing.assert_array_equal(a.select(k, layout, x, image), b.select(k, layout, x, image))
    # A fresh policy starts over at block 0 instead.
    np.testing.assert_array_equal(np.flatnonzero(RoundRobinCheckpoint(8, 0.25).select(2, layout, x, image)), [0, 1])


def test_stateless_policies_have_empty_state():
    for cls in (FullCheckpoint, PriorityCheckpoint, RandomCheckpoint):
        p = cls(8, 0.5)
        assert p.state_dict() == {}
        p.load_state_dict({})


def test_random_is_seeded_by_iteration():
    x = {"w": np.zeros((16, 2))}
    layout = BlockLayout.from_arrays(x)
    image = _image(x)
    p = RandomCheckpoint(8, 0.25, seed=5)
    first = {k: p.select(k, layout, x, image) for k in (2, 4, 6, 8)}
    # Same k, same pick, whatever was called in between and on a new instance.
    q = RandomCheckpoint(8, 0.25, seed=5)
    for k in (8, 2, 6, 4):
        np.testing.assert_array_equal(q.select(k, layout, x, image), first[k])
        np.testing.assert_array_equal(p.select(k, layout, x, image), first[k])
    for m in first.values():
        assert m.sum() == 4  # r * 16 blocks of equal width
    assert len({tuple(np.flatnonzero(m)) for m in first.values()}) > 1  # varies with k
    other = RandomCheckpoint(8, 0.25, seed=6)
    assert any(not np.array_equal(other.select(k, layout, x, image), first[k]) for k in first)


def test_make_checkpoint_policy_builds_each_kind():
    assert set(CHECKPOINT_POLICIES) == set(POLICY_NAMES)
    for name in POLICY_NAMES:
        p = make_checkpoint_policy(name, 8, 0.25, seed=3)
        assert p.name == name and type(p) is CHECKPOINT_POLICIES[name]
    assert make_checkpoint_policy("random", 8, 0.25, seed=3).seed == 3
    full = make_checkpoint_policy("full", 8, 0.25)
    assert full.fraction == 1.0 and full.save_every == 8


# --------------------------------------------------------------------------------------------
# Validation and schedule


def test_make_checkpoint_policy_unknown_name():
    with pytest.raises(ValueError, match="unknown checkpoint policy 'lazy'"):
        make_checkpoint_policy("lazy", 8, 0.5)


@pytest.mark.parametrize("name", ["priority", "round_robin", "random"])
@pytest.mark.parametrize("C, r", [(6, 0.25), (3, 0.5), (4, 0.125), (10, 0.3333)])
def test_r_times_c_must_be_integral(name, C, r):
    with pytest.raises(ValueError, match=r"r \* C"):
        make_checkpoint_policy(name, C, r)


@pytest.mark.parametrize("r", [0.0, -0.5, 1.5])
def test_r_must_be_in_unit_interval(r):
    with pytest.raises(ValueError, match="fraction r"):
        make_checkpoint_policy("priority", 8, r)


@pytest.mark.parametrize("name", POLICY_NAMES)
@pytest.mark.parametrize("C", [0, -4, 2.5])
def test_c_must_be_a_positive_integer(name, C):
    with pytest.raises(ValueError, match="interval C"):
        make_checkpoint_policy(name, C, 0.5)


@pytest.mark.parametrize(
    "name, C, r, every",
    [("full", 8, 0.25, 8), ("priority", 8, 0.25, 2), ("round_robin", 8, 0.5, 4), ("random", 8, 0.125, 1),
     ("priority", 6, 1 / 3, 2), ("priority", 5, 1.0, 5)],
)  # fmt: skip
def test_is_due_schedule(name, C, r, every):
    p = make_checkpoint_policy(name, C, r)
    assert p.save_every == every
    assert not p.is_due(0)
    due = [k for k in range(0, 50) if p.is_due(k)]
    assert due == list(range(every, 50, every))
    # Full saves at multiples of C are always due.
    assert all(p.is_due(k) for k in range(C, 50, C))


@pytest.mark.parametrize("name", ["priority", "round_robin", "random"])
def test_a_block_wider_than_the_budget_is_an_error_not_a_stall(name):
    params = {"wide": np.zeros((1, 10)), "narrow": np.zeros((1, 1))}
    ckpt = Checkpointer(make_checkpoint_policy(name, 8, 0.125))
    ckpt.start(params)
    with pytest.raises(ValueError, match="largest block"):
        ckpt.after_iteration(1, params)


@pytest.mark.parametrize("r", [0.5, 0.25, 0.125])
def test_all_policies_write_the_same_bytes_at_every_multiple_of_C(r):
    # Equal-width blocks and r * n_blocks whole: every fractional save writes exactly r * d, so
    # over each interval of C iterations every policy writes exactly what `full` writes.
    rng = np.random.default_rng(3)
    C, n_iters = 8, 40
    x = {"w": rng.standard_normal((64, 3))}
    checkpointers = {name: Checkpointer(make_checkpoint_policy(name, C, r, seed=1)) for name in POLICY_NAMES}
    for ckpt in checkpointers.values():
        ckpt.start(x)
    for k in range(1, n_iters + 1):
        x["w"] += rng.standard_normal(x["w"].shape) * rng.random((64, 1))
        for ckpt in checkpointers.values():
            ckpt.after_iteration(k, x)
        if k % C == 0:
            written = {name: ckpt.bytes_written for name, ckpt in checkpointers.items()}
            assert len(set(written.values())) == 1, (k, written)
            assert written["full"] == x["w"].nbytes * (1 + k // C)


# --------------------------------------------------------------------------------------------
# The fast priority selection is the full sort's, exactly (ties, unequal widths, NaN).


def _slow_priority_mask(change, age, sizes, budget):
    """The selection written plainly: a full lexsort, then a walk taking every block that still
    fits (skipping those that do not)."""
    return greedy_fill(np.lexsort((age, -change)), sizes, budget)


@st.composite
def _selection_cases(draw):
    n_arrays = draw(st.integers(1, 4))
    widths = [draw(st.integers(0, 6)) for _ in range(n_arrays)]
    n_rows = [draw(st.integers(1, 40)) for _ in range(n_arrays)]
    layout = BlockLayout(names=tuple(f"a{i}" for i in range(n_arrays)), n_rows=tuple(n_rows), widths=tuple(widths))
    n = layout.n_blocks
    # Few distinct values: ties in change, and in age, on both sides of the budget's boundary.
    pool = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, np.inf, 1e-300]), min_size=1, max_size=4))
    change = np.array(draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n)))
    if draw(st.booleans()):
        change = change + np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    if draw(st.integers(0, 9)) == 0:
        change[draw(st.integers(0, n - 1))] = np.nan
    age = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), dtype=np.int64)
    largest = max(widths)
    budget = draw(st.integers(largest, max(largest, layout.n_params)))
    return layout, change, age, budget


@settings(max_examples=150, deadline=None)
@given(_selection_cases())
def test_priority_selection_equals_the_full_sort(case):
    from scar.checkpoint.policies import _take_within_budget

    layout, change, age, budget = case
    sizes = layout.block_sizes
    got = _take_within_budget(np.lexsort((age, -change)), sizes, budget)
    np.testing.assert_array_equal(got, _slow_priority_mask(change, age, sizes, budget))
    assert int(sizes[got].sum()) <= budget


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_priority_select_equals_the_full_sort_on_arrays(data):
    # End to end through select(): float64 and integer arrays, equal and unequal widths, ties.
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n_arrays = data.draw(st.integers(1, 3))
    dtype = data.draw(st.sampled_from([np.float64, np.int64]))
    shapes = [(data.draw(st.integers(1, 30)), data.draw(st.integers(1, 4))) for _ in range(n_arrays)]
    saved = {f"p{i}": rng.integers(-2, 3, size=s).astype(dtype) for i, s in enumerate(shapes)}
    current = {n: (a + rng.integers(-1, 2, size=a.shape)).astype(dtype) for n, a in saved.items()}  # many ties
    saved_at = {n: rng.integers(0, 3, size=a.shape[0]).astype(np.int64) for n, a in saved.items()}
    layout = BlockLayout.from_arrays(current)
    r = data.draw(st.sampled_from([0.125, 0.25, 0.5, 1.0]))
    policy = PriorityCheckpoint(8, r)
    assume(max(layout.widths) <= int(r * layout.n_params))
    image = Checkpoint(values=saved, saved_at=saved_at)
    diffs = [current[n].astype(np.float64) - saved[n].astype(np.float64) for n in layout.names]
    change = np.concatenate([np.sqrt(np.einsum("ij,ij->i", d, d)) for d in diffs])
    age = np.concatenate([saved_at[n] for n in layout.names])
    want = _slow_priority_mask(change, age, layout.block_sizes, policy.budget(layout))
    np.testing.assert_array_equal(policy.select(8, layout, current, image), want)


@settings(max_examples=100, deadline=None)
@given(_selection_cases(), st.sampled_from(POLICY_NAMES), st.integers(0, 1000))
def test_no_policy_selects_more_than_its_budget(case, name, seed):
    layout, _, _, _ = case
    fraction = 0.5 if name != "full" else 1.0
    policy = make_checkpoint_policy(name, 8, fraction, seed=seed)
    assume(max(layout.widths) <= int(np.floor(policy.fraction * layout.n_params + 1e-9)))
    rng = np.random.default_rng(seed)
    current = {n: rng.standard_normal((r, w)) for n, r, w in zip(layout.names, layout.n_rows, layout.widths)}
    image = _image({n: np.zeros_like(a) for n, a in current.items()})
    extra = {"accesses": rng.integers(0, 5, layout.n_blocks)} if policy.uses_accesses else {}
    for k in (4, 8, 12):
        mask = policy.select(k, layout, current, image, **extra)
        assert int(layout.block_sizes[mask].sum()) <= policy.budget(layout)
        assert mask.any() or layout.n_params == 0


def test_policy_config_identifies_the_policy():
    assert make_checkpoint_policy("priority", 8, 0.25).config() == {"name": "priority", "interval": 8, "fraction": 0.25}
    assert make_checkpoint_policy("random", 8, 0.25, seed=3).config()["seed"] == 3
    assert make_checkpoint_policy("full", 8, 0.25).config()["fraction"] == 1.0


@settings(max_examples=120, deadline=None)
@given(_selection_cases())
def test_equal_width_selection_equals_the_full_sort(case):
    from scar.checkpoint.policies import _priority_top_equal_width

    layout, change, age, budget = case
    width = max(layout.widths)
    assume(width > 0 and not np.isnan(change).any())
    one_width = BlockLayout(names=("a",), n_rows=(layout.n_blocks,), widths=(width,))
    got = _priority_top_equal_width(change, age, budget // width)
    np.testing.assert_array_equal(got, _slow_priority_mask(change, age, one_width.block_sizes, budget))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 12), st.integers(1, 60)), min_size=1, max_size=4),
    st.sampled_from(["priority", "round_robin", "random"]),
    st.sampled_from([0.5, 0.25, 0.125]),
    st.integers(0, 2**31 - 1),
)
def test_fractional_policies_fill_their_budget_with_unequal_widths(arrays, name, r, seed):
    # A save skips a block that does not fit and takes the next that does, so it leaves less
    # than the widest block unused: over C iterations a fractional policy writes within 5% of
    # what full writes whenever the widest block is within 5% of a save's budget.
    rng = np.random.default_rng(seed)
    arrays = [(1, 100)] + arrays  # some narrow blocks to fill with
    params = {f"a{i}": rng.standard_normal((n, w)) for i, (w, n) in enumerate(arrays)}
    layout = BlockLayout.from_arrays(params)
    C = 16
    policy = make_checkpoint_policy(name, C, r, seed=1)
    try:
        budget = policy.budget(layout)
    except ValueError:
        assume(False)  # a block wider than r * d: refused, as it should be
    assume(max(layout.widths) <= 0.05 * budget)
    ckpt = Checkpointer(policy)
    ckpt.start(params)
    first = ckpt.bytes_written
    for k in range(1, 4 * C + 1):
        params = {n: a + rng.standard_normal(a.shape) for n, a in params.items()}
        ckpt.after_iteration(k, params)
    per_c = (ckpt.bytes_written - first) / 4
    full = layout.n_params * 8
    assert per_c <= full
    assert per_c >= 0.95 * full, (per_c, full, budget)


@pytest.mark.parametrize("name", ["priority", "round_robin", "random"])
def test_a_wide_block_no_longer_stops_a_save(name):
    # The reviewer's case: 1,000 blocks of width 1 and one of 100, r = 1/4, C = 8. Stopping at
    # the first block that did not fit wrote 800 (priority), 862 (round robin), 911 (random)
    # parameters per C against full's 1,100; skipping it fills the budget exactly.
    rng = np.random.default_rng(0)
    params = {"a": rng.standard_normal((1000, 1)), "b": rng.standard_normal((1, 100))}
    ckpt = Checkpointer(make_checkpoint_policy(name, 8, 0.25, seed=1))
    ckpt.start(params)
    first = ckpt.bytes_written
    for k in range(1, 8 * 10 + 1):
        params = {n: a + rng.standard_normal(a.shape) for n, a in params.items()}
        ckpt.after_iteration(k, params)
    assert (ckpt.bytes_written - first) / 10 / 8 == 1100


# --------------------------------------------------------------------------------------------
# The frequency policy (CPR's MFU)


def _embedding_run(n_rows=8):
    x = {"emb": np.zeros((n_rows, 2)), "mlp": np.zeros((2, 3))}
    ck = Checkpointer(make_checkpoint_policy("frequency", 16, 0.25))  # a save every 4 iterations
    ck.start(x)
    return x, ck


def test_frequency_saves_the_rows_accessed_most_since_their_save():
    x, ck = _embedding_run()
    # iteration 1 touches rows 5 (twice) and 2; iteration 2 row 2 again: counts 2:2, 5:2.
    ck.after_iteration(1, x, {"emb": np.array([5, 2, 5])})
    ck.after_iteration(2, x, {"emb": np.array([2, 7])})
    np.testing.assert_array_equal(ck.accesses[:8], [0, 0, 2, 0, 0, 2, 0, 1])
    assert ck.accesses[8:].sum() == 0  # the MLP rows were not reported: not touched
    # budget 0.25 * 22 = 5 params: two embedding rows of 2 and nothing of width 3 fits after.
    assert ck.after_iteration(3, x, {"mlp": np.array([True, False])}) is False  # not due yet
    assert ck.accesses[8:].tolist() == [1, 0]
    assert ck.after_iteration(4, x, {}) is True
    saved = {n: np.flatnonzero(ck.image.saved_at[n] == 4) for n in x}
    np.testing.assert_array_equal(saved["emb"], [2, 5])
    assert ck.accesses[[2, 5]].sum() == 0 and ck.accesses[7] == 1  # saved rows start again at 0


def test_frequency_counts_survive_a_restart():
    x, ck = _embedding_run()
    ck.after_iteration(1, x, {"emb": np.array([1, 1, 3])})
    again = Checkpointer(make_checkpoint_policy("frequency", 16, 0.25), ck.store)
    again.load_state_dict(ck.state_dict())
    np.testing.assert_array_equal(again.accesses, ck.accesses)


def test_frequency_rejects_touched_rows_it_cannot_place():
    x, ck = _embedding_run()
    with pytest.raises(ValueError, match=r"touched rows of 'emb' out of range \[0, 8\)"):
        ck.after_iteration(1, x, {"emb": np.array([8])})
    with pytest.raises(ValueError, match="'user': not a checkpointed array"):
        ck.after_iteration(2, x, {"user": np.array([0])})
    with pytest.raises(ValueError, match="needs access counts"):
        make_checkpoint_policy("frequency", 16, 0.25).select(4, ck.layout, x, ck.image)


# --------------------------------------------------------------------------------------------
# Byte budgets (a codec other than raw) and sensitivity-aware priority


def _drifting(seed=0, shapes=(("U", 30, 6), ("V", 50, 6))):
    rng = np.random.default_rng(seed)
    return [{n: rng.standard_normal((r, w)) * (1 + k) for n, r, w in shapes} for k in range(12)]


@pytest.mark.parametrize("codec", ["delta", "quantized", "lc"])
@pytest.mark.parametrize("name", ["priority", "round_robin", "random", "sensitive_priority", "frequency"])
def test_a_byte_budget_holds_every_save_to_what_a_raw_save_of_the_same_r_writes(name, codec):
    from scar.checkpoint.codecs import make_codec

    states = _drifting()
    r, C = 0.25, 8
    raw = Checkpointer(make_checkpoint_policy(name, C, r, seed=1))
    coded = Checkpointer(make_checkpoint_policy(name, C, r, seed=1), codec=make_codec(codec))
    raw.start(states[0])
    coded.start(states[0])
    n_rows = sum(a.shape[0] for a in states[0].values())
    # A raw save: r of the parameters, and 8 bytes of index per row; equal widths, so exact.
    cap = r * (sum(a.nbytes for a in states[0].values()) + 8 * n_rows)
    for k, x in enumerate(states[1:], start=1):
        before = (raw.bytes_written + raw.store.index_bytes_written, coded.bytes_written + coded.store.index_bytes_written)
        raw.after_iteration(k, x)
        coded.after_iteration(k, x)
        wrote_raw = raw.bytes_written + raw.store.index_bytes_written - before[0]
        wrote = coded.bytes_written + coded.store.index_bytes_written - before[1]
        assert wrote_raw <= cap + 1e-9 and wrote <= cap + 1e-9
        if codec == "delta":  # the same bytes per row as raw: the same rows
            assert wrote == wrote_raw
    if codec != "delta":  # 3 bits a value instead of 64: more rows per save (8 index bytes a row)
        assert coded.store.index_bytes_written > 2 * raw.store.index_bytes_written


def test_block_costs_in_bytes_refuses_a_block_that_never_fits():
    from scar.checkpoint.codecs import make_codec

    policy = make_checkpoint_policy("priority", 8, 0.125, codec=make_codec("delta"))
    layout = BlockLayout(("w",), (4,), (16,))
    with pytest.raises(ValueError, match="codec 'delta' may write .* bits per save, less than the largest block"):
        policy.block_costs(layout, {"w": np.zeros((4, 16))})


def test_sensitive_priority_weighs_change_by_the_declared_sensitivity():
    from scar.checkpoint.policies import SensitivePriorityCheckpoint

    rng = np.random.default_rng(2)
    x0 = {"U": rng.standard_normal((20, 4)), "V": rng.standard_normal((20, 4))}
    x1 = {"U": x0["U"] + 10.0, "V": x0["V"] + 0.1 * rng.standard_normal((20, 4))}  # U moved most
    image = Checkpoint(values={n: a.copy() for n, a in x0.items()}, saved_at={n: np.zeros(20, dtype=np.int64) for n in x0})
    layout = BlockLayout.from_arrays(x0)
    scar = make_checkpoint_policy("priority", 8, 0.25).select(2, layout, x1, image)
    assert scar[:20].sum() == 10 and scar[20:].sum() == 0  # SCAR spends it all on U
    blind = SensitivePriorityCheckpoint(8, 0.25, weights={"U": 0.0}).select(2, layout, x1, image)
    assert blind[:20].sum() == 0 and blind[20:].sum() == 10  # U weighs 0: all of it on V
    change = layout.block_distances(x1, image.values)[20:]
    assert set(np.flatnonzero(blind[20:])) == set(np.argsort(-change)[:10])
    # No weights: SCAR's priority, exactly.
    np.testing.assert_array_equal(SensitivePriorityCheckpoint(8, 0.25).select(2, layout, x1, image), scar)
    with pytest.raises(ValueError, match="finite and >= 0"):
        SensitivePriorityCheckpoint(8, 0.25, weights={"U": -1.0})
    with pytest.raises(ValueError, match="not server arrays"):
        SensitivePriorityCheckpoint(8, 0.25, weights={"W": 0.0}).select(2, layout, x1, image)
    assert SensitivePriorityCheckpoint(8, 0.25, weights={"U": 0}).config()["weights"] == {"U": 0.0}


def test_sensitive_priority_ranks_priced_arrays_by_the_models_restore_cost():
    from scar.checkpoint.policies import SensitivePriorityCheckpoint

    rng = np.random.default_rng(4)
    x0 = {"U": rng.standard_normal((20, 4)), "V": rng.standard_normal((20, 4))}
    x1 = {n: a + rng.standard_normal(a.shape) for n, a in x0.items()}
    image = Checkpoint(values={n: a.copy() for n, a in x0.items()}, saved_at={n: np.zeros(20, dtype=np.int64) for n in x0})
    layout = BlockLayout.from_arrays(x0)
    price = np.arange(20, dtype=float)[::-1]  # V row 0 costs most, whatever it moved

    class Cost:
        name = "test_cost"
        calls = 0

        def __call__(self, current, saved):
            Cost.calls += 1
            assert current is x1 and saved is image.values  # the current state and the image
            return {"V": price}

    policy = SensitivePriorityCheckpoint(8, 0.25, weights={"U": 0.0}, restore_cost=Cost())
    mask = policy.select(2, layout, x1, image)
    assert Cost.calls == 1 and mask[:20].sum() == 0
    assert set(np.flatnonzero(mask[20:])) == set(range(10))  # the 10 costliest, by the model's price
    # U is not priced: it keeps SCAR's change, times its weight.
    both = SensitivePriorityCheckpoint(8, 0.5, restore_cost=Cost()).select(2, layout, x1, image)
    change_u = layout.block_distances(x1, image.values)[:20]
    order = np.argsort(-np.concatenate([change_u, price]), kind="stable")[:20]
    assert set(np.flatnonzero(both)) == set(order)
    assert policy.config()["restore_cost"] == "test_cost"
    assert "restore_cost" not in SensitivePriorityCheckpoint(8, 0.25).config()

    class Bad:
        name = "bad"

        def __call__(self, current, saved):
            return {"V": -price}

    with pytest.raises(ValueError, match="restore cost 'bad' of 'V' must be 20 finite costs >= 0"):
        SensitivePriorityCheckpoint(8, 0.25, restore_cost=Bad()).select(2, layout, x1, image)


def test_an_entropy_coded_codec_fits_more_rows_where_the_data_compresses():
    from scar.checkpoint.codecs import make_codec

    rng = np.random.default_rng(3)
    counts = rng.integers(0, 9, size=(400, 16)).astype(np.int32)  # integer state: stays exact
    moved = counts.copy()
    moved[rng.random(400) < 0.9] += 1  # most rows moved a little: a low-entropy delta
    image = Checkpoint(values={"n": counts}, saved_at={"n": np.zeros(400, dtype=np.int64)})
    layout = BlockLayout.from_arrays({"n": counts})
    taken = {}
    for codec in ("quantized", "lc"):
        policy = make_checkpoint_policy("priority", 8, 0.25, codec=make_codec(codec))
        mask = policy.select(2, layout, {"n": moved}, image)
        taken[codec] = int(mask.sum())
        assert policy._encoded_bytes(layout, mask, {"n": moved}, image) <= policy._budget_bytes(layout, {"n": moved})
    assert taken["quantized"] == 400 * (16 * 4 + 8) * 0.25 // (16 * 4 + 8)  # exact counts: raw's rows
    assert taken["lc"] > 2 * taken["quantized"]  # the zlib-coded delta fits several times more
