"""Recovery policies: what the server parameters are after a failure (docs/design.md §5).

``full`` recovery (traditional) rolls every block back to its saved value; ``partial`` recovery
(SCAR) gives only the lost blocks their saved values and keeps the survivors' current values.
Which checkpoint policy feeds a recovery is a strategy (:mod:`scar.checkpoint.strategy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

RecoveryPolicy = Literal["full", "partial"]
RECOVERY_POLICIES: tuple[str, ...] = ("full", "partial")


def check_recovery_policy(policy: str) -> RecoveryPolicy:
    """``policy`` if it names a recovery policy, else a ValueError naming the choices."""
    if policy not in RECOVERY_POLICIES:
        raise ValueError(f"unknown recovery policy {policy!r}; expected one of {RECOVERY_POLICIES}")
    return policy  # type: ignore[return-value]


def restored_rows(policy: RecoveryPolicy, lost_rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Boolean row mask per array of the rows a recovery writes from the checkpoint: every row
    for ``full``, the lost rows for ``partial``."""
    check_recovery_policy(policy)
    if policy == "full":
        return {n: np.ones(np.shape(m)[0], dtype=bool) for n, m in lost_rows.items()}
    return {n: np.asarray(m, dtype=bool) for n, m in lost_rows.items()}


def recover(
    policy: RecoveryPolicy,
    current: Mapping[str, np.ndarray],
    saved: Mapping[str, np.ndarray],
    lost_rows: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Server parameters after recovery; ``current`` is not modified.

    Parameters
    ----------
    policy : ``"full"`` or ``"partial"``.
    current : the parameters at the failure (the survivors' values; lost rows are garbage).
    saved : the checkpoint image's values (every row's value at its last save).
    lost_rows : boolean row mask per array, true for blocks on failed nodes.
    """
    check_recovery_policy(policy)
    if policy == "full":
        return {n: np.array(saved[n], copy=True) for n in current}
    out = {}
    for n, a in current.items():
        restored = np.array(a, copy=True)
        mask = np.asarray(lost_rows[n], dtype=bool)
        restored[mask] = saved[n][mask]
        out[n] = restored
    return out
