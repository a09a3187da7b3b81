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
- ``sensitive_priority``: SCAR's priority times the cost of perturbing the block's array (a
  model's declared sensitivity, e.g. 0 for a factor the next sweep recomputes), where a model
  may replace the change by a per-row cost of restoring the saved value
  (:class:`~scar.core.sensitivity.RestoreCost`).

With a codec other than ``raw`` the budget is in bytes, not parameters (docs/design.md §4): a
save may write what a raw save of the same ``r`` writes, ``r`` times the full state as a partial
record (values and one 8-byte row index per row), and a block costs its codec's upper bound on
the bytes of its values plus its index, so a compressing codec saves more rows per save. An
entropy-coded codec (``lc``) writes far less than its bound where the data compresses: the save
then takes the longest prefix of the policy's order whose actual encoding fits (a bisection,
each step encoding the candidates), if longer than what the bound allows.

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

from scar.checkpoint.codecs import Codec, RawCodec
from scar.checkpoint.stores import Checkpoint
from scar.core.blocks import BlockLayout
from scar.core.sensitivity import RestoreCost

__all__ = [
    "CHECKPOINT_POLICIES",
    "CheckpointPolicy",
    "FrequencyCheckpoint",
    "FullCheckpoint",
    "PriorityCheckpoint",
    "RandomCheckpoint",
    "RestoreCost",
    "RoundRobinCheckpoint",
    "SensitivePriorityCheckpoint",
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

    def __init__(self, interval: int, fraction: float = 1.0, *, codec: Codec | None = None) -> None:
        self.interval = interval
        self.fraction = fraction
        self.save_every = _save_every(interval, fraction)
        #: The codec the saves are written with; any but raw makes the budget one of bytes.
        self.codec = codec

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

    @property
    def budget_in_bytes(self) -> bool:
        """Whether a save's budget is in bytes (a codec other than raw) rather than parameters."""
        return self.codec is not None and not isinstance(self.codec, RawCodec)

    def block_costs(self, layout: BlockLayout, current: Mapping[str, np.ndarray]) -> tuple[np.ndarray, int]:
        """Per-block costs and one save's budget, in one unit: parameters (raw codec,
        :meth:`budget`), or bits of the codec's upper bound on what it writes plus 64 bits of
        row index per block, against ``r`` times the bits of the full state written as a
        partial record (values and indices), less the codec's fixed bytes per array."""
        if not self.budget_in_bytes:
            return layout.block_sizes, self.budget(layout)
        assert self.codec is not None
        costs, full_bits, fixed_bytes = [], 0, 0
        for name, n_rows, width in zip(layout.names, layout.n_rows, layout.widths):
            dtype = np.asarray(current[name]).dtype
            per, fixed = self.codec.budget_cost(dtype, n_rows * width)
            costs.append(np.full(n_rows, width * per + 64, dtype=np.int64))
            full_bits += n_rows * (width * 8 * dtype.itemsize + 64)
            fixed_bytes += fixed
        budget = int(np.floor(self.fraction * full_bits + 1e-9)) - 8 * fixed_bytes
        sizes = np.concatenate(costs) if costs else np.zeros(0, dtype=np.int64)
        if sizes.size and int(sizes.max()) > budget:
            raise ValueError(
                f"{self.name} checkpoints with r={self.fraction} and codec {self.codec.name!r} may write {budget} bits "
                f"per save, less than the largest block ({int(sizes.max())} bits): raise r or use smaller blocks"
            )
        return sizes, budget

    def _take(self, order: np.ndarray, layout: BlockLayout, current: Mapping[str, np.ndarray], saved: Checkpoint) -> np.ndarray:
        """Mask of the blocks a save takes, walking ``order`` within the budget (see module doc)."""
        sizes, budget = self.block_costs(layout, current)
        mask = _take_within_budget(order, sizes, budget)
        if not (self.budget_in_bytes and self.codec is not None and self.codec.entropy_coded) or mask.all():
            return mask
        # Bisect the longest prefix of `order` whose encoding (values and indices) fits in bytes.
        limit = self._budget_bytes(layout, current)
        lo, hi = int(mask.sum()), order.size  # prefix lengths: lo is known to fit (by the bound)
        best = None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            candidate = np.zeros(order.size, dtype=bool)
            candidate[order[:mid]] = True
            if self._encoded_bytes(layout, candidate, current, saved) <= limit:
                lo, best = mid, candidate
            else:
                hi = mid - 1
        return best if best is not None and best.sum() > mask.sum() else mask

    def _budget_bytes(self, layout: BlockLayout, current: Mapping[str, np.ndarray]) -> int:
        """Bytes one save may write (values and indices): r times the full state as a partial record."""
        full = sum(
            n * (w * np.asarray(current[name]).dtype.itemsize + 8)
            for name, n, w in zip(layout.names, layout.n_rows, layout.widths)
        )
        return int(np.floor(self.fraction * full + 1e-9))

    def _encoded_bytes(self, layout: BlockLayout, mask: np.ndarray, current: Mapping[str, np.ndarray], saved: Checkpoint) -> int:
        """What a save of ``mask`` would write: the codec's bytes and 8 bytes of index a row."""
        assert self.codec is not None
        total = 0
        for name, rows in layout.rows_of(mask).items():
            if rows.size:
                previous = saved.values[name][rows] if self.codec.needs_previous else None
                total += self.codec.encode(np.asarray(current[name])[rows], previous).nbytes + 8 * rows.size
        return total

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

    def __init__(self, interval: int, fraction: float = 1.0, *, codec: Codec | None = None) -> None:
        # r is meaningless for the full policy; it is always 1.
        super().__init__(interval, 1.0, codec=codec)

    def select(self, k, layout, current, saved):
        return np.ones(layout.n_blocks, dtype=bool)


class PriorityCheckpoint(CheckpointPolicy):
    """SCAR's prioritized checkpoint: the blocks that changed most since their last save.

    Priority is the Euclidean norm of (current value - saved value); ties go to the block saved
    longest ago, then to the lower block id.
    """

    name = "priority"

    def _priority(self, layout: BlockLayout, current: Mapping[str, np.ndarray], saved: Checkpoint) -> np.ndarray:
        """Each block's priority: its change since its last save."""
        return layout.block_distances(current, saved.values)

    def select(self, k, layout, current, saved):
        change = self._priority(layout, current, saved)
        age = np.concatenate([saved.saved_at[n] for n in layout.names])
        widths = {w for w, n in zip(layout.widths, layout.n_rows) if n}
        if not self.budget_in_bytes and len(widths) == 1 and min(widths) > 0 and not np.isnan(change).any():
            return _priority_top_equal_width(change, age, self.budget(layout) // min(widths))
        # Unequal costs: skipping a wide block may let any later one in, so the whole order.
        return self._take(np.lexsort((age, -change)), layout, current, saved)


class SensitivePriorityCheckpoint(PriorityCheckpoint):
    """Sensitivity-aware priority: a block's cost of being restored from its last save times
    the cost of perturbing its array, ``weights[name]`` (1 where not given).

    The weights are a model's declared sensitivity (:meth:`scar.models.base.Model.sensitivity`):
    ALS recomputes ``U`` from ``V`` first in every sweep, so a perturbation of ``U`` costs
    nothing and ``U`` weighs 0; the whole budget goes to ``V``. A block's cost of being restored
    is its change since its last save (SCAR's priority), or where the model prices its rows
    (``restore_cost``, :meth:`scar.models.base.Model.restore_cost`), that price: ALS prices a
    ``V`` row by how far its saved value would move the next sweep's user solve. With neither,
    the policy is SCAR's priority exactly. Ties (a weight of 0 ties every block of its array) go
    to the block saved longest ago, as in SCAR's rule.
    """

    name = "sensitive_priority"

    def __init__(
        self,
        interval: int,
        fraction: float = 1.0,
        *,
        codec: Codec | None = None,
        weights: Mapping[str, float] | None = None,
        restore_cost: RestoreCost | None = None,
    ) -> None:
        super().__init__(interval, fraction, codec=codec)
        self.weights = {str(n): float(w) for n, w in (weights or {}).items()}
        bad = {n: w for n, w in self.weights.items() if not (np.isfinite(w) and w >= 0)}
        if bad:
            raise ValueError(f"sensitivity weights must be finite and >= 0, got {bad}")
        self.restore_cost = restore_cost

    def _priority(self, layout, current, saved):
        unknown = set(self.weights) - set(layout.names)
        if unknown:
            raise ValueError(f"sensitivity weights name arrays {sorted(unknown)} that are not server arrays {list(layout.names)}")
        priced = dict(self.restore_cost(current, saved.values)) if self.restore_cost is not None else {}
        cost_name = getattr(self.restore_cost, "name", None)
        change = layout.block_distances(current, saved.values) if set(layout.names) - set(priced) else None
        parts, start = [], 0
        for name, n in zip(layout.names, layout.n_rows):
            if name in priced:
                cost = np.asarray(priced[name], dtype=np.float64)
                if cost.shape != (n,) or not np.isfinite(cost).all() or (cost < 0).any():
                    raise ValueError(
                        f"restore cost {cost_name!r} of {name!r} must be {n} finite costs >= 0, got shape {cost.shape}"
                    )
            else:
                assert change is not None
                cost = change[start : start + n]
            parts.append(cost * self.weights.get(name, 1.0))
            start += n
        return np.concatenate(parts) if parts else np.zeros(0)

    def config(self) -> dict[str, Any]:
        cost = {"restore_cost": self.restore_cost.name} if self.restore_cost is not None else {}
        return {**super().config(), "weights": dict(sorted(self.weights.items())), **cost}


class RoundRobinCheckpoint(CheckpointPolicy):
    """Ablation: the next blocks in cyclic order, whatever they changed."""

    name = "round_robin"

    def __init__(self, interval: int, fraction: float = 1.0, *, codec: Codec | None = None) -> None:
        super().__init__(interval, fraction, codec=codec)
        self._next = 0

    def select(self, k, layout, current, saved):
        order = np.roll(np.arange(layout.n_blocks), -self._next)
        mask = self._take(order, layout, current, saved)
        self._next = (self._next + int(mask.sum())) % layout.n_blocks
        return mask

    def state_dict(self):
        return {"next": self._next}

    def load_state_dict(self, state):
        self._next = int(state["next"])


class RandomCheckpoint(CheckpointPolicy):
    """Ablation: blocks drawn uniformly at random, seeded per iteration."""

    name = "random"

    def __init__(self, interval: int, fraction: float = 1.0, seed: int = 0, *, codec: Codec | None = None) -> None:
        super().__init__(interval, fraction, codec=codec)
        self.seed = seed

    def select(self, k, layout, current, saved):
        order = np.random.default_rng([self.seed, k]).permutation(layout.n_blocks)
        return self._take(order, layout, current, saved)

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
        widths = {w for w, n in zip(layout.widths, layout.n_rows) if n}
        if not self.budget_in_bytes and len(widths) == 1 and min(widths) > 0:
            return _priority_top_equal_width(accesses.astype(np.float64), age, self.budget(layout) // min(widths))
        return self._take(np.lexsort((age, -accesses)), layout, current, saved)


CHECKPOINT_POLICIES: dict[str, type[CheckpointPolicy]] = {
    cls.name: cls
    for cls in (
        FullCheckpoint,
        PriorityCheckpoint,
        RoundRobinCheckpoint,
        RandomCheckpoint,
        SensitivePriorityCheckpoint,
        FrequencyCheckpoint,
    )
}


def make_checkpoint_policy(
    name: str,
    interval: int,
    fraction: float = 1.0,
    seed: int = 0,
    *,
    codec: Codec | None = None,
    weights: Mapping[str, float] | None = None,
    restore_cost: RestoreCost | None = None,
) -> CheckpointPolicy:
    """Build a policy by name (``full``, ``priority``, ``round_robin``, ``random``,
    ``sensitive_priority``, ``frequency``); ``codec`` makes its budget one of bytes (a codec other than raw),
    ``weights`` and ``restore_cost`` are the sensitivity of ``sensitive_priority`` (ignored by the others)."""
    if name not in CHECKPOINT_POLICIES:
        raise ValueError(f"unknown checkpoint policy {name!r}; expected one of {sorted(CHECKPOINT_POLICIES)}")
    if name == "random":
        return RandomCheckpoint(interval, fraction, seed=seed, codec=codec)
    if name == "sensitive_priority":
        return SensitivePriorityCheckpoint(interval, fraction, codec=codec, weights=weights, restore_cost=restore_cost)
    return CHECKPOINT_POLICIES[name](interval, fraction, codec=codec)
