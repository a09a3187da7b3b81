"""Recovery policies: what the server parameters are after a failure (docs/design.md §5).

- ``full`` (traditional): the whole job restarts from its last full checkpoint: every server
  block, the workers' state, the optimizer state and the counters go back to their values at
  that save, and the iterations since are replayed (the engine's ``rollback``);
- ``partial`` (SCAR): only the lost blocks get their saved values; the survivors (other server
  nodes and every worker) keep their current state;
- ``rebuild``: as ``partial``, then the model reconstructs whatever lost rows it can from the
  rest of the state (LDA's counts from the assignments; ALS's user rows from the item factors):
  the reference of a system that knows its model.

Which checkpoint policy feeds a recovery is a strategy (:mod:`scar.checkpoint.strategy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

RecoveryPolicy = Literal["full", "partial", "rebuild"]
RECOVERY_POLICIES: tuple[str, ...] = ("full", "partial", "rebuild")


def check_recovery_policy(policy: str) -> RecoveryPolicy:
    """``policy`` if it names a recovery policy, else a ValueError naming the choices."""
    if policy not in RECOVERY_POLICIES:
        raise ValueError(f"unknown recovery policy {policy!r}; expected one of {RECOVERY_POLICIES}")
    return policy  # type: ignore[return-value]


def restored_rows(policy: RecoveryPolicy, lost_rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Boolean row mask per array of the rows a recovery writes from the checkpoint: every row
    for ``full``, the lost rows for ``partial`` and ``rebuild``."""
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
    policy : ``"full"``, ``"partial"`` or ``"rebuild"`` (whose server rows from the checkpoint
        are those of ``partial``; the model's reconstruction comes after).
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
