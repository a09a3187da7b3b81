"""What a lost row costs when it is restored from a checkpoint: the seam between a model, which
knows what its rows do, and the ``sensitive_priority`` checkpoint policy, which spends the save
budget where a restore would cost most (docs/design.md §4.5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

__all__ = ["RestoreCost"]


class RestoreCost(Protocol):
    """A model's per-row cost of restoring a row's saved value while training is at ``current``
    (what a lost row would cost if it were restored now).

    Called with the current server arrays and the checkpoint's values; returns, for the arrays
    it prices, one finite cost >= 0 per row (0 for a row equal to its saved value). Arrays it
    leaves out are priced by their change since the last save, as in SCAR."""

    #: Identifies the cost in a policy's config (a saved state loads only into an equal one).
    name: str

    def __call__(self, current: Mapping[str, np.ndarray], saved: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]: ...
