"""Argument checks shared by the datasets and the models: each error names the argument."""

from __future__ import annotations

import numbers

import numpy as np


def check_int(name: str, value: object, minimum: int = 1) -> None:
    """Raise ValueError unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        wanted = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {wanted}, got {value!r}")


def check_number(name: str, value: object, *, positive: bool = False) -> None:
    """Raise ValueError unless ``value`` is a finite real number (not a bool), >= 0, and > 0
    if ``positive``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value!r}")
