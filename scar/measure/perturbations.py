"""Perturbations of the server parameters, of controlled kind and size (docs/design.md §2).

The theory bounds the rework of *any* perturbation, not only a checkpoint recovery. Each kind
here takes the server parameters ``x`` (the arrays named in ``model.server_params``) and returns
the perturbed copy and the norm ``||x' - x||`` it actually caused:

- ``gaussian``: isotropic Gaussian noise scaled to a given norm;
- ``adversarial``: the same norms, pointed away from the final parameters (``x - x_final``);
- ``reset``: a random subset of blocks (rows) back to their initial values ``x_0``;
- ``rollback``: a random subset of blocks back to a stale copy (the checkpoint case);
- ``precision``: every parameter rounded to the ``float16``, ``bfloat16`` or ``int8`` grid;
- ``staleness``: one iteration's update computed from parameters ``k`` iterations old and
  applied to the current ones (as an asynchronous worker with stale reads does).

Dtypes are kept: a perturbed integer array (for example LDA's word-topic counts) is rounded to
integers and clipped at zero, so the norm reported is the one after rounding, which can differ
from the norm asked for. ``float16`` saturates at its largest finite value (65504) instead of
overflowing to infinity. :data:`KINDS` lists the kinds by name with what their level means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scar.core.blocks import BlockLayout, params_distance
from scar.models.base import Model, State

#: Number formats of the ``precision`` kind.
FORMATS: tuple[str, ...] = ("float16", "bfloat16", "int8")


def _names(x: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    return tuple(x)


def cast_like(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``values`` in the dtype of ``like``: integers are rounded and clipped at zero."""
    if np.issubdtype(like.dtype, np.integer):
        return np.clip(np.rint(values), 0, None).astype(like.dtype)
    return np.asarray(values, dtype=like.dtype)


def norm_of(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """``||a - b||`` over all arrays of ``a``."""
    return params_distance(a, b, _names(a))


def _scaled(x: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray], norm: float) -> tuple[State, float]:
    if not norm >= 0:
        raise ValueError(f"perturbation norm must be non-negative, got {norm}")
    length = norm_of(direction, {n: np.zeros_like(a, dtype=np.float64) for n, a in direction.items()})
    if length == 0:
        raise ValueError("the perturbation direction is zero: it cannot be scaled to a norm")
    out = {n: cast_like(np.asarray(x[n], dtype=np.float64) + direction[n] * (norm / length), x[n]) for n in x}
    return out, norm_of(out, x)


def gaussian(x: Mapping[str, np.ndarray], norm: float, rng: np.random.Generator) -> tuple[State, float]:
    """``x + delta``, ``delta`` isotropic Gaussian with ``||delta|| = norm`` (before any rounding)."""
    return _scaled(x, {n: rng.standard_normal(np.shape(a)) for n, a in x.items()}, norm)


def adversarial(x: Mapping[str, np.ndarray], x_final: Mapping[str, np.ndarray], norm: float) -> tuple[State, float]:
    """``x + delta``, ``delta`` of norm ``norm`` pointing away from ``x_final`` (along ``x - x_final``)."""
    direction = {n: np.asarray(x[n], dtype=np.float64) - np.asarray(x_final[n], dtype=np.float64) for n in x}
    return _scaled(x, direction, norm)


def choose_blocks(x: Mapping[str, np.ndarray], fraction: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A boolean row mask per array: ``round(fraction * n_blocks)`` blocks (at least one) at random."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"block fraction must be in (0, 1], got {fraction}")
    layout = BlockLayout.from_arrays(x)
    n = max(1, int(round(fraction * layout.n_blocks)))
    mask = np.zeros(layout.n_blocks, dtype=bool)
    mask[rng.choice(layout.n_blocks, size=n, replace=False)] = True
    return layout.row_masks(mask)


def replace_blocks(
    x: Mapping[str, np.ndarray], source: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray]
) -> tuple[State, float]:
    """``x`` with the rows ``rows`` taken from ``source``."""
    out = {}
    for n, a in x.items():
        b = np.array(a, copy=True)
        b[rows[n]] = cast_like(np.asarray(source[n])[rows[n]], a)
        out[n] = b
    return out, norm_of(out, x)


