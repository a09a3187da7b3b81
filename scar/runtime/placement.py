"""Which server rows each shard holds (docs/design.md §11).

The blocks of the server arrays (their rows, :class:`~scar.core.blocks.BlockLayout`) go to
server nodes by :func:`~scar.core.blocks.assign_blocks`, exactly as in the simulation; shard
``j`` holds, for every array, the rows of the blocks on node ``j``, in increasing order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scar.core.blocks import BlockLayout, assign_blocks


@dataclass(frozen=True)
class ShardMap:
    """The rows of node ``j``: ``rows[j][name]`` (sorted global row indices of array ``name``)."""

    layout: BlockLayout
    node_of_block: np.ndarray
    rows: tuple[dict[str, np.ndarray], ...]

    @classmethod
    def build(cls, layout: BlockLayout, n_nodes: int, placement: str = "round_robin", seed: int = 0) -> ShardMap:
        node_of_block = assign_blocks(layout.n_blocks, n_nodes, placement, seed)  # type: ignore[arg-type]
        per_array = layout.row_masks(np.ones(layout.n_blocks, dtype=bool))
        rows = []
        for j in range(n_nodes):
            mine = layout.row_masks(node_of_block == j)
            rows.append({n: np.flatnonzero(mine[n]) for n in per_array})
        return cls(layout, node_of_block, tuple(rows))

    @property
    def n_nodes(self) -> int:
        return len(self.rows)

    def split(self, arrays: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Each node's rows of ``arrays`` (copies, C-contiguous)."""
        return [{n: np.ascontiguousarray(arrays[n][r]) for n, r in mine.items()} for mine in self.rows]

    def local_rows(self, node: int, rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Global row indices ``rows[name]`` (sorted) of node ``node``, as its local row indices."""
        out = {}
        for n, idx in rows.items():
            mine = self.rows[node][n]
            local = np.searchsorted(mine, idx)
            hit = local < mine.size
            hit[hit] = mine[local[hit]] == idx[hit]
            out[n] = local[hit].astype(np.int64)
        return out

    def nodes_of_rows(self, rows: Mapping[str, np.ndarray]) -> tuple[int, ...]:
        """The nodes holding any row of the boolean masks ``rows``."""
        block = np.concatenate([np.asarray(rows[n], dtype=bool) for n in self.layout.names])
        return tuple(int(j) for j in np.unique(self.node_of_block[block]))

    def row_masks_of(self, nodes: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Boolean row mask per array of the rows held by ``nodes``."""
        return self.layout.row_masks(np.isin(self.node_of_block, np.asarray(nodes, dtype=np.int64)))
