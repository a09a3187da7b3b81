"""Baseline trajectories and recovered runs: the measurement of rework (SCAR.md section 4).

The baseline is the unperturbed run. It fixes the convergence target

    target = loss_final + tol * (loss_0 - loss_final)

(``loss_final`` is the mean objective over the last ``final_window`` iterations of a run of
``max_iters`` iterations) and ``K_base``, the first iteration at or under it. It keeps a
snapshot of the whole state at every iteration up to ``K_base``, so the checkpoint store of any
policy at any failure iteration can be rebuilt by replaying the policy over the snapshots, and
a recovered run can start from the exact state at the failure, without re-training.

Iteration ``k`` always draws from :func:`iteration_rng` ``(seed, k)``: a recovered run sees the
same minibatches and samples as the baseline from the failure on (common random numbers), so
the rework measures the perturbation and not the luck of the draw.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scar._atomic import atomic_write
from scar.core.blocks import params_distance
from scar.core.bounds import ContractionFit, NotLinearlyConvergentError, estimate_contraction
from scar.models.base import Model, State


def iteration_rng(seed: int, k: int) -> np.random.Generator:
    """The random stream of iteration ``k`` of a run seeded with ``seed``."""
    return np.random.default_rng([seed, k])


def copy_state(state: State) -> State:
    return {n: np.array(a, copy=True) for n, a in state.items()}


def crossing(k: int, loss: float, previous: float | None, target: float) -> float:
    """Where the objective crossed ``target``, interpolated linearly between iteration ``k - 1``
    (objective ``previous`` > target) and ``k`` (objective ``loss`` <= target).

    Rework counted in whole iterations cannot tell "no delay" from "less than one iteration";
    the crossing point can. ``previous=None`` (no earlier iterate) gives ``k`` itself.
    """
    if previous is None or not previous > target:
        return float(k)
    return k - 1 + (previous - target) / (previous - loss)


def first_at_or_below(losses: np.ndarray, target: float, start: int = 0) -> int | None:
    """First index ``>= start`` whose loss is ``<= target``, or None."""
    hits = np.flatnonzero(np.asarray(losses[start:]) <= target)
    return int(hits[0]) + start if hits.size else None


@dataclass
class Baseline:
    """An unperturbed run and everything measured on it.

    Attributes
    ----------
    losses : objective at iterations ``0..max_iters``.
    distances : ``||x_k - x_final||`` over the server parameters, same length.
    target, loss_final, tol : the convergence target and how it was set.
    k_base : first iteration at or under ``target``.
    snapshots : state entry -> array of shape ``(k_base + 1, ...)``, the state at each iteration.
    contraction : fit of the contraction rate over ``[0, k_base]`` (None when it cannot be fitted).
    seconds_per_iteration : mean wall time of one iteration.
    """

    model: str
    seed: int
    server_params: tuple[str, ...]
    losses: np.ndarray
    distances: np.ndarray
    target: float
    loss_final: float
    tol: float
    k_base: int
    snapshots: dict[str, np.ndarray]
    contraction: ContractionFit | None
    seconds_per_iteration: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def k_base_fractional(self) -> float:
        """Interpolated iteration at which the objective crossed the target (see :func:`crossing`)."""
        k = self.k_base
        return crossing(k, float(self.losses[k]), float(self.losses[k - 1]) if k > 0 else None, self.target)

    @property
    def max_iters(self) -> int:
        return int(self.losses.size - 1)

    def state_at(self, k: int) -> State:
        """A copy of the full state after iteration ``k`` (``0 <= k <= k_base``)."""
        if not 0 <= k <= self.k_base:
            raise ValueError(f"snapshots cover iterations 0..{self.k_base}, asked for {k}")
        return {n: np.array(a[k], copy=True) for n, a in self.snapshots.items()}

    def server_state_at(self, k: int) -> State:
        """Views of the server parameters after iteration ``k`` (do not modify)."""
        return {n: self.snapshots[n][k] for n in self.server_params}

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` (.npz) atomically."""
        meta = {
            "model": self.model,
            "seed": self.seed,
            "server_params": list(self.server_params),
            "target": self.target,
            "loss_final": self.loss_final,
            "tol": self.tol,
            "k_base": self.k_base,
            "contraction": None if self.contraction is None else vars(self.contraction),
            "seconds_per_iteration": self.seconds_per_iteration,
            "info": self.info,
            "snapshot_names": list(self.snapshots),
        }
        arrays = {"losses": self.losses, "distances": self.distances, "meta": np.array(json.dumps(meta))}
        arrays.update({f"snapshot__{n}": a for n, a in self.snapshots.items()})
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Baseline:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"baseline file {path} does not exist (run the baseline first)")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                snapshots = {n: z[f"snapshot__{n}"] for n in meta["snapshot_names"]}
                losses, distances = z["losses"], z["distances"]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"baseline file {path} is unreadable or incomplete: {err}") from err
        fit = meta["contraction"]
        return cls(
            model=meta["model"],
            seed=meta["seed"],
            server_params=tuple(meta["server_params"]),
            losses=losses,
            distances=distances,
            target=meta["target"],
            loss_final=meta["loss_final"],
            tol=meta["tol"],
            k_base=meta["k_base"],
            snapshots=snapshots,
            contraction=None if fit is None else ContractionFit(**fit),
            seconds_per_iteration=meta["seconds_per_iteration"],
            info=meta["info"],
        )


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to ``path`` atomically."""
    with atomic_write(path) as fh:
        np.savez(fh, **arrays)


def convergence_target(losses: np.ndarray, tol: float, final_window: int) -> tuple[float, float]:
    """``(target, loss_final)`` for an unperturbed loss curve."""
    if not 0.0 < tol < 1.0:
        raise ValueError(f"tol must be in (0, 1), got {tol}")
    window = max(1, min(final_window, losses.size - 1))
    loss_final = float(np.mean(losses[-window:]))
    loss_0 = float(losses[0])
    if not loss_0 > loss_final:
        raise ValueError(
            f"the baseline did not make progress (loss_0={loss_0:.6g}, final={loss_final:.6g}): "
            "check the learning rate and max_iters"
        )
    return loss_final + tol * (loss_0 - loss_final), loss_final


def run_baseline(
    model: Model,
    data: Any,
    *,
    seed: int,
    max_iters: int,
    tol: float = 0.01,
    final_window: int = 10,
    progress: Callable[[int, float], None] | None = None,
) -> Baseline:
    """Train ``max_iters`` iterations unperturbed and measure the target, ``K_base`` and ``c``.

    ``progress(k, loss)`` is called after every iteration (for a progress bar).
    """
    if max_iters < 2:
        raise ValueError(f"max_iters must be at least 2, got {max_iters}")
    state = model.init_state(data, seed)
    snaps: list[State] = [copy_state(state)]
    losses = [model.objective(state, data)]
    t0 = time.perf_counter()
    for k in range(1, max_iters + 1):
        model.step(state, data, iteration_rng(seed, k))
        losses.append(model.objective(state, data))
        snaps.append(copy_state(state))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(f"baseline objective became {losses[-1]} at iteration {k}: lower the learning rate")
        if progress is not None:
            progress(k, losses[-1])
    seconds = (time.perf_counter() - t0) / max_iters
    losses_a = np.asarray(losses)
    target, loss_final = convergence_target(losses_a, tol, final_window)
    k_base = first_at_or_below(losses_a, target)
    assert k_base is not None  # the mean of the final window is below the target
    if k_base < 2:
        raise ValueError(
            f"the baseline reached its target at iteration {k_base}: nothing to fail before it; lower tol or the learning rate"
        )
    final = model.server_state(snaps[-1])
    distances = np.array([params_distance(s, final, model.server_params) for s in snaps])
    try:
        fit = estimate_contraction(distances, 0, k_base + 1)
    except NotLinearlyConvergentError:
        fit = None
    snapshots = {n: np.stack([s[n] for s in snaps[: k_base + 1]]) for n in state}
    return Baseline(
        model=model.name,
        seed=seed,
        server_params=tuple(model.server_params),
        losses=losses_a,
        distances=distances,
        target=float(target),
        loss_final=loss_final,
        tol=tol,
        k_base=int(k_base),
        snapshots=snapshots,
        contraction=fit,
        seconds_per_iteration=seconds,
    )


@dataclass(frozen=True)
class RecoveredRun:
    """Outcome of a run continued from a recovered state.

    ``k_reached`` is the first iteration at or under the target, or None when censored;
    ``k_fractional`` the interpolated crossing (see :func:`crossing`); ``censor_reason`` is
    ``""``, ``"cap"`` (not reached by ``cap``) or ``"diverged"``.
    """

    k_reached: int | None
    last_iteration: int
    censor_reason: str
    k_fractional: float | None = None

    @property
    def censored(self) -> bool:
        return self.k_reached is None


def run_until_target(
    model: Model,
    data: Any,
    state: State,
    *,
    start: int,
    target: float,
    cap: int,
    seed: int,
    diverge_above: float = np.inf,
) -> RecoveredRun:
    """Continue ``state`` (the state after iteration ``start``) until the objective is at or
    under ``target``, up to iteration ``cap`` at the latest; modifies ``state``.

    A non-finite objective, or one above ``diverge_above``, stops the run as diverged.
    """
    loss = model.objective(state, data)
    previous = None
    k = start
    while True:
        if not np.isfinite(loss) or loss > diverge_above:
            return RecoveredRun(None, k, "diverged")
        if loss <= target:
            return RecoveredRun(k, k, "", crossing(k, loss, previous, target))
        if k >= cap:
            return RecoveredRun(None, k, "cap")
        k += 1
        model.step(state, data, iteration_rng(seed, k))
        previous, loss = loss, model.objective(state, data)
