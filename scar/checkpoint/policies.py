"""Checkpoint policies: which blocks are saved, and when (docs/design.md §4).

Every policy gets the same I/O budget: on average ``d`` parameters per ``C`` iterations, where
``d`` is the number of server-held parameters. ``full`` saves all ``d`` every ``C`` iterations;
the fractional policies save at most ``r * d`` parameters every ``r * C`` iterations and differ
only in *which* blocks they pick:

- ``priority`` (SCAR): the blocks whose values moved most since their own last save;
- ``round_robin``: the next blocks in a fixed cyclic order;
- ``random``: blocks drawn uniformly at random (seeded per iteration);
- ``frequency`` (CPR's MFU): the blocks accessed most often since their own last save, from the
  accesses the training reports to the Checkpointer (an embedding lookup touches few rows).

A policy only chooses rows; :class:`~scar.checkpoint.checkpointer.Checkpointer` runs it over a
training run, a :class:`~scar.checkpoint.codecs.Codec` says how the chosen rows are written and a
:class:`~scar.checkpoint.stores.CheckpointStore` keeps them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from scar.checkpoint.stores import Checkpoint
from scar.core.blocks import BlockLayout

__all__ = [
    "CHECKPOINT_POLICIES",
    "CheckpointPolicy",
    "FrequencyCheckpoint",
    "FullCheckpoint",
    "PriorityCheckpoint",
    "RandomCheckpoint",
    "RoundRobinCheckpoint",
    "make_checkpoint_policy",
]


class CheckpointPolicy(ABC):
    """Decides the iterations at which to save and the blocks saved there.

    Call order: :meth:`is_due` for each completed iteration ``k >= 1``; when it is true,
    :meth:`select` once for that ``k``. Iteration 0 (the initial parameters) is always saved in
    full by the :class:`~scar.checkpoint.checkpointer.Checkpointer`, for every policy alike.
    """

    name: ClassVar[str]
    #: Whether :meth:`select` needs ``accesses``: per block, the accesses since its last save
    #: (the Checkpointer then counts the rows each iteration touched).
    uses_accesses: ClassVar[bool] = False

    def __init__(self, interval: int, fraction: float = 1.0) -> None:
        self.interval = interval
        self.fraction = fraction
        self.save_every = _save_every(interval, fraction)

    def is_due(self, k: int) -> bool:
        """Whether a save happens at the end of iteration ``k``."""
        return k >= 1 and k % self.save_every == 0

    @abstractmethod
    def select(self, k: int, layout: BlockLayout, current: Mapping[str, np.ndarray], saved: Checkpoint) -> np.ndarray:
        """Boolean mask over blocks to save at iteration ``k``. A policy that
        :attr:`uses_accesses` takes a further keyword ``accesses``: int64 counts, one per block."""

    def budget(self, layout: BlockLayout) -> int:
        """Most parameters one save may write.

        Raises ValueError when the largest block does not fit: such a block could never be
        saved, and a cyclic policy would stall on it.
        """
        budget = int(np.floor(self.fraction * layout.n_params + 1e-9))
        largest = int(max(layout.widths))
        if largest > budget:
            raise ValueError(
                f"{self.name} checkpoints with r={self.fraction} may write {budget} parameters per save, "
                f"less than the largest block ({largest} parameters): raise r or use smaller blocks"
            )
        return budget

    def config(self) -> dict[str, Any]:
        """What identifies the policy (JSON-able): a saved state only loads into an equal one."""
        return {"name": self.name, "interval": int(self.interval), "fraction": float(self.fraction)}

    def state_dict(self) -> dict[str, Any]:
        """The policy's mutable state between saves (JSON-able); empty for stateless policies."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(interval={self.interval}, fraction={self.fraction})"