def reset(
    x: Mapping[str, np.ndarray], x_0: Mapping[str, np.ndarray], fraction: float, rng: np.random.Generator
) -> tuple[State, float, dict[str, np.ndarray]]:
    """A random ``fraction`` of the blocks back to their initial values; also returns the rows."""
    rows = choose_blocks(x, fraction, rng)
    return (*replace_blocks(x, x_0, rows), rows)


def rollback(
    x: Mapping[str, np.ndarray], x_stale: Mapping[str, np.ndarray], fraction: float, rng: np.random.Generator
) -> tuple[State, float, dict[str, np.ndarray]]:
    """A random ``fraction`` of the blocks back to a stale copy ``x_stale``; also returns the rows."""
    rows = choose_blocks(x, fraction, rng)
    return (*replace_blocks(x, x_stale, rows), rows)


def _bfloat16(a: np.ndarray) -> np.ndarray:
    """Round to the nearest bfloat16 (8-bit mantissa; round half to even), as float64."""
    f = np.asarray(a, dtype=np.float32)
    u = f.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def _int8(a: np.ndarray) -> np.ndarray:
    """Affine 8-bit quantisation over the array's range (256 levels), as float64."""
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    if hi == lo:
        return a.copy()
    scale = (hi - lo) / 255.0
    return np.rint((a - lo) / scale) * scale + lo


def round_to(a: np.ndarray, fmt: str) -> np.ndarray:
    """``a`` rounded to the grid of number format ``fmt`` (one of :data:`FORMATS`), as float64."""
    if fmt == "float16":
        big = float(np.finfo(np.float16).max)
        return np.clip(np.asarray(a, dtype=np.float64), -big, big).astype(np.float16).astype(np.float64)
    if fmt == "bfloat16":
        return _bfloat16(a)
    if fmt == "int8":
        return _int8(a)
    raise ValueError(f"unknown number format {fmt!r}; expected one of {FORMATS}")


def precision(x: Mapping[str, np.ndarray], fmt: str) -> tuple[State, float]:
    """Every server array rounded to the grid of ``fmt`` (then back to its own dtype)."""
    out = {n: cast_like(round_to(a, fmt), a) for n, a in x.items()}
    return out, norm_of(out, x)


def stale_update(
    model: Model, data: Any, state: State, stale_server: Mapping[str, np.ndarray], rng: np.random.Generator
) -> State:
    """One iteration whose update is computed from stale server parameters.

    ``state`` is the full state after iteration ``T``; iteration ``T + 1`` runs (with ``rng``,
    its common random stream) from ``state`` with the server arrays replaced by
    ``stale_server``, and its update ``f(x_stale) - x_stale`` is added to the current server
    arrays: the result holds ``x_T + f(x_stale) - x_stale`` and the worker state of the stale
    step. Compare it with the unperturbed state after ``T + 1`` for the norm. ``state`` is not
    modified.
    """
    stale = {n: np.array(a, copy=True) for n, a in state.items()}
    for n in model.server_params:
        stale[n] = np.array(stale_server[n], copy=True)
    model.step(stale, data, rng)
    for n in model.server_params:
        update = np.asarray(stale[n], dtype=np.float64) - np.asarray(stale_server[n], dtype=np.float64)
        stale[n] = cast_like(np.asarray(state[n], dtype=np.float64) + update, state[n])
    return stale


@dataclass(frozen=True)
class Kind:
    """A perturbation kind: what its level is, and whether the level sets the norm."""

    name: str
    level: str
    controls_norm: bool


#: The perturbation kinds by name.
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("gaussian", "norm, as a multiple of ||x_0 - x_final||", True),
        Kind("adversarial", "norm, as a multiple of ||x_0 - x_final||", True),
        Kind("reset", "fraction of blocks reset to x_0", False),
        Kind("rollback", "fraction of blocks rolled back by perturbations.rollback_staleness iterations", False),
        Kind("precision", "number format (float16, bfloat16, int8)", False),
        Kind("staleness", "k: one update computed from parameters k iterations old", False),
    )
}


def get_kind(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"unknown perturbation kind {name!r}; expected one of {sorted(KINDS)}")
    return KINDS[name]


#: Signature shared by the kind functions above, for reference.
PerturbFn = Callable[..., tuple[State, float]]
