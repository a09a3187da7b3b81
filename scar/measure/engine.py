"""The engine seam: how the measurement drives a model (docs/design.md §9).

An :class:`Engine` holds one run's live state and executes its iterations. The measurement
(baselines, failure trials, the perturbation study, the planner's simulation) speaks only to
this interface: step, read and write server rows, kill server nodes, restore. Its first
implementation, :class:`InProcessEngine`, runs the model in this process on a state dict; a
live runtime, whose server shards are processes that really die, implements the same calls.

Call order::

    engine.load(state, iteration)          # the full state after ``iteration``
    engine.step()                          # iteration + 1, with the stream (seed, iteration + 1)
    engine.objective()                     # any time
    engine.server_state()                  # the server-held arrays (read-only views)
    engine.kill(lost_rows)                 # server rows held by failed nodes are gone
    engine.restore(policy, saved, lost_rows)  # partial/rebuild: write saved rows back, resync
    engine.rollback(state, iteration)      # full: the whole job restarts from its checkpoint
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from scar.core.recovery import RecoveryPolicy, restored_rows
from scar.models.base import Model, State


def iteration_rng(seed: int, k: int) -> np.random.Generator:
    """The random stream of iteration ``k`` of a run seeded with ``seed`` (common random numbers:
    every run that executes iteration ``k`` draws the same minibatches and samples)."""
    return np.random.default_rng([seed, k])


def copy_state(state: Mapping[str, np.ndarray]) -> State:
    return {n: np.array(a, copy=True) for n, a in state.items()}


class Engine(ABC):
    """Executes a model's iterations over a live state (see the module's docstring for the
    call order). ``iteration`` is the last completed iteration."""

    model: Model
    data: Any
    seed: int
    iteration: int

    @property
    def server_params(self) -> tuple[str, ...]:
        return tuple(self.model.server_params)

    @abstractmethod
    def load(self, state: Mapping[str, np.ndarray], iteration: int) -> None:
        """Replace the whole live state (server rows and worker state) by a copy of ``state``,
        the state after ``iteration``."""

    @abstractmethod
    def step(self) -> int:
        """Run the next iteration ``k = iteration + 1`` with :func:`iteration_rng` ``(seed, k)``;
        return ``k``."""

    @abstractmethod
    def objective(self) -> float:
        """The training objective of the live state."""

    @abstractmethod
    def state(self) -> State:
        """A copy of the whole live state."""

    @abstractmethod
    def server_state(self) -> Mapping[str, np.ndarray]:
        """The server-held arrays of the live state (views: read only, valid until the next call)."""

    @abstractmethod
    def write_server_rows(self, values: Mapping[str, np.ndarray], rows: Mapping[str, np.ndarray]) -> None:
        """Set the rows ``rows[name]`` (a boolean mask) of each server array to ``values[name]``'s."""

    @abstractmethod
    def kill(self, lost_rows: Mapping[str, np.ndarray]) -> None:
        """The server nodes holding ``lost_rows`` (boolean masks) fail: those rows are lost until
        they are written again."""

    @abstractmethod
    def resync(self, rows: Mapping[str, np.ndarray]) -> None:
        """Let the model make its worker state consistent with server rows that were just
        written from outside the run (the model's ``after_recovery``)."""

    def same_state_as(self, other: Mapping[str, np.ndarray]) -> bool:
        """Whether the live state equals ``other`` exactly, array by array."""
        mine = self.state()
        return all(np.array_equal(mine[n], other[n]) for n in mine)

    @abstractmethod
    def rebuild(self, lost_rows: Mapping[str, np.ndarray]) -> None:
        """Let the model reconstruct the lost rows it can from the rest of the live state (the
        model's ``rebuild``)."""

    def restore(
        self, policy: RecoveryPolicy, saved: Mapping[str, np.ndarray], lost_rows: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Recover from a failure of ``lost_rows`` without stopping the job: ``partial`` writes the
        lost rows from ``saved`` (the checkpoint image), ``rebuild`` does so and then lets the
        model reconstruct what it can; then :meth:`resync`. Returns the row masks written.

        A ``full`` recovery restarts the whole job instead: :meth:`rollback`."""
        if policy == "full":
            raise ValueError("a full recovery restarts the whole job from its checkpoint: use rollback(state, iteration)")
        rows = restored_rows(policy, lost_rows)
        self.write_server_rows(saved, rows)
        if policy == "rebuild":
            self.rebuild(lost_rows)
        self.resync(rows)
        return rows

    def rollback(self, state: Mapping[str, np.ndarray], iteration: int) -> None:
        """Restart the whole job from a full checkpoint: ``state`` (server rows, worker state,
        optimizer state, counters) as saved after ``iteration``; the next step replays
        ``iteration + 1`` with its own stream."""
        self.load(state, iteration)


class InProcessEngine(Engine):
    """Runs the model in this process on a state dict (the simulation of a parameter server).

    ``kill`` overwrites the lost rows with a poison value (NaN, or the most negative integer), so
    a recovery that forgot a lost row cannot go unnoticed: :meth:`step` refuses to run on one.
    """

    def __init__(self, model: Model, data: Any, seed: int) -> None:
        self.model = model
        self.data = data
        self.seed = seed
        self.iteration = 0
        self._state: State = {}
        self._lost: dict[str, np.ndarray] = {}

    def load(self, state, iteration):
        self._state = copy_state(state)
        self.iteration = int(iteration)
        self._lost = {}

    def step(self):
        if any(m.any() for m in self._lost.values()):
            raise RuntimeError(f"iteration {self.iteration + 1} would run on lost server rows: restore them first")
        k = self.iteration + 1
        self.model.step(self._state, self.data, iteration_rng(self.seed, k))
        self.iteration = k
        return k

    def objective(self):
        return self.model.objective(self._state, self.data)

    def state(self):
        return copy_state(self._state)

    def server_state(self):
        return {n: self._state[n] for n in self.server_params}

    def write_server_rows(self, values, rows):
        for n, mask in rows.items():
            mask = np.asarray(mask, dtype=bool)
            self._state[n][mask] = values[n][mask]
            if n in self._lost:
                self._lost[n] &= ~mask

    def kill(self, lost_rows):
        for n, mask in lost_rows.items():
            mask = np.asarray(mask, dtype=bool)
            a = self._state[n]
            a[mask] = np.nan if a.dtype.kind in "fc" else np.iinfo(a.dtype).min
            self._lost[n] = self._lost.get(n, np.zeros(a.shape[0], dtype=bool)) | mask

    def resync(self, rows):
        self.model.after_recovery(self._state, self.data, rows)

    def rebuild(self, lost_rows):
        self.model.rebuild(self._state, self.data, lost_rows)

    def same_state_as(self, other):
        # No copy: compare the live arrays in place.
        return all(np.array_equal(self._state[n], other[n]) for n in self._state)
