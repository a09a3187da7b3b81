"""Perturbation kinds: requested norms, dtypes kept, only the chosen blocks touched; and the
study's runs on the quadratic, where the bound holds in every run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scar.measure import perturbations as P
from scar.measure.engine import iteration_rng
from scar.models import make_model


def _x(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return {"a": rng.integers(0, 50, (20, 5)).astype(dtype), "b": rng.integers(0, 50, (7, 3)).astype(dtype)}
    return {"a": rng.standard_normal((20, 5)).astype(dtype), "b": rng.standard_normal((7, 3)).astype(dtype)}


@pytest.mark.parametrize("norm", [1e-6, 0.3, 12.0])
def test_gaussian_and_adversarial_give_the_requested_norm(norm):
    x, final = _x(), _x(seed=1)
    new, got = P.gaussian(x, norm, np.random.default_rng(0))
    assert got == pytest.approx(norm, rel=1e-9)
    assert P.norm_of(new, x) == pytest.approx(norm, rel=1e-9)
    new, got = P.adversarial(x, final, norm)
    assert got == pytest.approx(norm, rel=1e-9)
    # Pointed away from the final parameters: the distance to them grows by exactly the norm.
    assert P.norm_of(new, final) == pytest.approx(P.norm_of(x, final) + norm, rel=1e-9)


def test_integer_arrays_stay_integer_non_negative_and_report_the_rounded_norm():
    x = _x(np.int32)
    new, got = P.gaussian(x, 40.0, np.random.default_rng(0))
    for n in x:
        assert new[n].dtype == np.int32
        assert (new[n] >= 0).all()
    assert got == pytest.approx(P.norm_of(new, x))
    assert got == pytest.approx(40.0, rel=0.2)  # rounding moves it, a little
    new, got = P.gaussian(x, 0.1, np.random.default_rng(0))  # below the integer grid: nothing moves
    assert got == 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("kind", ["gaussian", "adversarial", "reset", "rollback", "float16", "bfloat16", "int8"])
def test_every_kind_keeps_shapes_and_dtypes(kind, dtype):
    x, other = _x(dtype), _x(dtype, seed=1)
    rng = np.random.default_rng(0)
    if kind == "gaussian":
        new, _ = P.gaussian(x, 1.0, rng)
    elif kind == "adversarial":
        new, _ = P.adversarial(x, other, 1.0)
    elif kind in ("reset", "rollback"):
        new, _, _ = getattr(P, kind)(x, other, 0.25, rng)
    else:
        new, _ = P.precision(x, kind)
    for n in x:
        assert new[n].dtype == x[n].dtype and new[n].shape == x[n].shape


def test_reset_and_rollback_touch_only_the_chosen_blocks():
    x, x0 = _x(), _x(seed=5)
    new, norm, rows = P.reset(x, x0, 0.25, np.random.default_rng(3))
    assert sum(int(r.sum()) for r in rows.values()) == round(0.25 * 27)
    for n in x:
        np.testing.assert_array_equal(new[n][rows[n]], x0[n][rows[n]])
        np.testing.assert_array_equal(new[n][~rows[n]], x[n][~rows[n]])
    assert norm == pytest.approx(np.sqrt(sum(np.sum((x[n][rows[n]] - x0[n][rows[n]]) ** 2) for n in x)))
    with pytest.raises(ValueError, match="fraction"):
        P.rollback(x, x0, 0.0, np.random.default_rng(0))


def test_precision_grids():
    a = np.array([[1.0 + 2**-11, 3.14159265, 1e5, -7e4]])
    assert P.round_to(a, "float16")[0, 0] == 1.0  # 10-bit mantissa: half an ulp rounds to even
    assert P.round_to(a, "float16")[0, 2] == np.finfo(np.float16).max  # saturates, no inf
    b = P.round_to(a, "bfloat16")
    assert b[0, 1] == pytest.approx(3.140625)  # 8-bit mantissa
    assert np.all(np.abs(b - a) <= np.abs(a) * 2**-8)
    q = P.round_to(np.linspace(-1, 1, 1000)[None, :], "int8")
    assert np.unique(q).size <= 256
    assert np.max(np.abs(q - np.linspace(-1, 1, 1000))) <= 1 / 255 + 1e-12
    with pytest.raises(ValueError, match="format"):
        P.round_to(a, "fp8")
    # Counts below 2048 are exact in float16: no perturbation at all.
    x = {"n": np.arange(60, dtype=np.int64).reshape(12, 5)}
    assert P.precision(x, "float16")[1] == 0.0


def test_stale_update_on_gradient_descent():
    model = make_model("quadratic", {"step_size": 0.1})
    state = model.init_state(None, 0)
    stale = {"x": state["x"] * 2.0}
    out = P.stale_update(model, None, state, stale, iteration_rng(0, 1))
    # x + (f(x_stale) - x_stale) = x - eta * lambda * x_stale
    np.testing.assert_allclose(out["x"], state["x"] - 0.1 * stale["x"])
    with pytest.raises(ValueError, match="kind"):
        P.get_kind("bitflip")


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 6),
    norm=st.floats(1e-8, 1e4),
    seed=st.integers(0, 2**31),
    integer=st.booleans(),
)
def test_gaussian_norm_and_dtype_property(rows, cols, norm, seed, integer):
    rng = np.random.default_rng(seed)
    x = {"a": rng.integers(0, 100, (rows, cols)) if integer else rng.standard_normal((rows, cols))}
    new, got = P.gaussian(x, norm, rng)
    assert new["a"].dtype == x["a"].dtype and new["a"].shape == x["a"].shape
    assert got == pytest.approx(P.norm_of(new, x), rel=1e-12, abs=1e-12)
    if integer:
        assert (new["a"] >= 0).all()
    else:
        assert got == pytest.approx(norm, rel=1e-9)
