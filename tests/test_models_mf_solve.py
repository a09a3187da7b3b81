"""MatrixFactorization.solve_factor: ranges of rows solved as a sweep solves them (the live
runtime's data-parallel ALS relies on it)."""

from __future__ import annotations

import numpy as np
import pytest

from scar.datasets import load_dataset
from scar.measure.engine import iteration_rng
from scar.models import make_model


def test_ranges_of_rows_are_one_sweep_bit_for_bit() -> None:
    model = make_model("mf", {"rank": 4, "l2": 0.05})
    data = model.prepare(load_dataset("movielens", "embedded"))
    state = model.init_state(data, 0)
    swept = {n: a.copy() for n, a in state.items()}
    model.step(swept, data, iteration_rng(0, 1))
    U = np.concatenate([model.solve_factor("U", state, data, lo, hi) for lo, hi in [(0, 300), (300, data.n_users)]])
    assert np.array_equal(U, swept["U"])
    half = {"U": U, "V": state["V"]}
    V = np.concatenate([model.solve_factor("V", half, data, lo, hi) for lo, hi in [(0, 1000), (1000, data.n_items)]])
    assert np.array_equal(V, swept["V"])
    with pytest.raises(ValueError, match="factor must be"):
        model.solve_factor("W", state, data, 0, 1)
