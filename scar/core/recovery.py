"""Recovery policies and strategies (SCAR.md section 3).

After a failure, ``full`` recovery rolls every block back to the checkpoint (traditional);
``partial`` recovery gives only the lost blocks their saved values and keeps the survivors'
current values (SCAR). A strategy is a (checkpoint policy, recovery policy) pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from scar.checkpoint.stores import Checkpoint

RecoveryPolicy = Literal["full", "partial"]
RECOVERY_POLICIES: tuple[str, ...] = ("full", "partial")


def recover(
    policy: RecoveryPolicy,
    current: Mapping[str, np.ndarray],
    checkpoint: Checkpoint,
    lost_rows: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Server parameters after recovery; ``current`` is not modified.

    Parameters
    ----------
    policy : ``"full"`` or ``"partial"``.
    current : the parameters at the failure (the survivors' values; lost rows are garbage).
    checkpoint : what the store holds.
    lost_rows : boolean row mask per array, true for blocks on failed nodes.
    """
    if policy == "full":
        return {n: np.array(checkpoint.values[n], copy=True) for n in current}
    if policy == "partial":
        out = {}
        for n, a in current.items():
            restored = np.array(a, copy=True)
            mask = np.asarray(lost_rows[n], dtype=bool)
            restored[mask] = checkpoint.values[n][mask]
            out[n] = restored
        return out
    raise ValueError(f"unknown recovery policy {policy!r}; expected one of {RECOVERY_POLICIES}")


@dataclass(frozen=True)
class Strategy:
    """A named (checkpoint policy, recovery policy) pair."""

    name: str
    checkpoint: str
    recovery: RecoveryPolicy

    @property
    def fractional(self) -> bool:
        """Whether the checkpoint policy takes a fraction r (everything but ``full``)."""
        return self.checkpoint != "full"


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("traditional", "full", "full"),
        Strategy("scar", "priority", "partial"),
        Strategy("full_partial", "full", "partial"),
        Strategy("round_robin_partial", "round_robin", "partial"),
        Strategy("random_partial", "random", "partial"),
    )
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {sorted(STRATEGIES)}")
    return STRATEGIES[name]