def _save_every(interval: int, fraction: float) -> int:
    if int(interval) != interval or interval < 1:
        raise ValueError(f"checkpoint interval C must be a positive integer, got {interval}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"checkpoint fraction r must be in (0, 1], got {fraction}")
    every = Fraction(fraction).limit_denominator(10_000) * int(interval)
    if every.denominator != 1:
        raise ValueError(
            f"r * C must be a whole number of iterations, got r={fraction} and C={interval} "
            f"(r * C = {float(every):g}); choose C as a multiple of 1/r"
        )
    return int(every)


def _take_within_budget(order: np.ndarray, sizes: np.ndarray, budget: int) -> np.ndarray:
    """Mask of the blocks a save takes, walking ``order``: each block that still fits in what is
    left of ``budget`` is taken, one that does not is skipped (a wide block does not stop the
    narrower ones after it), so the save fills its budget as far as the blocks allow.

    Vectorised by passes: each takes the longest prefix that fits, then drops from the rest of
    the order every block wider than what is left; at most one pass per distinct width.
    """
    mask = np.zeros(sizes.shape[0], dtype=bool)
    rest = np.asarray(order)
    left = int(budget)
    while rest.size:
        fits = np.cumsum(sizes[rest]) <= left
        n = int(np.argmin(fits)) if not fits.all() else rest.size
        mask[rest[:n]] = True
        left -= int(sizes[rest[:n]].sum())
        rest = rest[n + 1 :]  # rest[n] did not fit: skipped
        rest = rest[sizes[rest] <= left]
    return mask


def _priority_top_equal_width(change: np.ndarray, age: np.ndarray, m: int) -> np.ndarray:
    """Mask of the first ``m`` blocks of the priority order, all blocks being of one width.

    Then the budget's prefix is exactly ``m`` blocks long and only its *set* matters: the blocks
    strictly above the ``m``-th largest change, plus as many of those tied with it as fit, in
    order of oldest save, then lower id (as the full lexsort would). No NaN in ``change``.
    """
    n = change.shape[0]
    mask = np.zeros(n, dtype=bool)
    if m >= n:
        mask[:] = True
        return mask
    if m <= 0:
        return mask
    neg = -change
    threshold = np.partition(neg, m - 1)[m - 1]
    np.less(neg, threshold, out=mask)
    need = m - int(np.count_nonzero(mask))
    ties = np.flatnonzero(neg == threshold)  # ascending ids: a stable sort keeps the id order
    mask[ties[np.argsort(age[ties], kind="stable")[:need]]] = True
    return mask


class FullCheckpoint(CheckpointPolicy):
    """Traditional checkpointing: every block every ``C`` iterations."""

    name = "full"

    def __init__(self, interval: int, fraction: float = 1.0) -> None:
        # r is meaningless for the full policy; it is always 1.
        super().__init__(interval, 1.0)

    def select(self, k, layout, current, saved):
        return np.ones(layout.n_blocks, dtype=bool)


class PriorityCheckpoint(CheckpointPolicy):
    """SCAR's prioritized checkpoint: the blocks that changed most since their last save.

    Priority is the Euclidean norm of (current value - saved value); ties go to the block saved
    longest ago, then to the lower block id.
    """

    name = "priority"

    def select(self, k, layout, current, saved):
        change = layout.block_distances(current, saved.values)
        age = np.concatenate([saved.saved_at[n] for n in layout.names])
        budget = self.budget(layout)
        widths = {w for w, n in zip(layout.widths, layout.n_rows) if n}
        if len(widths) == 1 and min(widths) > 0 and not np.isnan(change).any():
            return _priority_top_equal_width(change, age, budget // min(widths))
        # Unequal widths: skipping a wide block may let any later one in, so the whole order.
        return _take_within_budget(np.lexsort((age, -change)), layout.block_sizes, budget)


class RoundRobinCheckpoint(CheckpointPolicy):
    """Ablation: the next blocks in cyclic order, whatever they changed."""

    name = "round_robin"

    def __init__(self, interval: int, fraction: float = 1.0) -> None:
        super().__init__(interval, fraction)
        self._next = 0

    def select(self, k, layout, current, saved):
        order = np.roll(np.arange(layout.n_blocks), -self._next)
        mask = _take_within_budget(order, layout.block_sizes, self.budget(layout))
        self._next = (self._next + int(mask.sum())) % layout.n_blocks
        return mask

    def state_dict(self):
        return {"next": self._next}

    def load_state_dict(self, state):
        self._next = int(state["next"])


class RandomCheckpoint(CheckpointPolicy):
    """Ablation: blocks drawn uniformly at random, seeded per iteration."""

    name = "random"

    def __init__(self, interval: int, fraction: float = 1.0, seed: int = 0) -> None:
        super().__init__(interval, fraction)
        self.seed = seed

    def select(self, k, layout, current, saved):
        order = np.random.default_rng([self.seed, k]).permutation(layout.n_blocks)
        return _take_within_budget(order, layout.block_sizes, self.budget(layout))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "seed": int(self.seed)}


class FrequencyCheckpoint(CheckpointPolicy):
    """CPR's MFU priority: the blocks accessed most often since their last save.

    ``accesses`` counts, per block, the times an iteration touched it since the block's last
    save (the Checkpointer keeps the counts; a row looked up twice in a minibatch counts twice).
    Ties go to the block saved longest ago, then to the lower id, so a dense model (every row
    touched every iteration) saves its blocks oldest first, like a round robin.
    """

    name = "frequency"
    uses_accesses = True

    def select(self, k, layout, current, saved, accesses=None):
        if accesses is None or accesses.shape != (layout.n_blocks,):
            raise ValueError(f"the frequency policy needs access counts over the {layout.n_blocks} blocks")
        age = np.concatenate([saved.saved_at[n] for n in layout.names])
        budget = self.budget(layout)
        widths = {w for w, n in zip(layout.widths, layout.n_rows) if n}
        if len(widths) == 1 and min(widths) > 0:
            return _priority_top_equal_width(accesses.astype(np.float64), age, budget // min(widths))
        return _take_within_budget(np.lexsort((age, -accesses)), layout.block_sizes, budget)


CHECKPOINT_POLICIES: dict[str, type[CheckpointPolicy]] = {
    cls.name: cls for cls in (FullCheckpoint, PriorityCheckpoint, RoundRobinCheckpoint, RandomCheckpoint, FrequencyCheckpoint)
}


def make_checkpoint_policy(name: str, interval: int, fraction: float = 1.0, seed: int = 0) -> CheckpointPolicy:
    """Build a policy by name (``full``, ``priority``, ``round_robin``, ``random``, ``frequency``)."""
    if name not in CHECKPOINT_POLICIES:
        raise ValueError(f"unknown checkpoint policy {name!r}; expected one of {sorted(CHECKPOINT_POLICIES)}")
    if name == "random":
        return RandomCheckpoint(interval, fraction, seed=seed)
    return CHECKPOINT_POLICIES[name](interval, fraction)
