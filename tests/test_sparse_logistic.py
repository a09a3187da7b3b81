"""The synthetic Criteo stand-in and the sparse logistic regression of the runtime's scale curve."""

from __future__ import annotations

import numpy as np
import pytest

from scar.datasets.criteo import N_CATEGORICAL, N_NUMERIC, criteo_standin
from scar.measure.engine import iteration_rng
from scar.models.sparse_logistic import SparseLogisticRegression


def test_standin_has_criteos_shape_and_says_it_is_synthetic() -> None:
    ds = criteo_standin(500, 1000, seed=3)
    assert ds.synthetic and "synthetic" in ds.description
    a = ds.arrays
    assert a["row_ptr"].size == 501 and a["feature"].size == 500 * (N_NUMERIC + N_CATEGORICAL)
    assert a["feature"].min() >= 0 and a["feature"].max() < N_NUMERIC + 1000
    assert set(np.unique(a["y"])) == {0, 1}
    again = criteo_standin(500, 1000, seed=3)
    assert all(np.array_equal(a[k], again.arrays[k]) for k in a)


def test_gradient_steps_descend_and_match_a_dense_computation() -> None:
    model = SparseLogisticRegression(learning_rate=0.1, l2=1e-3)
    data = model.prepare(criteo_standin(400, 200, seed=0))
    state = model.init_state(data, 0)
    losses = [model.objective(state, data)]
    assert np.isclose(losses[0], np.log(2.0))
    dense, y = data.X.toarray(), data.y
    w = state["w"][:, 0].copy()
    for k in range(1, 6):
        model.step(state, data, iteration_rng(0, k))
        p = 1 / (1 + np.exp(-(dense @ w)))
        w -= 0.1 * (dense.T @ (p - y) / y.size + 1e-3 * w)
        losses.append(model.objective(state, data))
    np.testing.assert_allclose(state["w"][:, 0], w, rtol=1e-12, atol=1e-14)
    assert all(b < a for a, b in zip(losses, losses[1:]))


def test_partition_splits_sparse_data_by_rows() -> None:
    pytest.importorskip("ray", reason="scar.runtime needs ray (pip install -e '.[test]' installs it)")
    from scar.runtime.worker import partition

    model = SparseLogisticRegression()
    data = model.prepare(criteo_standin(101, 50, seed=0))
    parts = [partition(data, i, 3) for i in range(3)]
    assert sum(p.X.shape[0] for p in parts) == 101
    assert np.array_equal(np.concatenate([p.y for p in parts]), data.y)
    assert (abs(parts[1].X - data.X[33:67]).sum()) == 0
