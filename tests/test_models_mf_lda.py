"""Matrix factorization (ALS) and LDA (collapsed Gibbs): convergence on tiny data, validity of
the state after a partial recovery, and the properties the evaluation relies on."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_from
from scar.datasets import Dataset, load_dataset
from scar.datasets.corpora import count_matrix
from scar.measure.engine import iteration_rng
from scar.measure.trajectory import run_baseline
from scar.models import make_model
from scar.models.lda import _counts, gibbs_sweep


def low_rank_ratings(n_users=60, n_items=40, rank=3, density=0.6, noise=0.0, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    full = rng.normal(size=(n_users, rank)) @ rng.normal(size=(rank, n_items)) + noise * rng.normal(size=(n_users, n_items))
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    arrays = {
        "user": users.astype(np.int64),
        "item": items.astype(np.int64),
        "rating": full[users, items],
        "shape": np.array([n_users, n_items]),
    }
    return Dataset("lowrank", arrays, "synthetic", "test matrix")


def tiny_corpus(seed=0, n_docs=30, n_words=50, n_topics=3, length=40) -> Dataset:
    """Documents drawn from a few well-separated topics."""
    rng = np.random.default_rng(seed)
    topics = np.zeros((n_topics, n_words))
    for k in range(n_topics):
        topics[k, k * (n_words // n_topics) : (k + 1) * (n_words // n_topics)] = 1.0
    topics /= topics.sum(axis=1, keepdims=True)
    ptr, words, counts = [0], [], []
    for _ in range(n_docs):
        theta = rng.dirichlet(np.full(n_topics, 0.2))
        c = rng.multinomial(length, theta @ topics)
        w = np.flatnonzero(c)
        words += list(w)
        counts += list(c[w])
        ptr.append(len(words))
    arrays = {
        "doc_ptr": np.array(ptr, dtype=np.int64),
        "word": np.array(words, dtype=np.int64),
        "count": np.array(counts, dtype=np.int64),
        "vocabulary": np.array([f"w{i}" for i in range(n_words)]),
    }
    return Dataset("tiny", arrays, "synthetic", "test corpus")


# --- matrix factorization --------------------------------------------------------------------


def test_als_never_increases_its_objective_and_fits_a_low_rank_matrix():
    model = make_model("mf", {"rank": 3, "l2": 1e-4})
    data = model.prepare(low_rank_ratings())
    state = model.init_state(data, seed=0)
    losses = [model.objective(state, data)]
    for k in range(1, 40):
        model.step(state, data, iteration_rng(0, k))
        losses.append(model.objective(state, data))
    assert np.all(np.diff(losses) <= 1e-12 * losses[0])
    assert model.rmse(state, data) < 0.1  # noiseless rank-3 data (std about 1.7), rank-3 model


def test_als_erases_a_perturbation_of_U_exactly_but_not_of_V():
    """The factor solved first is recomputed from the other: its perturbation costs nothing."""
    model = make_model("mf", {"rank": 3, "l2": 0.05})
    data = model.prepare(low_rank_ratings(noise=0.3))
    base = run_baseline(model, data, seed=0, max_iters=30, tol=0.01)
    T = base.k_base // 2
    rng = np.random.default_rng(1)
    outcomes = {}
    for name in ("U", "V"):
        state = base.state_at(T)
        state[name] = state[name] + rng.normal(scale=1.0, size=state[name].shape)
        after = {n: a.copy() for n, a in state.items()}
        model.step(after, data, iteration_rng(base.seed, T + 1))
        outcomes[name] = after
    clean = base.state_at(T + 1)
    assert np.array_equal(outcomes["U"]["U"], clean["U"]) and np.array_equal(outcomes["U"]["V"], clean["V"])
    assert not np.allclose(outcomes["V"]["U"], clean["U"])


def test_mf_rejects_a_classification_dataset():
    model = make_model("mf", {})
    with pytest.raises(ValueError, match="rating dataset"):
        model.prepare(load_dataset("mnist", max_samples=20))


@pytest.mark.parametrize("params, name", [({"rank": 0}, "rank"), ({"l2": -1.0}, "l2"), ({"init_scale": 0}, "init_scale")])
def test_mf_bad_hyperparameters_are_named(params, name):
    with pytest.raises(ValueError, match=name):
        make_model("mf", params)


# --- LDA -------------------------------------------------------------------------------------


def test_gibbs_draws_the_first_token_from_its_full_conditional():
    """Token 0 is resampled first in a sweep, so its new topic has exactly the collapsed-Gibbs
    conditional of the starting state; check the frequencies over many sweeps (chi-square)."""
    model = make_model("lda", {"n_topics": 4, "alpha": 0.5, "beta": 0.1, "resync_every": 0})
    data = model.prepare(tiny_corpus())
    start = model.init_state(data, seed=0)
    d, w, old = data.doc[0], data.word[0], start["z"][0]
    nwk = start["word_topic"][w].astype(float)
    nk = start["topic_total"].astype(float)
    ndk = start["doc_topic"][d].astype(float)
    nwk[old] -= 1
    nk[old] -= 1
    ndk[old] -= 1
    p = (nwk + 0.1) / (nk + 0.1 * data.n_words) * (ndk + 0.5)
    p /= p.sum()
    rng = np.random.default_rng(0)
    n = 20_000
    counts = np.zeros(4)
    for _ in range(n):
        s = {k: v.copy() for k, v in start.items()}
        u = np.concatenate([rng.random(1), np.zeros(data.n_tokens - 1)])
        gibbs_sweep(data.doc[:1], data.word[:1], s["z"], s["doc_topic"], s["word_topic"], s["topic_total"], u[:1], 0.5, 0.1)
        counts[s["z"][0]] += 1
    chi2 = float(((counts - n * p) ** 2 / (n * p)).sum())
    assert chi2 < 16.3  # 99.9% quantile of chi-square with 3 degrees of freedom


def test_lda_likelihood_increases_and_counts_match_assignments():
    model = make_model("lda", {"n_topics": 3, "resync_every": 0})
    data = model.prepare(tiny_corpus())
    state = model.init_state(data, seed=0)
    losses = [model.objective(state, data)]
    for k in range(1, 60):
        model.step(state, data, iteration_rng(0, k))
        losses.append(model.objective(state, data))
        assert np.array_equal(state["word_topic"], _counts(state["z"], data.word, data.n_words, 3))
        assert np.array_equal(state["doc_topic"], _counts(state["z"], data.doc, data.n_docs, 3))
    assert np.mean(losses[-10:]) < losses[0] - 0.1
    assert state["clipped"][0] == 0  # an unperturbed run never clips


def test_lda_likelihood_matches_the_lda_package_after_the_same_sweeps():
    """Same corpus, K, priors and number of sweeps: our sampler reaches the log-likelihood the
    `lda` package's does (different random streams, so within a tolerance)."""
    import lda

    corpus = load_dataset("reuters")
    model = make_model("lda", {"n_topics": 10, "alpha": 0.1, "beta": 0.01, "resync_every": 0})
    data = model.prepare(corpus)
    state = model.init_state(data, seed=0)
    for k in range(1, 101):
        model.step(state, data, iteration_rng(0, k))
    ours = model.log_likelihood(state, data)
    X = count_matrix(corpus).toarray()
    reference = lda.LDA(n_topics=10, n_iter=100, alpha=0.1, eta=0.01, random_state=0, refresh=1000).fit(X)
    theirs = reference.loglikelihood()
    assert abs(ours - theirs) / abs(theirs) < 0.01


