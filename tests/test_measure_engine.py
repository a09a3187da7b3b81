"""Common random numbers on a real model: a run continued from the baseline's own state at any
iteration retraces the baseline bit for bit (scar.measure.engine, docs/design.md §6).

Multinomial logistic regression on 600 real MNIST digits. Iteration ``k`` of any run draws its
minibatch order from ``iteration_rng(seed, k)``, so continuing ``baseline.state_at(T)`` with the
baseline's seed must give exactly the baseline's objectives and reach the target exactly at
``k_base``; with another seed it must not, and a small perturbation of the state must change the
objectives without stopping convergence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import run_from
from scar.datasets import load_dataset
from scar.measure.engine import InProcessEngine
from scar.measure.trajectory import Baseline, run_baseline
from scar.models import make_model
from scar.models.base import Model, State

SEED = 0
MLR_PARAMS = {"learning_rate": 0.1, "batch_size": 50, "l2": 1e-3}


class Recording(Model):
    """Delegates to a model and records every objective it computes (the run's trajectory)."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.losses: list[float] = []
        self.name = inner.name
        self.iteration = inner.iteration
        self.server_params = inner.server_params

    def init_state(self, data: Any, seed: int) -> State:
        return self.inner.init_state(data, seed)

    def step(self, state: State, data: Any, rng: np.random.Generator) -> None:
        self.inner.step(state, data, rng)

    def objective(self, state: State, data: Any) -> float:
        loss = self.inner.objective(state, data)
        self.losses.append(loss)
        return loss

    def __repr__(self) -> str:
        return f"Recording({self.inner!r})"


@pytest.fixture(scope="module")
def setup() -> tuple[Model, Any, Baseline]:
    model = make_model("mlr", MLR_PARAMS)
    data = model.prepare(load_dataset("mnist", "embedded", max_samples=600))
    baseline = run_baseline(model, data, seed=SEED, max_iters=30, tol=0.02)
    assert baseline.k_base >= 3, f"k_base={baseline.k_base}: too few iterations to continue from"
    return model, data, baseline


def test_baseline_is_reproducible(setup) -> None:
    model, data, baseline = setup
    again = run_baseline(model, data, seed=SEED, max_iters=30, tol=0.02)
    assert again.losses.tobytes() == baseline.losses.tobytes()
    assert again.k_base == baseline.k_base and again.target == baseline.target


def test_same_seed_continuation_retraces_the_baseline(setup) -> None:
    model, data, baseline = setup
    k_base = baseline.k_base
    for T in range(1, k_base):
        rec = Recording(model)
        state = baseline.state_at(T)
        run = run_from(rec, data, state, start=T, target=baseline.target, cap=baseline.max_iters, seed=baseline.seed)
        assert not run.censored and run.censor_reason == ""
        assert run.k_reached == k_base, f"continued from T={T}: reached at {run.k_reached}, baseline at {k_base}"
        assert run.last_iteration == k_base
        # Bit for bit: every objective on the way, and the state at arrival.
        np.testing.assert_array_equal(np.array(rec.losses), baseline.losses[T : k_base + 1], err_msg=f"T={T}")
        expected = baseline.state_at(k_base)
        assert set(state) == set(expected)
        for name in state:
            assert state[name].tobytes() == expected[name].tobytes(), f"T={T}: state {name!r} differs at k_base"


@pytest.mark.parametrize("other_seed", [SEED + 1, SEED + 2, 12345])
def test_another_seed_changes_the_trajectory(setup, other_seed: int) -> None:
    model, data, baseline = setup
    for T in (1, baseline.k_base // 2, baseline.k_base - 1):
        rec = Recording(model)
        state = baseline.state_at(T)
        # target -inf: never reached, so the run stops after exactly one step, at cap = T + 1.
        run = run_from(rec, data, state, start=T, target=-np.inf, cap=T + 1, seed=other_seed)
        assert run.censor_reason == "cap" and run.last_iteration == T + 1
        assert rec.losses[0] == baseline.losses[T]  # same starting point ...
        assert rec.losses[1] != baseline.losses[T + 1], f"seed {other_seed} reproduced the baseline at T+1={T + 1}"
        assert not np.array_equal(state["W"], baseline.state_at(T + 1)["W"])  # ... different minibatches
        # It is still SGD on the same problem: the objective decreases the same way, roughly.
        assert rec.losses[1] < rec.losses[0]
        assert rec.losses[1] == pytest.approx(baseline.losses[T + 1], rel=0.05)


def test_small_perturbation_changes_objective_but_converges(setup) -> None:
    model, data, baseline = setup
    k_base = baseline.k_base
    # The row of W of the most active pixel. The perturbation must vary across classes: adding
    # the same constant to a whole row does not change the softmax (only the L2 term).
    row = int(np.argmax(data.X[:, :-1].mean(axis=0)))
    delta = 1e-3 * np.random.default_rng(7).standard_normal(baseline.snapshots["W"].shape[2])
    for T in (1, k_base // 2, k_base - 1):
        state = baseline.state_at(T)
        state["W"][row] += delta
        rec = Recording(model)
        run = run_from(rec, data, state, start=T, target=baseline.target, cap=baseline.max_iters, seed=baseline.seed)
        assert not run.censored, f"perturbed at T={T}: censored ({run.censor_reason})"
        assert run.k_reached is not None and T <= run.k_reached <= baseline.max_iters
        # A 1e-3 nudge of one row costs at most an iteration here (far below the loss gaps).
        assert abs(run.k_reached - k_base) <= 1, f"perturbed at T={T}: reached at {run.k_reached}, baseline {k_base}"
        n = min(len(rec.losses), k_base + 1 - T)
        got, ref = np.array(rec.losses[:n]), baseline.losses[T : T + n]
        assert np.all(got != ref), f"perturbed at T={T}: some objectives equal the baseline's: {got} vs {ref}"
        assert np.allclose(got, ref, rtol=1e-3), f"perturbed at T={T}: objectives moved too far: {got} vs {ref}"


def test_kill_poisons_the_lost_rows_and_the_engine_refuses_to_step_on_them(setup) -> None:
    model, data, baseline = setup
    engine = InProcessEngine(model, data, baseline.seed)
    T = baseline.k_base // 2
    engine.load(baseline.state_at(T), T)
    lost = {"W": np.zeros(baseline.snapshots["W"].shape[1], dtype=bool)}
    lost["W"][[0, 5]] = True
    engine.kill(lost)
    assert np.isnan(engine.server_state()["W"][lost["W"]]).all()
    assert np.array_equal(engine.server_state()["W"][~lost["W"]], baseline.snapshots["W"][T][~lost["W"]])
    with pytest.raises(RuntimeError, match="lost server rows"):
        engine.step()
    # A partial restore writes exactly the lost rows back; the survivors keep their values.
    saved = {"W": baseline.snapshots["W"][0]}
    rows = engine.restore("partial", saved, lost)
    assert np.array_equal(rows["W"], lost["W"])
    W = engine.server_state()["W"]
    assert np.array_equal(W[lost["W"]], saved["W"][lost["W"]])
    assert np.array_equal(W[~lost["W"]], baseline.snapshots["W"][T][~lost["W"]])
    assert engine.step() == T + 1


def test_integer_rows_are_poisoned_with_the_most_negative_value() -> None:
    model = make_model("lda", {"n_topics": 3})
    data = model.prepare(load_dataset("reuters"))
    engine = InProcessEngine(model, data, 0)
    engine.load(model.init_state(data, 0), 0)
    lost = {"word_topic": np.arange(data.n_words) < 4}
    engine.kill(lost)
    assert (engine.server_state()["word_topic"][:4] == np.iinfo(engine.server_state()["word_topic"].dtype).min).all()
    saved = {"word_topic": model.init_state(data, 0)["word_topic"]}
    engine.restore("partial", saved, lost)
    assert engine.same_state_as(model.init_state(data, 0))
    with pytest.raises(ValueError, match="rollback"):
        engine.restore("full", saved, lost)
