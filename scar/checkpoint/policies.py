"""Checkpoint policies: which blocks are saved, and when (SCAR.md section 3).

Every policy gets the same I/O budget: on average ``d`` parameters per ``C`` iterations, where
``d`` is the number of server-held parameters. ``full`` saves all ``d`` every ``C`` iterations;
the fractional policies save at most ``r * d`` parameters every ``r * C`` iterations and differ
only in *which* blocks they pick:

- ``priority`` (SCAR): the blocks whose values moved most since their own last save;
- ``round_robin``: the next blocks in a fixed cyclic order;
- ``random``: blocks drawn uniformly at random (seeded per iteration).

A :class:`Checkpointer` binds a policy to a :class:`~scar.checkpoint.stores.CheckpointStore` and keeps an
in-memory image of what the store holds, which the priority rule needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from scar.checkpoint.stores import Checkpoint, CheckpointStore, InMemoryStore
from scar.core.blocks import BlockLayout


class CheckpointPolicy(ABC):
    """Decides the iterations at which to save and the blocks saved there.

    Call order: :meth:`is_due` for each completed iteration ``k >= 1``; when it is true,
    :meth:`select` once for that ``k``. Iteration 0 (the initial parameters) is always saved in
    full by the :class:`Checkpointer`, for every policy alike.
    """

    name: ClassVar[str]

    def __init__(self, interval: int, fraction: float = 1.0) -> None:
        self.interval = interval
        self.fraction = fraction
        self.save_every = _save_every(interval, fraction)

    def is_due(self, k: int) -> bool:
        """Whether a save happens at the end of iteration ``k``."""
        return k >= 1 and k % self.save_every == 0

    @abstractmethod
    def select(self, k: int, layout: BlockLayout, current: Mapping[str, np.ndarray], saved: Checkpoint) -> np.ndarray:
        """Boolean mask over blocks to save at iteration ``k``."""

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

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass

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
    """Mask of the longest prefix of ``order`` whose block sizes fit in ``budget``."""
    mask = np.zeros(sizes.shape[0], dtype=bool)
    fits = np.cumsum(sizes[order]) <= budget
    mask[order[fits]] = True
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
        # lexsort sorts by the last key first: largest change, then oldest save.
        order = np.lexsort((age, -change))
        return _take_within_budget(order, layout.block_sizes, self.budget(layout))


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


CHECKPOINT_POLICIES: dict[str, type[CheckpointPolicy]] = {
    cls.name: cls for cls in (FullCheckpoint, PriorityCheckpoint, RoundRobinCheckpoint, RandomCheckpoint)
}


def make_checkpoint_policy(name: str, interval: int, fraction: float = 1.0, seed: int = 0) -> CheckpointPolicy:
    """Build a policy by name (``full``, ``priority``, ``round_robin``, ``random``)."""
    if name not in CHECKPOINT_POLICIES:
        raise ValueError(f"unknown checkpoint policy {name!r}; expected one of {sorted(CHECKPOINT_POLICIES)}")
    if name == "random":
        return RandomCheckpoint(interval, fraction, seed=seed)
    return CHECKPOINT_POLICIES[name](interval, fraction)


class Checkpointer:
    """Runs a policy over a training run and writes what it selects to a store.

    Call order: :meth:`start` with the initial parameters (a full save at iteration 0), then
    :meth:`after_iteration` once per completed iteration ``k = 1, 2, ...``. :attr:`image` is the
    checkpoint the store holds at any point (kept in memory: the priority rule reads it at
    every save, and reading it back from disk would double the I/O).
    """

    def __init__(self, policy: CheckpointPolicy, store: CheckpointStore | None = None) -> None:
        self.policy = policy
        self.store = store if store is not None else InMemoryStore()
        self.layout: BlockLayout | None = None
        self.image: Checkpoint | None = None
        self.n_saves = 0

    def start(self, params: Mapping[str, np.ndarray]) -> None:
        self.layout = BlockLayout.from_arrays(params)
        self.store.write(0, params, None)
        self.image = Checkpoint(
            values={n: np.array(a, copy=True) for n, a in params.items()},
            saved_at={n: np.zeros(a.shape[0], dtype=np.int64) for n, a in params.items()},
        )
        self.n_saves = 1

    def after_iteration(self, k: int, params: Mapping[str, np.ndarray]) -> bool:
        """Save at the end of iteration ``k`` if the policy says so; return whether it did."""
        if self.image is None or self.layout is None:
            raise RuntimeError("Checkpointer.start() must be called before after_iteration()")
        if not self.policy.is_due(k):
            return False
        mask = self.policy.select(k, self.layout, params, self.image)
        rows = self.layout.rows_of(mask)
        rows = {n: r for n, r in rows.items() if r.size}
        self.store.write(k, params, rows)
        for n, r in rows.items():
            self.image.values[n][r] = params[n][r]
            self.image.saved_at[n][r] = k
        self.n_saves += 1
        return True

    @property
    def bytes_written(self) -> int:
        return self.store.bytes_written