def test_lda_state_stays_valid_after_recovering_stale_counts():
    """Stale counts (from iteration 0) restored for half the words: the sampler clips instead of
    using negative counts, nothing is NaN, and the next resync restores consistency."""
    model = make_model("lda", {"n_topics": 3, "resync_every": 5})
    data = model.prepare(tiny_corpus())
    base = run_baseline(model, data, seed=0, max_iters=40, tol=0.05)
    T = max(2, base.k_base - 1)
    state = base.state_at(T)
    lost = np.zeros(data.n_words, dtype=bool)
    lost[::2] = True
    state["word_topic"][lost] = base.snapshots["word_topic"][0][lost]
    model.after_recovery(state, data, {"word_topic": lost})
    assert np.array_equal(state["topic_total"], state["word_topic"].sum(axis=0))
    total = int(state["word_topic"].sum())
    for k in range(T + 1, T + 6):
        model.step(state, data, iteration_rng(base.seed, k))
        assert (state["word_topic"] >= 0).all() and (state["topic_total"] >= 0).all()
        assert np.isfinite(model.objective(state, data))
        # No phantom counts: a move the stale table cannot apply is not applied at all, so the
        # table keeps its total between resyncs, and topic_total stays its column sums.
        assert np.array_equal(state["topic_total"], state["word_topic"].sum(axis=0))
        if state["sweep"][0] % 5:
            assert int(state["word_topic"].sum()) == total
    assert state["clipped"][0] > 0  # the stale rows were hit
    assert state["sweep"][0] % 5 == 0  # a resync happened at the last step
    assert np.array_equal(state["word_topic"], _counts(state["z"], data.word, data.n_words, 3))


