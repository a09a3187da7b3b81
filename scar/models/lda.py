"""Latent Dirichlet allocation trained by collapsed Gibbs sampling.

One iteration is one sweep over all tokens of the corpus, in document order: each token's
topic is resampled from its full conditional ``p(z = k) ~ (n_wk + beta) / (n_k + V beta) *
(n_dk + alpha)`` (Griffiths and Steyvers 2004), with the inner loop compiled by numba. The
objective is minus the collapsed log joint likelihood ``log p(w, z)`` per token (lower is
better), computed from the assignments ``z``: it is the quantity the chain actually moves.

Parameter server and workers (docs/design.md §5): the server holds the word-topic count table
``word_topic`` (blocks = words); the token assignments ``z`` and the document-topic counts
``doc_topic`` live with the workers and survive a server failure. The topic totals
``topic_total`` are the column sums of the server table, recomputed whenever it changes.

After a recovery the restored rows are stale: they no longer count the current assignments.
Our choice, as parameter-server LDA systems do it (Yahoo! LDA, LightLDA): the sampler goes on
with the server's counts, applying each token's move (a decrement of its old topic, an
increment of its new one) to them; a move whose decrement finds the count already at zero is
not applied to the table at all (it is counted in ``clipped``), so the table never gains
phantom counts and ``topic_total`` stays its column sums. Every ``resync_every`` sweeps the
server table is rebuilt from the workers' assignments, which removes whatever inconsistency is
left. Between a recovery and the next resync the sampler
draws from perturbed conditionals: that, and the assignments it moves, is the rework a
failure causes. ``resync_every = 0`` never resyncs (the offset then persists; the chain still
stays valid because counts used as probabilities are never negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy.special import gammaln

from scar._checks import check_int, check_number
from scar.models.base import Model, State


@dataclass(frozen=True)
class _Corpus:
    doc: np.ndarray  # (n_tokens,) int32, document of each token, tokens grouped by document
    word: np.ndarray  # (n_tokens,) int32
    n_docs: int
    n_words: int

    @property
    def n_tokens(self) -> int:
        return len(self.word)


@numba.njit(cache=True)
def gibbs_sweep(doc, word, z, doc_topic, word_topic, topic_total, uniforms, alpha, beta):  # pragma: no cover - compiled
    """One collapsed-Gibbs sweep over all tokens, in place; returns how many tokens found no
    count of theirs in the (stale) server table and so moved only in the workers' state.
    ``uniforms`` holds one U(0, 1) draw per token."""
    n_topics = topic_total.shape[0]
    v_beta = beta * word_topic.shape[0]
    cumulative = np.empty(n_topics)
    clipped = 0
    for i in range(word.shape[0]):
        d, w, old = doc[i], word[i], z[i]
        doc_topic[d, old] -= 1
        # A stale table may hold no count for this token's (word, topic): then the move is not
        # applied to the table at all (neither the decrement nor the increment), so it never
        # gains counts it should not have and topic_total stays its column sums.
        counted = word_topic[w, old] > 0
        if counted:
            word_topic[w, old] -= 1
            topic_total[old] -= 1
        else:
            clipped += 1
        total = 0.0
        for k in range(n_topics):
            total += (word_topic[w, k] + beta) / (topic_total[k] + v_beta) * (doc_topic[d, k] + alpha)
            cumulative[k] = total
        u = uniforms[i] * total
        # Binary search for the first k with cumulative[k] > u.
        lo, hi = 0, n_topics - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cumulative[mid] > u:
                hi = mid
            else:
                lo = mid + 1
        z[i] = lo
        doc_topic[d, lo] += 1
        if counted:
            word_topic[w, lo] += 1
            topic_total[lo] += 1
    return clipped


def _counts(z: np.ndarray, index: np.ndarray, n_rows: int, n_topics: int) -> np.ndarray:
    """(n_rows, n_topics) counts of the (index, topic) pairs."""
    flat = np.bincount(index.astype(np.int64) * n_topics + z, minlength=n_rows * n_topics)
    return flat.reshape(n_rows, n_topics).astype(np.int32)


class LDA(Model):
    """Latent Dirichlet allocation, collapsed Gibbs sampling.

    Parameters
    ----------
    n_topics : number of topics K.
    alpha : symmetric Dirichlet prior of document-topic proportions.
    beta : symmetric Dirichlet prior of topic-word distributions.
    resync_every : rebuild the server's counts from the assignments every this many sweeps
        (0: never). See the module docstring.
    """

    name = "lda"
    iteration = "one collapsed-Gibbs sweep over all tokens"
    objective_name = "minus log p(w, z) per token"
    server_params = ("word_topic",)
    stochastic = True
    rebuilds = ("word_topic",)

    def __init__(self, n_topics: int = 20, alpha: float = 0.1, beta: float = 0.01, resync_every: int = 10) -> None:
        self.n_topics = n_topics
        self.alpha = alpha
        self.beta = beta
        self.resync_every = resync_every

    def check_params(self) -> None:
        check_int("n_topics", self.n_topics)
        check_int("resync_every", self.resync_every, minimum=0)
        check_number("alpha", self.alpha, positive=True)
        check_number("beta", self.beta, positive=True)

    def prepare(self, dataset) -> _Corpus:
        arrays = dataset.arrays
        missing = {"doc_ptr", "word", "count", "vocabulary"} - set(arrays)
        if missing:
            raise ValueError(
                f"lda needs a corpus dataset (doc_ptr, word, count, vocabulary); {dataset.name!r} lacks {sorted(missing)}"
            )
        counts = np.asarray(arrays["count"], dtype=np.int64)
        n_docs = len(arrays["doc_ptr"]) - 1
        entry_doc = np.repeat(np.arange(n_docs), np.diff(arrays["doc_ptr"]))
        return _Corpus(
            doc=np.repeat(entry_doc, counts).astype(np.int32),
            word=np.repeat(np.asarray(arrays["word"]), counts).astype(np.int32),
            n_docs=n_docs,
            n_words=len(arrays["vocabulary"]),
        )

    def server_shapes(self, dims):
        return {"word_topic": (dims["n_words"], self.n_topics)}

    def init_state(self, data: _Corpus, seed: int) -> State:
        z = np.random.default_rng(seed).integers(0, self.n_topics, size=data.n_tokens).astype(np.int32)
        word_topic = _counts(z, data.word, data.n_words, self.n_topics)
        return {
            "word_topic": word_topic,
            "topic_total": word_topic.sum(axis=0, dtype=np.int64),
            "doc_topic": _counts(z, data.doc, data.n_docs, self.n_topics),
            "z": z,
            "sweep": np.zeros(1, dtype=np.int64),
            "clipped": np.zeros(1, dtype=np.int64),
        }

    def step(self, state: State, data: _Corpus, rng: np.random.Generator) -> None:
        uniforms = rng.random(data.n_tokens)
        state["clipped"][0] += gibbs_sweep(
            data.doc, data.word, state["z"], state["doc_topic"], state["word_topic"], state["topic_total"],
            uniforms, float(self.alpha), float(self.beta),
        )  # fmt: skip
        state["sweep"][0] += 1
        if self.resync_every and state["sweep"][0] % self.resync_every == 0:
            self.resync(state, data)

    def resync(self, state: State, data: _Corpus) -> None:
        """Rebuild the server's counts from the workers' assignments."""
        state["word_topic"][:] = _counts(state["z"], data.word, data.n_words, self.n_topics)
        state["topic_total"][:] = state["word_topic"].sum(axis=0)

    def rebuild(self, state: State, data: _Corpus, lost_rows) -> None:
        # The server's table is a function of the workers' assignments: the lost words' counts
        # are recounted from z exactly (a system that knows its model needs no checkpoint here).
        lost = np.asarray(lost_rows["word_topic"], dtype=bool)
        keep = lost[data.word]
        recount = _counts(state["z"][keep], data.word[keep], data.n_words, self.n_topics)
        state["word_topic"][lost] = recount[lost]
        state["topic_total"][:] = state["word_topic"].sum(axis=0)

    def after_recovery(self, state: State, data: _Corpus, lost_rows) -> None:
        # The server's topic totals are the sums of its (now partly stale) table.
        state["topic_total"][:] = state["word_topic"].sum(axis=0)

    def log_likelihood(self, state: State, data: _Corpus) -> float:
        """Collapsed log joint ``log p(w, z)`` of the assignments (Griffiths and Steyvers 2004)."""
        K, V, a, b = self.n_topics, data.n_words, float(self.alpha), float(self.beta)
        nwk = _counts(state["z"], data.word, V, K)
        ndk = state["doc_topic"]
        nk = nwk.sum(axis=0)
        nd = ndk.sum(axis=1)
        ll = K * (gammaln(V * b) - V * gammaln(b)) + float(gammaln(nwk + b).sum() - gammaln(nk + V * b).sum())
        ll += data.n_docs * (gammaln(K * a) - K * gammaln(a)) + float(gammaln(ndk + a).sum() - gammaln(nd + K * a).sum())
        return ll

    def objective(self, state: State, data: _Corpus) -> float:
        return -self.log_likelihood(state, data) / data.n_tokens

    def perplexity(self, state: State, data: _Corpus) -> float:
        """``exp`` of the objective."""
        return math.exp(self.objective(state, data))
