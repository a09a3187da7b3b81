"""The shared argument checks name the argument and say what was wanted."""

from __future__ import annotations

import numpy as np
import pytest

from scar._checks import check_int, check_number


@pytest.mark.parametrize("value", [0, -3, 1.0, True, "2", None])
def test_check_int_refuses_non_positive_and_non_integers(value):
    with pytest.raises(ValueError, match=r"n_users must be a positive integer"):
        check_int("n_users", value)


def test_check_int_accepts_numpy_integers_and_honours_the_minimum():
    check_int("k", np.int64(3))
    check_int("seed", 0, minimum=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        check_int("seed", -1, minimum=0)
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        check_int("k", 1, minimum=2)


@pytest.mark.parametrize(
    "value, message", [(float("nan"), "finite"), (np.inf, "finite"), (True, "finite"), ("1", "finite"), (-0.5, "non-negative")]
)
def test_check_number(value, message):
    with pytest.raises(ValueError, match=f"noise must be a {message}|noise must be {message}"):
        check_number("noise", value)


def test_check_number_positive():
    check_number("l2", np.float32(0.1), positive=True)
    check_number("l2", 0)
    with pytest.raises(ValueError, match="l2 must be positive"):
        check_number("l2", 0, positive=True)