def test_lda_recovered_run_from_slightly_stale_counts_reaches_the_target():
    model = make_model("lda", {"n_topics": 3, "resync_every": 5})
    data = model.prepare(tiny_corpus())
    base = run_baseline(model, data, seed=0, max_iters=40, tol=0.05)
    T = base.k_base - 2
    state = base.state_at(T)
    lost = np.arange(data.n_words) % 4 == 0
    state["word_topic"][lost] = base.snapshots["word_topic"][T - 2][lost]
    model.after_recovery(state, data, {"word_topic": lost})
    run = run_from(model, data, state, start=T, target=base.target, cap=base.k_base * 3, seed=base.seed)
    assert run.censor_reason in ("", "cap")  # never diverged
    assert run.k_reached is not None


def test_lda_rejects_a_rating_dataset():
    model = make_model("lda", {})
    with pytest.raises(ValueError, match="corpus dataset"):
        model.prepare(low_rank_ratings())


@pytest.mark.parametrize(
    "params, name",
    [({"n_topics": 0}, "n_topics"), ({"alpha": 0}, "alpha"), ({"beta": "x"}, "beta"), ({"resync_every": -1}, "resync_every")],
)
def test_lda_bad_hyperparameters_are_named(params, name):
    with pytest.raises(ValueError, match=name):
        make_model("lda", params)


def test_lda_rebuild_recounts_the_lost_words_from_the_assignments_exactly():
    model = make_model("lda", {"n_topics": 3, "resync_every": 5})
    data = model.prepare(tiny_corpus())
    base = run_baseline(model, data, seed=0, max_iters=40, tol=0.05)
    T = base.k_base // 2
    state = base.state_at(T)
    lost = np.arange(data.n_words) % 3 == 0
    state["word_topic"][lost] = base.snapshots["word_topic"][0][lost]  # stale checkpoint rows
    model.rebuild(state, data, {"word_topic": lost})
    model.after_recovery(state, data, {"word_topic": lost})
    for name, want in base.state_at(T).items():
        assert np.array_equal(state[name], want), name


def test_als_rebuild_solves_the_lost_user_rows_from_the_item_factors():
    model = make_model("mf", {"rank": 3, "l2": 0.1})
    data = model.prepare(low_rank_ratings())
    base = run_baseline(model, data, seed=0, max_iters=15, tol=0.01)
    state = base.state_at(3)
    lost = {"U": np.arange(data.n_users) % 4 == 0, "V": np.zeros(data.n_items, dtype=bool)}
    state["U"][lost["U"]] = 0.0
    model.rebuild(state, data, lost)
    # The first half of sweep 4 solves every U row from V at 3: the rebuilt rows are those.
    after = base.state_at(3)
    model.step(after, data, iteration_rng(0, 4))
    np.testing.assert_allclose(state["U"][lost["U"]], after["U"][lost["U"]], rtol=1e-10)
    assert np.array_equal(state["U"][~lost["U"]], base.state_at(3)["U"][~lost["U"]])


def test_als_rebuild_solves_the_lost_item_rows_from_the_surviving_users():
    model = make_model("mf", {"rank": 3, "l2": 0.1})
    data = model.prepare(low_rank_ratings())
    base = run_baseline(model, data, seed=0, max_iters=15, tol=0.01)
    T = 3
    lost_v = np.arange(data.n_items) % 3 == 0
    # No user lost: V at T was solved from U at T over every rater, so the rebuild gives it back.
    state = base.state_at(T)
    state["V"][lost_v] = 0.0
    model.rebuild(state, data, {"U": np.zeros(data.n_users, dtype=bool), "V": lost_v})
    np.testing.assert_allclose(state["V"], base.state_at(T)["V"], rtol=1e-10, atol=1e-12)
    # Users lost too: each lost item is the ridge solve over its surviving raters (closed form),
    # the survivors' rows are untouched, and the lost users are then solved from the new V.
    lost_u = np.arange(data.n_users) % 4 == 0
    state = base.state_at(T)
    state["V"][lost_v] = 0.0
    model.rebuild(state, data, {"U": lost_u, "V": lost_v})
    U = base.state_at(T)["U"]
    for i in np.flatnonzero(lost_v)[:5]:
        raters = (data.item == i) & ~lost_u[data.user]
        X, y = U[data.user[raters]], data.rating[raters]
        want = np.linalg.solve(X.T @ X + 0.1 * max(int(raters.sum()), 1) * np.eye(3), X.T @ y)
        np.testing.assert_allclose(state["V"][i], want, rtol=1e-8)
    assert np.array_equal(state["V"][~lost_v], base.state_at(T)["V"][~lost_v])
    assert np.array_equal(state["U"][~lost_u], U[~lost_u])
    after = {"U": state["U"].copy(), "V": state["V"].copy()}
    model.step(after, data, iteration_rng(0, T + 1))  # its first half solves every U row from V
    np.testing.assert_allclose(state["U"][lost_u], after["U"][lost_u], rtol=1e-10)
