"""Strategies: a checkpoint policy, a recovery policy and the fraction ``r`` (docs/design.md §5).

A :class:`Strategy` is resolved once, when a configuration is read
(:func:`resolve_strategies`), and travels typed from there: trials, the study, the planner and
the report never look a strategy up by name again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from scar.checkpoint.codecs import CODECS, Codec, make_codec
from scar.checkpoint.policies import CHECKPOINT_POLICIES, CheckpointPolicy, make_checkpoint_policy
from scar.core.recovery import RecoveryPolicy, check_recovery_policy
from scar.core.sensitivity import RestoreCost


@dataclass(frozen=True)
class Strategy:
    """A named (checkpoint policy, recovery policy, r, codec) tuple.

    ``r`` is the fraction of the I/O budget a fractional policy spends every ``r * C``
    iterations; it is always 1 for the ``full`` policy. ``codec`` (with ``codec_params``, e.g.
    ``(("bits", 3),)``) is how saves are written; any but ``raw`` budgets in bytes, so a
    compressing codec saves more rows for the same bytes (docs/design.md §4).
    """

    name: str
    checkpoint: str
    recovery: RecoveryPolicy
    r: float = 1.0
    codec: str = "raw"
    codec_params: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.checkpoint not in CHECKPOINT_POLICIES:
            raise ValueError(f"strategy {self.name!r}: unknown checkpoint policy {self.checkpoint!r}")
        check_recovery_policy(self.recovery)
        if self.codec not in CODECS:
            raise ValueError(f"strategy {self.name!r}: unknown codec {self.codec!r}; expected one of {sorted(CODECS)}")
        codec = self.make_codec()  # validates the parameters
        if self.whole_job and not codec.lossless:
            # A whole-job restart replays from an exact full save; a lossy image is not one.
            raise ValueError(f"strategy {self.name!r}: a full (whole-job) recovery needs a lossless codec, not {self.codec!r}")
        if not 0.0 < self.r <= 1.0:
            raise ValueError(f"strategy {self.name!r}: r must be in (0, 1], got {self.r}")
        if not self.fractional and self.r != 1.0:
            raise ValueError(f"strategy {self.name!r} checkpoints in full: r is always 1, got {self.r}")

    @property
    def whole_job(self) -> bool:
        """Whether recovery restarts the whole job from a full checkpoint (traditional): its full
        saves then hold the workers' state and counters too, and their bytes count."""
        return self.recovery == "full"

    @property
    def fractional(self) -> bool:
        """Whether the checkpoint policy takes a fraction r (everything but ``full``)."""
        return self.checkpoint != "full"

    def with_r(self, r: float) -> Strategy:
        """The same strategy at fraction ``r`` (a full policy stays at 1)."""
        return replace(self, r=float(r)) if self.fractional else self

    def make_codec(self) -> Codec:
        """A fresh codec of this strategy."""
        return make_codec(self.codec, **dict(self.codec_params))

    def policy(
        self,
        interval: int,
        seed: int = 0,
        weights: Mapping[str, float] | None = None,
        restore_cost: RestoreCost | None = None,
    ) -> CheckpointPolicy:
        """A fresh checkpoint policy for interval ``C`` (validates that ``r * C`` is whole),
        budgeting in this strategy's codec; ``weights`` and ``restore_cost``: a model's
        sensitivity, for ``sensitive_priority``."""
        return make_checkpoint_policy(
            self.checkpoint, interval, self.r, seed=seed, codec=self.make_codec(), weights=weights, restore_cost=restore_cost
        )


#: Every strategy, at r = 1 (fractional ones take their r from :meth:`Strategy.with_r`).
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("traditional", "full", "full"),
        Strategy("scar", "priority", "partial"),
        Strategy("full_partial", "full", "partial"),
        Strategy("round_robin_partial", "round_robin", "partial"),
        Strategy("random_partial", "random", "partial"),
        Strategy("rebuild", "priority", "rebuild"),
        # CPR's MFU priority; meaningful where a model reports the rows an iteration touched.
        Strategy("frequency_partial", "frequency", "partial"),
        # Codecs at equal bytes (LC-Checkpoint, Chen et al. 2020) and sensitivity-aware priority.
        Strategy("delta_partial", "priority", "partial", codec="delta"),
        Strategy("quantized_partial", "priority", "partial", codec="quantized", codec_params=(("bits", 3),)),
        Strategy("lc_partial", "priority", "partial", codec="lc", codec_params=(("bits", 3),)),
        Strategy("lc_full_partial", "full", "partial", codec="lc", codec_params=(("bits", 3),)),
        Strategy("sensitive_partial", "sensitive_priority", "partial"),
        Strategy("sensitive_lc_partial", "sensitive_priority", "partial", codec="lc", codec_params=(("bits", 3),)),
    )
}

#: The strategies evaluated and planned over when a configuration does not say.
DEFAULT_STRATEGIES: tuple[str, ...] = ("traditional", "scar", "full_partial", "round_robin_partial", "random_partial", "rebuild")


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name`` (at r = 1); a ValueError names the known ones."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {sorted(STRATEGIES)}")
    return STRATEGIES[name]


def resolve_strategies(names: Sequence[str], r_values: Sequence[float], interval: int | None = None) -> tuple[Strategy, ...]:
    """Every named strategy at every ``r`` (fractional ones; full ones once), in the order given.

    With ``interval``, also checks that each fractional ``r * C`` is a whole number of iterations.
    """
    if not len(names):
        raise ValueError("at least one strategy is needed")
    if len(set(names)) != len(names):
        raise ValueError(f"strategies are listed twice: {list(names)}")
    out: list[Strategy] = []
    for name in names:
        base = get_strategy(name)
        for r in r_values if base.fractional else (1.0,):
            s = base.with_r(r)
            if interval is not None:
                s.policy(interval)
            out.append(s)
    return tuple(out)
