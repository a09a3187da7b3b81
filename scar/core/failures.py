"""The failure model: a partial failure loses a seeded set of parameter-server nodes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Failure:
    """Server nodes ``failed_nodes`` are lost right after iteration ``iteration`` completes.

    The failure strikes before that iteration's checkpoint is written, so recovery uses saves
    from iterations ``< iteration`` only (a failure exactly on a checkpoint boundary is not
    free).
    """

    iteration: int
    failed_nodes: tuple[int, ...]

    def lost_blocks(self, node_of_block: np.ndarray) -> np.ndarray:
        """Boolean mask of the blocks held by the failed nodes."""
        return np.isin(node_of_block, np.asarray(self.failed_nodes, dtype=np.int64))


def n_failed_nodes(n_nodes: int, fraction: float) -> int:
    """Nodes lost by a failure of ``fraction`` of ``n_nodes`` (rounded, at least one)."""
    if n_nodes < 1:
        raise ValueError(f"n_nodes must be >= 1, got {n_nodes}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"failure fraction must be in (0, 1], got {fraction}")
    # Halves round up (Python's round() would give 2 of 5 nodes for f = 0.5 but 2 of 3).
    return max(1, int(np.floor(fraction * n_nodes + 0.5)))


def sample_failed_nodes(n_nodes: int, fraction: float, rng: np.random.Generator) -> tuple[int, ...]:
    """A uniformly random set of ``n_failed_nodes(n_nodes, fraction)`` nodes, sorted."""
    k = n_failed_nodes(n_nodes, fraction)
    return tuple(int(i) for i in np.sort(rng.choice(n_nodes, size=k, replace=False)))


def check_window(window: tuple[float, float]) -> tuple[float, float]:
    """``window`` (where failures strike, as fractions of ``K_base``) as floats, or a ValueError
    saying what is wrong with it."""
    try:
        lo, hi = (float(x) for x in window)
    except (TypeError, ValueError):
        raise ValueError(f"failure window must be two numbers [start, end], got {window!r}") from None
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"failure window must satisfy 0 <= start < end <= 1, got {[lo, hi]}")
    return lo, hi
