"""Multinomial logistic regression trained by minibatch SGD.

One iteration is one epoch: a pass over the training data in minibatches, in an order drawn
from the iteration's random stream. The parameter server holds the weight matrix ``W`` of shape
(n_features + 1, n_classes), the last row being the bias; blocks are its rows, i.e. one block
per input feature. The objective is the mean cross-entropy plus ``l2 / 2 * ||W||^2``; the L2
term makes it strongly convex, so the fixed point is unique.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scar._checks import check_int, check_number
from scar.models.base import Model, State


@dataclass(frozen=True)
class _Data:
    X: np.ndarray  # (n, d + 1) with a bias column
    Y: np.ndarray  # (n, k) one-hot
    y: np.ndarray  # (n,)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class LogisticRegression(Model):
    """Multinomial logistic regression, minibatch SGD.

    Parameters
    ----------
    learning_rate : step size of SGD.
    batch_size : examples per minibatch.
    l2 : L2 regularisation strength.
    lr_decay : the step size in epoch ``k`` is ``learning_rate / (1 + lr_decay * k)`` (the epoch
        counter is part of the state, so a recovered run keeps the schedule).
    init_scale : standard deviation of the initial weights (0 gives zeros).
    """

    name = "mlr"
    iteration = "one epoch of minibatch SGD over the training set"
    objective_name = "cross-entropy + L2"
    server_params = ("W",)
    stochastic = True

    def __init__(
        self,
        learning_rate: float = 0.5,
        batch_size: int = 100,
        l2: float = 1e-4,
        lr_decay: float = 0.0,
        init_scale: float = 0.0,
    ) -> None:
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.l2 = l2
        self.lr_decay = lr_decay
        self.init_scale = init_scale

    def check_params(self) -> None:
        check_number("learning_rate", self.learning_rate, positive=True)
        check_number("l2", self.l2)
        check_number("lr_decay", self.lr_decay)
        check_number("init_scale", self.init_scale)
        check_int("batch_size", self.batch_size)

    def prepare(self, dataset) -> _Data:
        X = np.asarray(dataset.arrays["X"], dtype=np.float64)
        y = np.asarray(dataset.arrays["y"], dtype=np.int64)
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise ValueError(f"mlr needs X of shape (n, d) and y of shape (n,), got {X.shape} and {y.shape}")
        k = int(y.max()) + 1
        Xb = np.ascontiguousarray(np.hstack([X, np.ones((X.shape[0], 1))]))
        Y = np.zeros((X.shape[0], k))
        Y[np.arange(X.shape[0]), y] = 1.0
        return _Data(X=Xb, Y=Y, y=y)

    def server_shapes(self, dims):
        # One row per feature plus the bias row.
        return {"W": (dims["n_features"] + 1, dims["n_classes"])}

    def init_state(self, data: _Data, seed: int) -> State:
        d, k = data.X.shape[1], data.Y.shape[1]
        rng = np.random.default_rng(seed)
        W = self.init_scale * rng.standard_normal((d, k)) if self.init_scale else np.zeros((d, k))
        return {"W": W, "epoch": np.zeros(1, dtype=np.int64)}

    def step(self, state: State, data: _Data, rng: np.random.Generator) -> None:
        W = state["W"]
        lr = self.learning_rate / (1.0 + self.lr_decay * float(state["epoch"][0]))
        n = data.X.shape[0]
        order = rng.permutation(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            Xb = data.X[idx]
            P = _softmax(Xb @ W)
            P -= data.Y[idx]
            grad = Xb.T @ P
            grad /= idx.size
            grad += self.l2 * W
            W -= lr * grad
        state["epoch"][0] += 1

    def objective(self, state: State, data: _Data) -> float:
        W = state["W"]
        Z = data.X @ W
        Z -= Z.max(axis=1, keepdims=True)
        logp = Z[np.arange(Z.shape[0]), data.y] - np.log(np.exp(Z).sum(axis=1))
        return float(-logp.mean() + 0.5 * self.l2 * np.vdot(W, W))

    def accuracy(self, state: State, data: _Data) -> float:
        """Training accuracy (for reports)."""
        return float(((data.X @ state["W"]).argmax(axis=1) == data.y).mean())
