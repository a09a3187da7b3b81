"""Explicit-feedback matrix factorization trained by alternating least squares (ALS).

Ratings ``r_ui`` (centred on their mean) are approximated by ``u_u . v_i`` with rank-``rank``
factors. One iteration is one ALS sweep: every user row of ``U`` is solved exactly from ``V``,
then every item row of ``V`` from the new ``U``, with weighted-lambda regularisation (ALS-WR,
Zhou et al. 2008: a row with ``n`` ratings gets ``l2 * n``). The objective is the regularised
squared error per rating, which ALS never increases; :meth:`rmse` reports the fit.

The parameter server holds both factor matrices; blocks are their rows (one per user, one per
item). Because a sweep recomputes ``U`` from ``V`` alone, **a perturbation of ``U`` between
sweeps is erased by the next sweep, exactly**: the run continues bit for bit as if nothing had
happened. Only ``V`` (the factor solved last) carries state from one sweep to the next, so a
failure can hurt only through the item rows it loses (and, under full recovery, through the
rollback of all of ``V``). Those rows are one solve away from the surviving users' rows, which
is what :meth:`MatrixFactorization.rebuild` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from scar._checks import check_int, check_number
from scar.models.base import Model, State


@dataclass(frozen=True)
class _Ratings:
    by_user: tuple[np.ndarray, np.ndarray, np.ndarray]  # CSR: indptr, item, rating
    by_item: tuple[np.ndarray, np.ndarray, np.ndarray]  # CSR: indptr, user, rating
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray  # centred
    mean: float

    @property
    def n_users(self) -> int:
        return len(self.by_user[0]) - 1

    @property
    def n_items(self) -> int:
        return len(self.by_item[0]) - 1


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int):
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, np.ascontiguousarray(cols[order]), np.ascontiguousarray(values[order])


@numba.njit(cache=True)
def _solve_rows(indptr, cols, values, other, l2, out):  # pragma: no cover - compiled
    """out[r] = argmin_x sum_p (values[p] - x . other[cols[p]])^2 + l2 * n_r * ||x||^2."""
    k = other.shape[1]
    A = np.empty((k, k))
    b = np.empty(k)
    for r in range(len(indptr) - 1):
        A[:] = 0.0
        b[:] = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            v = other[cols[p]]
            for a in range(k):
                b[a] += values[p] * v[a]
                for c in range(a + 1):
                    A[a, c] += v[a] * v[c]
        reg = l2 * max(indptr[r + 1] - indptr[r], 1)
        for a in range(k):
            A[a, a] += reg
            for c in range(a):
                A[c, a] = A[a, c]
        out[r] = np.linalg.solve(A, b)


@numba.njit(cache=True)
def _user_solve_shift(indptr, cols, values, user, current, saved, l2, out):  # pragma: no cover - compiled
    """out[i] += ||A_u^-1 [(r_ui - u . s_i) s_i - (r_ui - u . v_i) v_i]||^2 over the users u who
    rated item i: how far item i's saved row s_i, put in place of its current row v_i, moves
    each user's next solve (first order; A_u is the user's normal matrix from ``current``)."""
    k = current.shape[1]
    A = np.empty((k, k))
    g = np.empty(k)
    for u in range(len(indptr) - 1):
        lo, hi = indptr[u], indptr[u + 1]
        if lo == hi:
            continue
        A[:] = 0.0
        for p in range(lo, hi):
            v = current[cols[p]]
            for a in range(k):
                for c in range(a + 1):
                    A[a, c] += v[a] * v[c]
        for a in range(k):
            A[a, a] += l2 * (hi - lo)
            for c in range(a):
                A[c, a] = A[a, c]
        Ainv = np.linalg.inv(A)
        x = user[u]
        for p in range(lo, hi):
            i = cols[p]
            v, w = current[i], saved[i]
            ev = values[p] - np.dot(x, v)
            ew = values[p] - np.dot(x, w)
            for a in range(k):
                g[a] = ew * w[a] - ev * v[a]
            out[i] += np.sum(np.square(Ainv @ g))


@dataclass(frozen=True, eq=False)  # holds the ratings: compared by identity, not by arrays
class AlsRestoreCost:
    """ALS's cost of restoring an item row ``V[i]`` from its last save: the norm of the shift
    its saved value would make to the next sweep's user solves, over the users who rated it.

    A sweep solves each user's row from ``V`` first (``U`` is erased, so it is not priced here;
    its array weighs 0), then ``V`` from the new users. Putting a stale ``s_i`` in place of
    ``v_i`` changes user ``u``'s normal equations by ``(r_ui - u . s_i) s_i - (r_ui - u . v_i) v_i``
    (right-hand side less matrix times ``u``), which ``A_u^-1`` turns into the shift of ``u``. The
    Euclidean change ``||s_i - v_i||`` SCAR ranks by ignores both how many users an item reaches
    and that a small saved row (the initial factors) pulls the users less than a full-size
    stale one. One pass costs about one user half-sweep."""

    data: _Ratings
    l2: float
    name: str = "als_user_solve_shift"

    def __call__(self, current, saved):
        out = np.zeros(self.data.n_items)
        _user_solve_shift(
            *self.data.by_user, np.ascontiguousarray(current["U"], dtype=np.float64),
            np.ascontiguousarray(current["V"], dtype=np.float64), np.ascontiguousarray(saved["V"], dtype=np.float64),
            float(self.l2), out,
        )  # fmt: skip
        return {"V": np.sqrt(out)}


class MatrixFactorization(Model):
    """Matrix factorization by ALS.

    Parameters
    ----------
    rank : number of latent factors.
    l2 : regularisation; a row with ``n`` ratings is penalised by ``l2 * n * ||row||^2``.
    init_scale : standard deviation of the initial factors (``U``'s is irrelevant: it is
        solved first).
    """

    name = "mf"
    iteration = "one ALS sweep: all user rows, then all item rows, solved exactly"
    objective_name = "regularised squared error per rating"
    server_params = ("U", "V")
    rebuilds = ("U", "V")

    def __init__(self, rank: int = 10, l2: float = 0.05, init_scale: float = 0.1) -> None:
        self.rank = rank
        self.l2 = l2
        self.init_scale = init_scale

    def check_params(self) -> None:
        check_int("rank", self.rank)
        check_number("l2", self.l2, positive=True)
        check_number("init_scale", self.init_scale, positive=True)

    def prepare(self, dataset) -> _Ratings:
        arrays = dataset.arrays
        missing = {"user", "item", "rating", "shape"} - set(arrays)
        if missing:
            raise ValueError(f"mf needs a rating dataset (user, item, rating, shape); {dataset.name!r} lacks {sorted(missing)}")
        user = np.asarray(arrays["user"], dtype=np.int64)
        item = np.asarray(arrays["item"], dtype=np.int64)
        rating = np.asarray(arrays["rating"], dtype=np.float64)
        n_users, n_items = (int(n) for n in arrays["shape"])
        mean = float(rating.mean())
        centred = rating - mean
        return _Ratings(
            by_user=_csr(user, item, centred, n_users),
            by_item=_csr(item, user, centred, n_items),
            user=user,
            item=item,
            rating=centred,
            mean=mean,
        )

    def sensitivity(self) -> dict[str, float]:
        # A sweep solves U from V before anything reads U: a perturbation of U costs nothing.
        return {"U": 0.0, "V": 1.0}

    def restore_cost(self, data: _Ratings) -> AlsRestoreCost:
        return AlsRestoreCost(data, float(self.l2))

    def server_shapes(self, dims):
        return {"U": (dims["n_users"], self.rank), "V": (dims["n_items"], self.rank)}

    def init_state(self, data: _Ratings, seed: int) -> State:
        rng = np.random.default_rng(seed)
        return {
            "U": self.init_scale * rng.standard_normal((data.n_users, self.rank)),
            "V": self.init_scale * rng.standard_normal((data.n_items, self.rank)),
        }

    def rebuild(self, state: State, data: _Ratings, lost_rows) -> None:
        # An item's row is one solve away from the users who rated it: solve each lost item
        # from the surviving users alone (their rows are current; the lost users' are restored,
        # stale), as the second half of a sweep would from all of them. An item none of the
        # survivors rated keeps its restored row. Then each lost user's row is solved from the
        # new V (the first half of a sweep).
        lost_u = np.asarray(lost_rows["U"], dtype=bool)
        lost_v = np.asarray(lost_rows["V"], dtype=bool)
        if lost_v.any():
            keep = lost_v[data.item] & ~lost_u[data.user]
            indptr, users, ratings = _csr(data.item[keep], data.user[keep], data.rating[keep], data.n_items)
            solved = np.empty_like(state["V"])
            _solve_rows(indptr, users, ratings, state["U"], float(self.l2), solved)
            rated = lost_v & (np.diff(indptr) > 0)
            state["V"][rated] = solved[rated]
        if lost_u.any():
            solved = np.empty_like(state["U"])
            _solve_rows(*data.by_user, state["V"], float(self.l2), solved)
            state["U"][lost_u] = solved[lost_u]

    def step(self, state: State, data: _Ratings, rng: np.random.Generator) -> None:
        # ALS is deterministic: rng is not used.
        _solve_rows(*data.by_user, state["V"], float(self.l2), state["U"])
        _solve_rows(*data.by_item, state["U"], float(self.l2), state["V"])

    def solve_factor(self, factor: str, state: State, data: _Ratings, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo..hi-1`` of ``U`` (from ``V``) or of ``V`` (from ``U``), solved exactly as a
        sweep solves them: each row's solve is independent of the others', so workers owning
        ranges of rows compute a sweep's half together, bit for bit (the live runtime's
        data-parallel ALS)."""
        if factor not in ("U", "V"):
            raise ValueError(f"factor must be 'U' or 'V', got {factor!r}")
        indptr, cols, values = data.by_user if factor == "U" else data.by_item
        out = np.empty((hi - lo, self.rank))
        _solve_rows(indptr[lo : hi + 1], cols, values, state["V" if factor == "U" else "U"], float(self.l2), out)
        return out

    def _residuals(self, state: State, data: _Ratings) -> np.ndarray:
        return data.rating - np.einsum("ij,ij->i", state["U"][data.user], state["V"][data.item])

    def objective(self, state: State, data: _Ratings) -> float:
        U, V = state["U"], state["V"]
        sq = float(np.square(self._residuals(state, data)).sum())
        n_u = np.diff(data.by_user[0])
        n_i = np.diff(data.by_item[0])
        reg = self.l2 * (float(n_u @ np.square(U).sum(axis=1)) + float(n_i @ np.square(V).sum(axis=1)))
        return (sq + reg) / len(data.rating)

    def rmse(self, state: State, data: _Ratings) -> float:
        """Root mean squared error on the training ratings."""
        return float(np.sqrt(np.mean(np.square(self._residuals(state, data)))))
