"""Parameter blocks and their placement on parameter-server nodes.

A model's server-held parameters are a few named 2D arrays; every row of every array is one
*block* (docs/design.md §3). Blocks get global ids in array order, so block ``i`` of array
``names[j]`` is row ``i - offsets[j]``. Blocks are spread over ``n_nodes`` server nodes.

Per-block change norms (:meth:`BlockLayout.block_distances`) run in chunks of rows at memory
speed; :func:`set_num_threads` lets their float32 kernel and the checkpoint row copies use more
than the calling thread (default 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from scar.core._rows import get_num_threads, row_sq_distances, set_num_threads

__all__ = ["BlockLayout", "PlacementScheme", "assign_blocks", "get_num_threads", "params_distance", "set_num_threads"]

PlacementScheme = Literal["round_robin", "hashed"]


@dataclass(frozen=True)
class BlockLayout:
    """The blocks (rows) of a set of named 2D arrays.

    Parameters
    ----------
    names : names of the arrays, in block-id order.
    n_rows : rows of each array (blocks contributed by it).
    widths : columns of each array (parameters per block).
    """

    names: tuple[str, ...]
    n_rows: tuple[int, ...]
    widths: tuple[int, ...]

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> BlockLayout:
        """Layout of ``arrays`` (each must be 2D), in the mapping's order."""
        for name, a in arrays.items():
            if np.ndim(a) != 2:
                raise ValueError(f"parameter array {name!r} must be 2D (rows are blocks), got shape {np.shape(a)}")
        return cls(
            names=tuple(arrays),
            n_rows=tuple(int(a.shape[0]) for a in arrays.values()),
            widths=tuple(int(a.shape[1]) for a in arrays.values()),
        )

    @property
    def n_blocks(self) -> int:
        return int(sum(self.n_rows))

    @property
    def offsets(self) -> np.ndarray:
        """First block id of each array."""
        return np.concatenate([[0], np.cumsum(self.n_rows)[:-1]]).astype(np.int64)

    @property
    def block_sizes(self) -> np.ndarray:
        """Parameters in each block, shape (n_blocks,)."""
        return np.repeat(np.asarray(self.widths, dtype=np.int64), self.n_rows)

    @property
    def n_params(self) -> int:
        return int(sum(r * w for r, w in zip(self.n_rows, self.widths)))

    def rows_of(self, block_mask: np.ndarray) -> dict[str, np.ndarray]:
        """Split a boolean mask over all blocks into row indices per array."""
        block_mask = np.asarray(block_mask, dtype=bool)
        if block_mask.shape != (self.n_blocks,):
            raise ValueError(f"block mask must have shape ({self.n_blocks},), got {block_mask.shape}")
        out = {}
        for name, start, n in zip(self.names, self.offsets, self.n_rows):
            out[name] = np.flatnonzero(block_mask[start : start + n])
        return out

    def row_masks(self, block_mask: np.ndarray) -> dict[str, np.ndarray]:
        """Split a boolean mask over all blocks into a boolean row mask per array."""
        block_mask = np.asarray(block_mask, dtype=bool)
        if block_mask.shape != (self.n_blocks,):
            raise ValueError(f"block mask must have shape ({self.n_blocks},), got {block_mask.shape}")
        return {name: block_mask[start : start + n] for name, start, n in zip(self.names, self.offsets, self.n_rows)}

    def block_distances(self, a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> np.ndarray:
        """Euclidean norm of ``a - b`` per block, shape (n_blocks,), float64.

        Computed per chunk of rows, without model-sized temporaries. For float64 and integer
        arrays every value is bit-identical to ``sqrt(einsum("ij,ij->i", d, d))`` on the float64
        difference ``d`` of the whole array. For float32 arrays the difference is taken in
        float32 and its squares summed in float64 by a compiled kernel (the last bits may differ
        from the float64 formula, and between CPUs); see :mod:`scar.core._rows`.
        """
        out = np.empty(self.n_blocks, dtype=np.float64)
        for name, start, n in zip(self.names, self.offsets, self.n_rows):
            row_sq_distances(a[name], b[name], out[start : start + n])
        return np.sqrt(out, out=out)


def params_distance(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], names: tuple[str, ...]) -> float:
    """Euclidean norm of ``a - b`` over the arrays ``names`` taken together."""
    total = 0.0
    for n in names:
        d = np.asarray(a[n], dtype=np.float64) - np.asarray(b[n], dtype=np.float64)
        total += float(np.vdot(d, d))
    return float(np.sqrt(total))


def assign_blocks(n_blocks: int, n_nodes: int, scheme: PlacementScheme = "round_robin", seed: int = 0) -> np.ndarray:
    """Server node of each block.

    ``round_robin`` puts block ``i`` on node ``i % n_nodes``; ``hashed`` shuffles the blocks with
    ``seed`` first (as a hash partitioner would), keeping node loads within one block.
    """
    if n_nodes < 1:
        raise ValueError(f"n_nodes must be >= 1, got {n_nodes}")
    if n_blocks < n_nodes:
        raise ValueError(f"{n_blocks} blocks cannot be spread over {n_nodes} server nodes")
    nodes = np.arange(n_blocks, dtype=np.int64) % n_nodes
    if scheme == "round_robin":
        return nodes
    if scheme == "hashed":
        return np.random.default_rng(seed).permutation(nodes)
    raise ValueError(f"unknown placement scheme {scheme!r}; expected 'round_robin' or 'hashed'")
