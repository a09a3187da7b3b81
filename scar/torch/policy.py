"""A checkpoint policy chosen on the parameters, saving their optimizer rows with them
(docs/design.md §12.2).

:class:`RowGroupPolicy` wraps any :class:`~scar.checkpoint.policies.CheckpointPolicy`: the
wrapped policy sees only the parameter arrays (its priority is each parameter row's change since
its last save, its access counts those of the parameter rows), over a layout whose block widths
count the parameter row *and* its optimizer state rows, so the I/O budget ``r * d`` covers both.
Every selected parameter row is saved with its optimizer rows; the scalar arrays (the
optimizer's ``step``) go with every save, outside the budget (8 bytes per scalar).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from scar.checkpoint.policies import CheckpointPolicy
from scar.checkpoint.stores import Checkpoint
from scar.core.blocks import BlockLayout

__all__ = ["RowGroupPolicy"]


class RowGroupPolicy(CheckpointPolicy):
    """``inner`` choosing parameter rows; each row's ``groups`` arrays saved with it.

    Parameters
    ----------
    inner : the policy that picks parameter rows (priority, frequency, full, ...).
    groups : parameter array name -> names of the arrays row-aligned with it (its optimizer state).
    always : arrays saved in full with every save (the scalar state).
    """

    def __init__(self, inner: CheckpointPolicy, groups: Mapping[str, tuple[str, ...]], always: tuple[str, ...] = ()) -> None:
        super().__init__(inner.interval, inner.fraction)
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.uses_accesses = inner.uses_accesses  # type: ignore[misc]
        self.groups = {p: tuple(g) for p, g in groups.items()}
        self.always = tuple(always)
        self._param_layout: tuple[BlockLayout, BlockLayout] | None = None

    def param_layout(self, layout: BlockLayout) -> BlockLayout:
        """The parameter arrays as blocks whose widths count their optimizer rows too."""
        if self._param_layout is None or self._param_layout[0] != layout:
            width = dict(zip(layout.names, layout.widths))
            rows = dict(zip(layout.names, layout.n_rows))
            names = tuple(self.groups)
            widths = tuple(width[p] + sum(width[s] for s in self.groups[p]) for p in names)
            self._param_layout = (layout, BlockLayout(names=names, n_rows=tuple(rows[p] for p in names), widths=widths))
        return self._param_layout[1]

    def is_due(self, k: int) -> bool:
        return self.inner.is_due(k)

    def budget(self, layout: BlockLayout) -> int:
        return self.inner.budget(self.param_layout(layout))

    def select(self, k, layout, current, saved, accesses=None):
        params = self.param_layout(layout)
        current_p = {p: current[p] for p in params.names}
        saved_p = Checkpoint(
            values={p: saved.values[p] for p in params.names}, saved_at={p: saved.saved_at[p] for p in params.names}
        )
        if self.uses_accesses:
            offsets = dict(zip(layout.names, layout.offsets))
            counts = np.concatenate([accesses[offsets[p] : offsets[p] + n] for p, n in zip(params.names, params.n_rows)])
            mask = self.inner.select(k, params, current_p, saved_p, accesses=counts)
        else:
            mask = self.inner.select(k, params, current_p, saved_p)
        rows = params.row_masks(mask)
        by_name = dict(rows)
        for p, members in self.groups.items():
            for m in members:
                by_name[m] = rows[p]
        for a, n in zip(layout.names, layout.n_rows):
            if a in self.always:
                by_name[a] = np.ones(n, dtype=bool)
        return np.concatenate([by_name[a] for a in layout.names])

    def config(self) -> dict[str, Any]:
        return {**self.inner.config(), "optimizer_rows": True}

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def __repr__(self) -> str:
        return f"RowGroupPolicy({self.inner!r})"
