"""An embedding recommender (NCF-like) on explicit ratings, trained by minibatch SGD (torch).

A rating ``r_ui`` (centred on the mean) is predicted as ``p_u . q_i + mlp([p_u, q_i])``: a
dot product of the user's and the item's embeddings (``dim`` each) plus a one-hidden-layer MLP
(``hidden`` ReLU units) over their concatenation, as in NCF's NeuMF. The objective is the mean
over all ratings of ``(r_ui - pred)^2 + l2 (||p_u||^2 + ||q_i||^2)``; a minibatch's gradient
is unbiased for it, and only the embedding rows the minibatch looks up receive one.

One iteration is ``batches_per_iteration`` minibatches of ``batch_size`` ratings drawn without
replacement from the iteration's stream. Server state (docs/design.md §7.3): the two embedding
tables, one row per user or item (CPR's blocks), and the MLP's two layers, one row per output
unit ([weights | bias]). Plain SGD, as CPR trains DLRM: there is no optimizer state, and an
iteration changes only the embedding rows it looks up, which :meth:`touched_rows` reports (every
MLP row once per minibatch) for the ``frequency`` checkpoint policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scar._checks import check_int, check_number
from scar.models._torch import DTYPE, Layer, deterministic
from scar.models.base import Model, State


@dataclass(frozen=True)
class _Ratings:
    user: torch.Tensor  # (n,) int64
    item: torch.Tensor  # (n,) int64
    rating: torch.Tensor  # (n,) float32, centred
    n_users: int
    n_items: int
    user_counts: np.ndarray  # ratings per user, float64
    item_counts: np.ndarray


class EmbeddingRecommender(Model):
    """User and item embedding tables plus a small MLP, minibatch SGD.

    Parameters
    ----------
    dim : embedding width.
    hidden : hidden units of the MLP.
    learning_rate : SGD step size of the embeddings, per rating (a looked-up row moves by
        ``learning_rate`` times the gradient of its ratings' own loss, as in SGD for matrix
        factorization).
    mlp_learning_rate : SGD step size of the MLP, on the minibatch's mean loss.
    l2 : per-rating L2 weight of the looked-up embeddings.
    batch_size, batches_per_iteration : ratings per minibatch and minibatches per iteration.
    init_scale : standard deviation of the initial embeddings.
    """

    name = "ncf"
    iteration = "a fixed number of minibatches of SGD"
    objective_name = "squared error + L2 of the looked-up embeddings, per rating"
    server_params = ("user_emb", "item_emb", "mlp1", "mlp2")
    stochastic = True

    def __init__(
        self,
        dim: int = 16,
        hidden: int = 16,
        learning_rate: float = 0.02,
        mlp_learning_rate: float = 0.05,
        l2: float = 0.02,
        batch_size: int = 1000,
        batches_per_iteration: int = 5,
        init_scale: float = 0.1,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.learning_rate = learning_rate
        self.mlp_learning_rate = mlp_learning_rate
        self.l2 = l2
        self.batch_size = batch_size
        self.batches_per_iteration = batches_per_iteration
        self.init_scale = init_scale

    def check_params(self) -> None:
        check_number("learning_rate", self.learning_rate, positive=True)
        check_number("mlp_learning_rate", self.mlp_learning_rate, positive=True)
        check_number("l2", self.l2)
        check_number("init_scale", self.init_scale)
        for key in ("dim", "hidden", "batch_size", "batches_per_iteration"):
            check_int(key, getattr(self, key))

    def _layers(self) -> tuple[Layer, Layer]:
        return Layer("mlp1", int(self.hidden), 2 * int(self.dim), slots=0), Layer("mlp2", 1, int(self.hidden), slots=0)

    def server_shapes(self, dims):
        mlp1, mlp2 = self._layers()
        return {
            "user_emb": (dims["n_users"], int(self.dim)),
            "item_emb": (dims["n_items"], int(self.dim)),
            "mlp1": (mlp1.n_out, mlp1.width),
            "mlp2": (mlp2.n_out, mlp2.width),
        }

    def prepare(self, dataset) -> _Ratings:
        deterministic()
        a = dataset.arrays
        user, item = np.asarray(a["user"], dtype=np.int64), np.asarray(a["item"], dtype=np.int64)
        rating = np.asarray(a["rating"], dtype=np.float64)
        if not user.shape == item.shape == rating.shape or user.ndim != 1:
            raise ValueError(
                f"ncf needs user, item and rating arrays of one length, got {user.shape}, {item.shape}, {rating.shape}"
            )
        n_users, n_items = (int(x) for x in a["shape"])
        centred = (rating - rating.mean()).astype(DTYPE)
        return _Ratings(
            torch.from_numpy(user),
            torch.from_numpy(item),
            torch.from_numpy(centred),
            n_users,
            n_items,
            np.bincount(user, minlength=n_users).astype(np.float64),
            np.bincount(item, minlength=n_items).astype(np.float64),
        )

    def init_state(self, data: _Ratings, seed: int) -> State:
        rng = np.random.default_rng(seed)
        mlp1, mlp2 = self._layers()
        d = int(self.dim)
        return {
            "user_emb": (self.init_scale * rng.standard_normal((data.n_users, d))).astype(DTYPE),
            "item_emb": (self.init_scale * rng.standard_normal((data.n_items, d))).astype(DTYPE),
            "mlp1": mlp1.init(rng),
            "mlp2": mlp2.init(rng),
        }

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The ratings of the iteration, in minibatch order (the one draw from the stream)."""
        return rng.permutation(n)[: min(n, self.batch_size * self.batches_per_iteration)]

    def _n_batches(self, n: int) -> int:
        return -(-min(n, self.batch_size * self.batches_per_iteration) // self.batch_size)

    def touched_rows(self, data: _Ratings, rng: np.random.Generator) -> dict[str, np.ndarray]:
        picked = self._sample(data.rating.numel(), rng)
        mlp1, mlp2 = self._layers()
        nb = self._n_batches(data.rating.numel())
        return {
            "user_emb": data.user.numpy()[picked],
            "item_emb": data.item.numpy()[picked],
            "mlp1": np.repeat(np.arange(mlp1.n_out), nb),
            "mlp2": np.repeat(np.arange(mlp2.n_out), nb),
        }

    def _predict(self, p: torch.Tensor, q: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.linear(torch.cat([p, q], dim=1), w1[:, :-1], w1[:, -1]))
        return (p * q).sum(1) + F.linear(h, w2[:, :-1], w2[:, -1])[:, 0]

    def step(self, state: State, data: _Ratings, rng: np.random.Generator) -> None:
        mlp1, mlp2 = self._layers()
        U, V = torch.from_numpy(state["user_emb"]), torch.from_numpy(state["item_emb"])
        lr, l2 = float(self.learning_rate), float(self.l2)
        mlp_lr = float(self.mlp_learning_rate)
        order = torch.from_numpy(self._sample(data.rating.numel(), rng))
        for start in range(0, order.numel(), self.batch_size):
            idx = order[start : start + self.batch_size]
            u, i, r = data.user[idx], data.item[idx], data.rating[idx]
            p, q = U[u].requires_grad_(True), V[i].requires_grad_(True)
            w1, w2 = mlp1.leaf(state["mlp1"]), mlp2.leaf(state["mlp2"])
            err = r - self._predict(p, q, w1, w2)
            loss = (err.square() + l2 * (p.square().sum(1) + q.square().sum(1))).mean()
            gp, gq, g1, g2 = torch.autograd.grad(loss, (p, q, w1, w2))
            with torch.no_grad():
                # Sparse updates, each rating's own gradient (n times the mean's); a user rated
                # twice in the minibatch gets both.
                U.index_add_(0, u, gp, alpha=-lr * idx.numel())
                V.index_add_(0, i, gq, alpha=-lr * idx.numel())
                mlp1.update(state["mlp1"], g1, mlp_lr, 0.0, 0.0)
                mlp2.update(state["mlp2"], g2, mlp_lr, 0.0, 0.0)

    def _squared_errors(self, state: State, data: _Ratings) -> torch.Tensor:
        p = F.embedding(data.user, torch.from_numpy(state["user_emb"]))
        q = F.embedding(data.item, torch.from_numpy(state["item_emb"]))
        w1, w2 = (torch.from_numpy(state[n]) for n in ("mlp1", "mlp2"))
        return (data.rating - self._predict(p, q, w1, w2)).square()

    def objective(self, state: State, data: _Ratings) -> float:
        with torch.no_grad():
            squared = float(self._squared_errors(state, data).double().mean())
        # The L2 term per rating, as sum over rows of (ratings of the row) * ||row||^2.
        reg = sum(
            float(counts @ np.square(state[n].astype(np.float64)).sum(1))
            for n, counts in (("user_emb", data.user_counts), ("item_emb", data.item_counts))
        )
        return squared + float(self.l2) * reg / data.rating.numel()

    def rmse(self, state: State, data: _Ratings) -> float:
        """Root-mean-square training error (for reports)."""
        with torch.no_grad():
            return float(self._squared_errors(state, data).double().mean().sqrt())
