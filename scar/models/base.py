"""The model interface: what SCAR needs to know about an iterative-convergent algorithm."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from scar.core.sensitivity import RestoreCost

State = dict[str, np.ndarray]


class Model(ABC):
    """An iterative-convergent training algorithm, as a stateless object.

    The constructor stores hyperparameters and nothing else (scikit-learn's habit); all learned
    state lives in a :data:`State` dict of arrays, so it can be copied, snapshotted, perturbed
    and restored. The arrays named in :attr:`server_params` are held by the parameter server:
    2D arrays whose rows are the blocks spread over server nodes. Anything else in the state
    (for example LDA's token assignments) lives with the workers and survives a server failure.

    Call order::

        data = model.prepare(dataset)            # once per dataset
        state = model.init_state(data, seed)     # x_0
        for k in 1, 2, ...:                      # one iteration each, see `iteration`
            model.step(state, data, rng_k)       # in place; rng_k is the k-th common random stream
            model.objective(state, data)         # any time; lower is better
        model.touched_rows(data, rng_k)          # optional: the rows iteration k accesses
        model.rebuild(state, data, lost)         # for the rebuild recovery, after the restore
        model.after_recovery(state, data, lost)  # once after a recovery, before the next step

    ``step`` must draw all its randomness from ``rng_k``: the evaluation relies on common random
    numbers between the baseline and every recovered run.
    """

    #: Registry name.
    name: ClassVar[str]
    #: What one iteration is, in words (reported with the results).
    iteration: ClassVar[str]
    #: What the objective is, in words.
    objective_name: ClassVar[str] = "objective"
    #: State entries held by the parameter server (2D arrays, blocks = rows).
    server_params: ClassVar[tuple[str, ...]]
    #: Whether ``step`` draws from its random stream (SGD, Gibbs sampling): such an experiment
    #: gets several baseline seeds, and its rework has a noise floor.
    stochastic: ClassVar[bool] = False
    #: Server arrays whose lost rows :meth:`rebuild` reconstructs from the rest of the state.
    rebuilds: ClassVar[tuple[str, ...]] = ()

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters, as given to the constructor."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {p: getattr(self, p) for p in names}

    def check_params(self) -> None:
        """Raise ValueError naming any hyperparameter with a bad type or value.

        Called when a configuration is read, so that a bad value stops a workflow before any
        job runs. Default: nothing to check.
        """

    def prepare(self, dataset: Any) -> Any:
        """Model-ready data (e.g. with a bias column). Default: the dataset itself."""
        return dataset

    @abstractmethod
    def init_state(self, data: Any, seed: int) -> State:
        """Initial state x_0."""

    @abstractmethod
    def step(self, state: State, data: Any, rng: np.random.Generator) -> None:
        """One iteration, in place."""

    @abstractmethod
    def objective(self, state: State, data: Any) -> float:
        """Training objective (lower is better) at ``state``."""

    def rebuild(self, state: State, data: Any, lost_rows: Mapping[str, np.ndarray]) -> None:
        """Reconstruct the lost rows of the arrays in :attr:`rebuilds` from the rest of the state
        (worker state, surviving rows), in place; called after the lost rows were restored from
        a checkpoint, so arrays it cannot rebuild keep their restored values. Default: none."""

    def after_recovery(self, state: State, data: Any, lost_rows: Mapping[str, np.ndarray]) -> None:
        """Make worker state consistent with restored server blocks. Default: nothing to do."""

    def sensitivity(self) -> dict[str, float] | None:
        """The cost of perturbing each server array, relative to the others (``name -> weight
        >= 0``), for the ``sensitive_priority`` checkpoint policy; None (the default): unknown,
        every array weighs 1 and the policy is SCAR's priority. A weight of 0 says a
        perturbation of that array is erased before it can matter (docs/design.md §4)."""
        return None

    def restore_cost(self, data: Any) -> RestoreCost | None:
        """What restoring each row's saved value would cost now, row by row, on the data
        ``data`` (:class:`~scar.core.sensitivity.RestoreCost`), for the ``sensitive_priority``
        policy: it then saves the rows whose restore would cost most (times the array's
        :meth:`sensitivity`). None (the default): a row costs its change since its last save,
        SCAR's priority (docs/design.md §4.5)."""
        return None

    def server_shapes(self, dims: Mapping[str, int]) -> dict[str, tuple[int, int]] | None:
        """The shapes of the server-held arrays on a dataset of sizes ``dims``
        (:attr:`scar.datasets.Dataset.dims`), so that a configuration can be checked before any
        data is loaded; None where the model cannot tell (the check then waits for the data)."""
        return None

    def touched_rows(self, data: Any, rng: np.random.Generator) -> Mapping[str, np.ndarray] | None:
        """The server rows the iteration whose stream is ``rng`` accesses: array name -> row ids
        (a row read twice appears twice); arrays not named are not accessed. ``rng`` is a fresh
        copy of the stream :meth:`step` gets, so the model draws its minibatches as ``step`` does.
        The ``frequency`` checkpoint policy ranks rows by these counts. Default None: every row,
        once (a dense model)."""
        return None

    def server_state(self, state: State) -> State:
        """The server-held part of ``state`` (views, not copies)."""
        return {n: state[n] for n in self.server_params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
