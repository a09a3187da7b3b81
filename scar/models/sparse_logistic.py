"""Binary logistic regression on sparse (hashed) features, full-batch gradient descent.

The model of the runtime's scale curve (the paper's large-scale run was logistic regression on
Criteo). The parameter server holds the weight vector as ``w`` of shape (n_features, 1): one
block per feature. One iteration is one gradient step on the whole training set; the objective
is the mean log-loss plus ``l2 / 2 * ||w||^2``. Deterministic: it draws nothing from its stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from scar._checks import check_number
from scar.models.base import Model, State


@dataclass(frozen=True)
class _SparseData:
    X: sp.csr_matrix  # (n, d)
    y: np.ndarray  # (n,) float 0/1


class SparseLogisticRegression(Model):
    """Logistic regression on a CSR design matrix (``row_ptr``, ``feature``, ``value``, ``y``)."""

    name = "sparse_lr"
    iteration = "one full-batch gradient step"
    objective_name = "log-loss + L2"
    server_params = ("w",)

    def __init__(self, learning_rate: float = 0.1, l2: float = 1e-6) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2

    def check_params(self) -> None:
        check_number("learning_rate", self.learning_rate, positive=True)
        check_number("l2", self.l2)

    def prepare(self, dataset) -> _SparseData:
        a = dataset.arrays
        n, d = a["row_ptr"].size - 1, int(a["n_features"][0])
        X = sp.csr_matrix((a["value"], a["feature"], a["row_ptr"]), shape=(n, d))
        return _SparseData(X=X, y=np.asarray(a["y"], dtype=np.float64))

    def init_state(self, data: _SparseData, seed: int) -> State:
        return {"w": np.zeros((data.X.shape[1], 1))}

    def step(self, state: State, data: _SparseData, rng: np.random.Generator) -> None:
        w = state["w"]
        p = 1.0 / (1.0 + np.exp(-(data.X @ w[:, 0])))
        grad = data.X.T @ ((p - data.y) / data.X.shape[0])
        w[:, 0] -= self.learning_rate * (grad + self.l2 * w[:, 0])

    def objective(self, state: State, data: _SparseData) -> float:
        w = state["w"][:, 0]
        z = data.X @ w
        # log(1 + e^z) - y z, stably
        loss = np.logaddexp(0.0, z) - data.y * z
        return float(loss.mean() + 0.5 * self.l2 * np.dot(w, w))
