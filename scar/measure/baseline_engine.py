"""An engine that reads iterations off a recorded baseline while the run is on it
(docs/design.md §8).

Every iteration is a deterministic function of the state before it and its own random stream
(:func:`~scar.measure.engine.iteration_rng` ``(seed, k)``), so a run whose live state equals the
baseline's state after iteration ``k`` would compute exactly the baseline's iterations
``k + 1, k + 2, ...``. :class:`BaselineEngine` serves those from the baseline's snapshots and
losses instead of computing them, and hands over to the wrapped engine (loading the baseline's
state there) at the first call that leaves the baseline: a killed or written row, a rebuild, a
resync, or a step past the baseline's last snapshot. A simulated run before its first failure,
and a whole-job rollback's replay of the iterations since its save, cost no model step.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scar.core.recovery import RecoveryPolicy
from scar.measure.engine import Engine, State
from scar.measure.trajectory import Baseline


class BaselineEngine(Engine):
    """Wraps ``inner`` (an engine for the baseline's model, data and seed); see the module's
    docstring. ``steps_computed`` counts the iterations the inner engine ran."""

    def __init__(self, inner: Engine, baseline: Baseline) -> None:
        if inner.seed != baseline.seed:
            raise ValueError(f"the engine's seed {inner.seed} is not the baseline's {baseline.seed}")
        self.inner = inner
        self.baseline = baseline
        self.model, self.data, self.seed = inner.model, inner.data, inner.seed
        self._on: int | None = None  # the baseline iteration the live state equals, if any
        self.steps_computed = 0

    @property
    def iteration(self) -> int:  # type: ignore[override]
        return self._on if self._on is not None else self.inner.iteration

    @iteration.setter
    def iteration(self, value: int) -> None:
        raise AttributeError("BaselineEngine.iteration is read-only: use load()")

    def _is_baseline_state(self, state: Mapping[str, np.ndarray], iteration: int) -> bool:
        snaps = self.baseline.snapshots
        return (
            0 <= iteration <= self.baseline.k_base
            and set(state) == set(snaps)
            and all(np.array_equal(state[n], snaps[n][iteration]) for n in snaps)
        )

    def _leave_baseline(self) -> Engine:
        if self._on is not None:
            self.inner.load(self.baseline.state_at(self._on), self._on)
            self._on = None
        return self.inner

    def load(self, state, iteration):
        if self._is_baseline_state(state, int(iteration)):
            self._on = int(iteration)
        else:
            self._on = None
            self.inner.load(state, iteration)

    def rollback(self, state, iteration):
        if self._is_baseline_state(state, int(iteration)):
            self._on = int(iteration)
        else:
            self._on = None
            self.inner.rollback(state, iteration)

    def step(self):
        if self._on is not None and self._on < self.baseline.k_base:
            self._on += 1
            return self._on
        k = self._leave_baseline().step()
        self.steps_computed += 1
        return k

    def objective(self):
        return float(self.baseline.losses[self._on]) if self._on is not None else self.inner.objective()

    def state(self) -> State:
        return self.baseline.state_at(self._on) if self._on is not None else self.inner.state()

    def server_state(self):
        return self.baseline.server_state_at(self._on) if self._on is not None else self.inner.server_state()

    def same_state_as(self, other):
        if self._on is not None:
            return self._is_baseline_state(other, self._on)
        return self.inner.same_state_as(other)

    def write_server_rows(self, values, rows):
        self._leave_baseline().write_server_rows(values, rows)

    def kill(self, lost_rows):
        self._leave_baseline().kill(lost_rows)

    def resync(self, rows):
        self._leave_baseline().resync(rows)

    def rebuild(self, lost_rows):
        self._leave_baseline().rebuild(lost_rows)

    def restore(
        self, policy: RecoveryPolicy, saved: Mapping[str, np.ndarray], lost_rows: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        return self._leave_baseline().restore(policy, saved, lost_rows)
