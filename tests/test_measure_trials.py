"""Tests of failure trials (scar.measure.trials), on the quadratic model where outcomes are provable.

With one curvature, gradient descent multiplies every entry by the same factor ``c = 0.9`` each
iteration, so ``|x_s| >= |x_T|`` entrywise for ``s <= T`` (floating-point rounding is monotone,
so this holds bit for bit). Consequences used below:

- full recovery from a full checkpoint saved at ``T'`` restarts the baseline trajectory at
  ``x_T'``: the rework is exactly ``T - T'``, and the bound equals ``T - T'`` too (the
  rollback is the worst-case perturbation, parallel to ``x_T``);
- partial recovery makes every entry at least as large as ``x_T`` and at most as large as the
  full rollback (same checkpoint), so ``0 <= rework(partial) <= rework(full)`` and its
  perturbation norm is at most the full one's (a sub-sum of the same nonnegative terms).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scar.core.failures import sample_failed_nodes
from scar.measure.trajectory import run_baseline
from scar.measure.trials import (
    TRIAL_COLUMNS,
    CheckpointReplays,
    TrialSettings,
    TrialSpec,
    failure_iteration,
    plan_trials,
    run_trial,
    stable_seed,
    trials_frame,
)
from scar.models import Quadratic

C = 8
N_BLOCKS, WIDTH, N_NODES = 16, 4, 8
PARTIAL = ("scar", "full_partial", "round_robin_partial", "random_partial")


class _ZeroRows(Quadratic):
    """The quadratic model with some rows exactly zero at x_0 (they stay zero forever)."""

    def __init__(self, zero_rows: tuple[int, ...] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.zero_rows = zero_rows

    def get_params(self):
        return {"zero_rows": self.zero_rows}

    def init_state(self, data, seed):
        state = super().init_state(data, seed)
        state["x"][list(self.zero_rows)] = 0.0
        return state


@pytest.fixture(scope="module")
def model():
    return Quadratic(n_blocks=N_BLOCKS, width=WIDTH, step_size=0.1, init_scale=10.0)


@pytest.fixture(scope="module")
def baseline(model):
    return run_baseline(model, None, seed=5, max_iters=300, tol=0.01)


def _last_full_save(T: int) -> int:
    """The last full checkpoint a failure after iteration T can use (saves at k < T)."""
    return C * ((T - 1) // C)


def _spec(position: float, fraction: float = 0.25, seed: int = 123, trial: int = 0) -> TrialSpec:
    return TrialSpec(trial=trial, position=position, fraction=fraction, seed=seed)


def _by_key(rows):
    return {(row["strategy"], row["r"]): row for row in rows}


# --------------------------------------------------------------------------------------------
# Planning


def test_plan_trials_shape_and_window():
    fractions = (0.125, 0.25, 0.5)
    plan = plan_trials(20, fractions, (0.2, 0.7), seed=4, key="quadratic/none")
    assert len(plan) == 20 * len(fractions)
    assert [s.fraction for s in plan[:3]] == list(fractions)
    for s in plan:
        assert 0.2 <= s.position < 0.7
    by_trial: dict[int, list[TrialSpec]] = {}
    for s in plan:
        by_trial.setdefault(s.trial, []).append(s)
    assert sorted(by_trial) == list(range(20))
    for specs in by_trial.values():
        assert len(specs) == len(fractions)
        assert len({s.position for s in specs}) == 1  # the position is shared by all fractions
        assert len({s.seed for s in specs}) == len(fractions)  # the failed nodes are not
    assert len({s.position for s in plan}) == 20


def test_plan_trials_deterministic_and_keyed():
    a = plan_trials(10, (0.25, 0.5), (0.0, 1.0), seed=1, key="m/d")
    assert a == plan_trials(10, (0.25, 0.5), (0.0, 1.0), seed=1, key="m/d")
    assert [s.position for s in a] != [s.position for s in plan_trials(10, (0.25, 0.5), (0.0, 1.0), seed=2, key="m/d")]
    assert [s.position for s in a] != [s.position for s in plan_trials(10, (0.25, 0.5), (0.0, 1.0), seed=1, key="m/e")]
    assert stable_seed(1, "m/d", 0, 0.25) == stable_seed(1, "m/d", 0, 0.25)
    assert stable_seed(1, "m/d", 0, 0.25) != stable_seed(1, "m/d", 1, 0.25)


@pytest.mark.parametrize("window", [(0.5, 0.5), (0.6, 0.4), (-0.1, 0.5), (0.2, 1.1)])
def test_plan_trials_rejects_bad_window(window):
    with pytest.raises(ValueError, match="failure window"):
        plan_trials(3, (0.25,), window, seed=0)


def test_plan_trials_rejects_no_trials():
    with pytest.raises(ValueError, match="n_trials"):
        plan_trials(0, (0.25,), (0.0, 1.0), seed=0)


@given(position=st.floats(0.0, 1.0), k_base=st.integers(2, 10**6))
def test_failure_iteration_in_range(position, k_base):
    T = failure_iteration(position, k_base)
    assert isinstance(T, int)
    assert 1 <= T <= k_base - 1
    if 1 <= math.floor(position * k_base) <= k_base - 1:
        assert T == math.floor(position * k_base)


@pytest.mark.parametrize("k_base", [2, 3, 22, 1000])
def test_failure_iteration_clamps_the_window_ends(k_base):
    assert failure_iteration(0.0, k_base) == 1
    assert failure_iteration(1.0, k_base) == k_base - 1
    assert failure_iteration(0.999999, k_base) == k_base - 1


# --------------------------------------------------------------------------------------------
# Settings


def test_settings_validation():
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        TrialSettings.from_names(strategies=("traditional", "nope"))
    with pytest.raises(ValueError, match=r"r \* C"):
        TrialSettings.from_names(interval=6, r_values=(0.25,))
    with pytest.raises(ValueError, match=r"r must be in \(0, 1\]"):
        TrialSettings.from_names(r_values=(0.0,))
    with pytest.raises(ValueError, match="rework_cap"):
        TrialSettings(rework_cap=0.0)
    s = TrialSettings(rework_cap=2.0)
    assert s.cap(22) == 22 + 44
    assert TrialSettings(rework_cap=1e-9).cap(22) == 23  # at least one iteration past K_base


# --------------------------------------------------------------------------------------------
# run_trial


@pytest.mark.parametrize("position, fraction", [(0.5, 0.25), (0.73, 0.125), (0.2, 0.5), (0.95, 1.0)])
def test_run_trial_rows_and_provable_relations(model, baseline, position, fraction):
    settings = TrialSettings.from_names(interval=C, r_values=(0.25, 0.5, 1.0), n_nodes=N_NODES, seed=2)
    spec = _spec(position, fraction, seed=77)
    rows = run_trial(model, None, baseline, spec, settings, dataset="none")
    k_base = baseline.k_base
    T = failure_iteration(position, k_base)
    Tp = _last_full_save(T)
    failed = sample_failed_nodes(N_NODES, fraction, np.random.default_rng(spec.seed))

    # One row per (strategy, r): the full-checkpoint strategies have r = 1 only.
    assert len(rows) == 2 + 3 * 3
    keys = _by_key(rows)
    assert len(keys) == len(rows)
    assert ("traditional", 1.0) in keys and ("full_partial", 1.0) in keys
    for name in ("scar", "round_robin_partial", "random_partial"):
        assert {r for (s, r) in keys if s == name} == {0.25, 0.5, 1.0}

    frame = trials_frame(rows)
    assert list(frame.columns) == list(TRIAL_COLUMNS)
    assert not frame.isna().drop(columns=["k_pert"]).any().any()
    for row in rows:
        assert set(row) == set(TRIAL_COLUMNS)
        assert not row["censored"] and row["censor_reason"] == ""
        assert isinstance(row["rework"], (int, np.integer))
        assert row["rework"] == row["k_pert"] - k_base
        assert row["k_base"] == k_base and row["failure_iteration"] == T
        assert row["failed_nodes"] == ";".join(map(str, failed))
        assert row["lost_blocks"] == len(failed) * (N_BLOCKS // N_NODES)
        assert row["C"] == C and row["n_nodes"] == N_NODES and row["seed"] == baseline.seed
        assert row["c_hat"] == baseline.contraction.c
        assert row["failure_fraction"] == fraction and row["failure_position"] == position
        assert row["perturbation_norm"] >= 0.0
        # The bound holds (perturbations are parallel to x_T here, so at most the worst case).
        assert row["rework"] <= math.ceil(row["bound"] + 1e-6)

    trad, fp = keys[("traditional", 1.0)], keys[("full_partial", 1.0)]
    # Traditional: a rollback to the last full save, i.e. the baseline shifted by T - T'.
    assert trad["rework"] == T - Tp
    assert trad["bound"] == pytest.approx(T - Tp, abs=1e-6)
    assert trad["mean_staleness"] == T - Tp
    assert trad["checkpoint_bytes"] == 8 * N_BLOCKS * WIDTH * (1 + (T - 1) // C)
    x_T, x_Tp = baseline.state_at(T)["x"], baseline.state_at(Tp)["x"]
    assert trad["perturbation_norm"] == pytest.approx(np.linalg.norm(x_Tp - x_T), rel=1e-12)
    # Same checkpoint, partial recovery: never a larger perturbation nor a larger rework.
    assert fp["checkpoint_bytes"] == trad["checkpoint_bytes"]
    assert fp["perturbation_norm"] <= trad["perturbation_norm"]
    assert 0 <= fp["rework"] <= trad["rework"]
    if fraction == 1.0:
        assert fp["perturbation_norm"] == trad["perturbation_norm"] and fp["rework"] == trad["rework"]
    for (name, r), row in keys.items():
        if name in PARTIAL:
            assert row["rework"] >= 0  # restored rows are older, hence larger, than x_T's
        if name in ("scar", "round_robin_partial", "random_partial"):
            n_saves = (T - 1) // int(r * C)
            assert row["checkpoint_bytes"] == 8 * (N_BLOCKS * WIDTH + n_saves * int(r * N_BLOCKS) * WIDTH)
            if r == 1.0:
                # r = 1 saves everything every C iterations: the full checkpoint, exactly.
                for col in ("rework", "perturbation_norm", "checkpoint_bytes", "mean_staleness", "bound"):
                    assert row[col] == fp[col], (name, col)


def test_failure_on_a_checkpoint_boundary_is_not_free(model, baseline):
    # k_base = 22; position 0.73 -> T = 16, a multiple of C: the save of iteration 16 is lost too.
    assert failure_iteration(0.73, baseline.k_base) == 16
    rows = run_trial(model, None, baseline, _spec(0.73), TrialSettings.from_names(strategies=("traditional",), interval=C))
    assert len(rows) == 1
    assert rows[0]["rework"] == 8 and rows[0]["mean_staleness"] == 8.0


def test_recovered_state_equal_to_baseline_gives_zero_rework():
    spec = _spec(0.6, fraction=0.125, seed=9)
    (failed,) = sample_failed_nodes(N_NODES, 0.125, np.random.default_rng(spec.seed))
    # Round-robin placement: the failed node holds blocks `failed` and `failed + 8`. Make them
    # exactly zero: they never change, so their checkpoint value is their current value.
    zero = (failed, failed + N_NODES)
    model = _ZeroRows(zero_rows=zero, n_blocks=N_BLOCKS, width=WIDTH, step_size=0.1, init_scale=10.0)
    base = run_baseline(model, None, seed=5, max_iters=300, tol=0.01)
    assert not base.state_at(0)["x"][list(zero)].any()
    settings = TrialSettings.from_names(interval=C, r_values=(0.25,), n_nodes=N_NODES, placement="round_robin")
    rows = run_trial(model, None, base, spec, settings)
    keys = _by_key(rows)
    T = failure_iteration(spec.position, base.k_base)
    for name in PARTIAL:
        row = keys[(name, 1.0 if name == "full_partial" else 0.25)]
        assert row["perturbation_norm"] == 0.0
        assert row["rework"] == 0 and row["k_pert"] == base.k_base and not row["censored"]
        assert row["bound"] == 0.0
        assert row["lost_blocks"] == 2
    # Rolling every block back still costs T - T'.
    assert keys[("traditional", 1.0)]["rework"] == T - _last_full_save(T) > 0


def test_censored_rows_carry_the_cap(model, baseline):
    # cap = k_base + 1. A whole-job rollback replays the baseline exactly, so its rework T - s is
    # known without running and is never censored; runs that must be run stop at the cap.
    settings = TrialSettings.from_names(interval=C, r_values=(0.25,), rework_cap=1e-9)
    T = failure_iteration(0.5, baseline.k_base)
    assert T - _last_full_save(T) >= 2
    rows = _by_key(run_trial(model, None, baseline, _spec(0.5), settings))
    trad = rows[("traditional", 1.0)]
    assert trad["censored"] is False and trad["rework"] == T - _last_full_save(T)
    rows.pop(("traditional", 1.0))
    assert any(row["censored"] for row in rows.values())
    for row in rows.values():
        assert row["censor_reason"] in ("", "cap")
        if not row["censored"]:
            assert row["rework"] <= 1 and row["censor_reason"] == ""
        else:
            assert row["rework"] == 1 and math.isnan(row["k_pert"])


def test_run_trial_is_deterministic(model, baseline):
    settings = TrialSettings.from_names(interval=C, r_values=(0.25, 0.5))
    a = run_trial(model, None, baseline, _spec(0.4, seed=3), settings)
    b = run_trial(model, None, baseline, _spec(0.4, seed=3), settings)
    assert trials_frame(a).equals(trials_frame(b))


def test_shared_replays_give_the_rows_of_fresh_ones(model, baseline):
    # Later, equal and earlier failure positions: a replay that goes on, one reused, one anew.
    settings = TrialSettings.from_names(
        strategies=("traditional", "scar", "round_robin_partial", "random_partial", "lc_partial"),
        interval=C,
        r_values=(0.25, 0.5),
    )
    specs = [_spec(0.3, 0.25, 1, 0), _spec(0.3, 0.5, 2, 1), _spec(0.7, 0.25, 3, 2), _spec(0.2, 0.125, 4, 3)]
    replays = CheckpointReplays(baseline)
    shared = [row for spec in specs for row in run_trial(model, None, baseline, spec, settings, replays=replays)]
    fresh = [row for spec in specs for row in run_trial(model, None, baseline, spec, settings)]
    assert trials_frame(shared).equals(trials_frame(fresh))


@pytest.mark.parametrize(
    ("model_name", "params", "dataset", "options", "max_iters", "tol"),
    [
        ("mlr", {"learning_rate": 0.1, "batch_size": 50}, "mnist", {"max_samples": 300}, 30, 0.02),
        ("mf", {"rank": 5}, "movielens", {}, 20, 0.01),
        ("lda", {"n_topics": 5, "resync_every": 4}, "20newsgroups", {}, 40, 0.05),
        ("quadratic", {}, None, {}, 80, 0.001),
    ],
)
def test_traditional_rework_is_exactly_the_iterations_lost_on_every_model(model_name, params, dataset, options, max_iters, tol):
    # Traditional recovery restarts the whole job (server rows, workers' state, counters) from
    # its last full save s and replays s+1..T with the baseline's streams: rework is T - s.
    from scar.datasets import load_dataset
    from scar.models import make_model

    model = make_model(model_name, params)
    max_samples = options.pop("max_samples", None)
    data = None if dataset is None else model.prepare(load_dataset(dataset, max_samples=max_samples, **options))
    base = run_baseline(model, data, seed=1, max_iters=max_iters, tol=tol)
    settings = TrialSettings.from_names(strategies=("traditional",), interval=4, n_nodes=4)
    for spec in plan_trials(4, [0.5], (0.1, 0.9), 1, key=model_name):
        (row,) = run_trial(model, data, base, spec, settings)
        T = row["failure_iteration"]
        s = (T - 1) // 4 * 4
        assert row["rework"] == T - s and not row["censored"], (T, s, row["rework"])
        assert row["rework_fractional"] == pytest.approx(T - s, abs=1e-9)
        worker = sum(a[0].nbytes for n, a in base.snapshots.items() if n not in base.server_params)
        server = sum(base.snapshots[n][0].nbytes for n in base.server_params)
        assert row["checkpoint_bytes"] == (1 + (T - 1) // 4) * (server + worker)


def test_codec_strategies_write_at_most_raw_bytes_and_sensitivity_defaults_to_scar(model, baseline):
    settings = TrialSettings.from_names(
        ["scar", "delta_partial", "lc_partial", "quantized_partial", "sensitive_partial"], interval=C, r_values=(0.25,)
    )
    rows = {r["strategy"]: r for r in run_trial(model, None, baseline, _spec(0.6, seed=2), settings)}
    scar = rows["scar"]
    total = {s: r["checkpoint_bytes"] + r["checkpoint_index_bytes"] for s, r in rows.items()}
    # Equal widths: the lossless delta takes SCAR's rows, and writes SCAR's bytes exactly.
    assert total["delta_partial"] == total["scar"] and rows["delta_partial"]["rework"] == scar["rework"]
    # The lossy codecs fit more rows in at most the same bytes.
    for s in ("lc_partial", "quantized_partial"):
        assert total[s] <= total["scar"] and rows[s]["codec"] == s.split("_")[0]
        assert rows[s]["mean_staleness"] <= scar["mean_staleness"]
    # The quadratic model declares no sensitivity: sensitive_partial is SCAR, measured once.
    same = {k: v for k, v in rows["sensitive_partial"].items() if k not in ("strategy", "checkpoint_policy")}
    assert same == {k: v for k, v in scar.items() if k not in ("strategy", "checkpoint_policy")}
    assert rows["sensitive_partial"]["checkpoint_policy"] == "sensitive_priority"


def test_mf_declares_u_free_and_sensitive_priority_saves_only_v():
    from scar.checkpoint.checkpointer import replay
    from scar.checkpoint.strategy import get_strategy
    from scar.datasets import load_dataset
    from scar.models import make_model

    mf = make_model("mf", {"rank": 3})
    assert mf.sensitivity() == {"U": 0.0, "V": 1.0}
    data = mf.prepare(load_dataset("movielens"))
    base = run_baseline(mf, data, seed=0, max_iters=6, tol=0.05)
    s = get_strategy("sensitive_partial").with_r(0.25)
    ck = replay(s.policy(8, weights=mf.sensitivity()), base.server_state_at, base.k_base)
    assert (ck.image.saved_at["U"] == 0).all() and (ck.image.saved_at["V"] > 0).any()


def test_mf_restore_cost_is_the_first_order_shift_of_the_next_user_solve():
    """ALS's price of a stale item row is how far it moves the users' next solve: checked against
    the exact solve (a closed form), and 0 for a row equal to its saved value."""
    from scar.datasets import load_dataset
    from scar.models import make_model
    from scar.models.matrix_factorization import _solve_rows

    mf = make_model("mf", {"rank": 4, "l2": 0.05})
    data = mf.prepare(load_dataset("movielens"))
    state = mf.init_state(data, 0)
    for _ in range(3):
        mf.step(state, data, np.random.default_rng(0))
    _solve_rows(*data.by_user, state["V"], 0.05, state["U"])  # U solved from this V: the solve's own point
    cost = mf.restore_cost(data)
    assert cost.name == "als_user_solve_shift"
    np.testing.assert_array_equal(cost(state, state)["V"], np.zeros(data.n_items))
    i = int(np.argmax(np.diff(data.by_item[0])))  # the most rated item
    saved = {"U": state["U"], "V": state["V"].copy()}
    saved["V"][i] += 1e-6 * np.random.default_rng(1).standard_normal(4)
    shifted = np.empty_like(state["U"])
    _solve_rows(*data.by_user, saved["V"], 0.05, shifted)
    priced = cost(state, saved)["V"]
    assert priced[i] == pytest.approx(np.linalg.norm(shifted - state["U"]), rel=1e-3)
    assert np.count_nonzero(priced) == 1
    # A small saved row (the initial factors) moves the users less than a full-size stale one.
    init = mf.init_state(data, 0)["V"]
    stale = state["V"][::-1].copy()  # full-size rows, wrong for every item
    assert np.median(cost(state, {"V": init})["V"]) < np.median(cost(state, {"V": stale})["V"])


def test_mf_sensitive_partial_prices_item_rows_and_is_measured_apart_from_scar():
    from scar.datasets import load_dataset
    from scar.models import make_model

    mf = make_model("mf", {"rank": 10})
    data = mf.prepare(load_dataset("movielens"))
    base = run_baseline(mf, data, seed=0, max_iters=16, tol=0.01)
    settings = TrialSettings.from_names(["scar", "sensitive_partial"], interval=8, r_values=(0.25,))
    spec = _spec(0.8, seed=3)
    assert failure_iteration(spec.position, base.k_base) > 4  # after two fractional saves
    rows = {r["strategy"]: r for r in run_trial(mf, data, base, spec, settings)}
    assert rows["sensitive_partial"]["checkpoint_policy"] == "sensitive_priority"
    # Same bytes (one width), a different image: U is never saved, V is ranked by its price.
    assert rows["sensitive_partial"]["checkpoint_bytes"] == rows["scar"]["checkpoint_bytes"]
    assert rows["sensitive_partial"]["perturbation_norm"] != rows["scar"]["perturbation_norm"]
