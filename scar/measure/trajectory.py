"""Baseline trajectories: the unperturbed run every measurement compares with (docs/design.md §6).

The baseline is the unperturbed run. It fixes the convergence target

    target = loss_final + tol * (loss_0 - loss_final)

(``loss_final`` is the mean objective over the last ``final_window`` iterations of a run of
``max_iters`` iterations) and ``K_base``, the first iteration at or under it. It keeps a
snapshot of the whole state at every iteration up to ``K_base``, so the checkpoint store of any
policy at any failure iteration can be rebuilt by replaying the policy over the snapshots, and
a recovered run can start from the exact state at the failure, without re-training.

Iteration ``k`` always draws from :func:`~scar.measure.engine.iteration_rng` ``(seed, k)``: a
recovered run sees the same minibatches and samples as the baseline from the failure on
(common random numbers), so the rework measures the perturbation and not the luck of the draw.

The contraction rate ``c`` and ``||x_0 - x*||`` are estimated once per baseline, with their
bootstrap intervals (:func:`~scar.core.bounds.estimate_contraction_ci`); the failure trials,
the perturbation study and the planner all use that one estimate.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scar._atomic import atomic_write
from scar.checkpoint.checkpointer import TouchedRows
from scar.core.blocks import params_distance
from scar.core.bounds import ContractionEstimate, ContractionFit, NotLinearlyConvergentError, estimate_contraction_ci
from scar.measure.engine import Engine, InProcessEngine, iteration_rng
from scar.models.base import Model, State


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
    contraction : the estimate of the contraction rate over ``[0, k_base]`` with its bootstrap
        intervals (None when it cannot be fitted; ``info["contraction_error"]`` says why).
    seconds_per_iteration : mean wall time of one iteration.
    touched : for a model that reports its accessed rows (:meth:`~scar.models.base.Model.touched_rows`):
        server array -> int32 counts of shape ``(k_base + 1, rows)``, how often iteration ``k``
        accessed each row (row 0, the initial state, is zero); empty for a dense model.
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
    contraction: ContractionEstimate | None
    seconds_per_iteration: float
    info: dict[str, Any] = field(default_factory=dict)
    touched: dict[str, np.ndarray] = field(default_factory=dict)

    def touched_at(self, k: int) -> TouchedRows:
        """The rows iteration ``k`` accessed, as the Checkpointer counts them (row ids, repeated
        as often as accessed); None (every row) for a dense model."""
        if not self.touched:
            return None
        return {n: np.repeat(np.arange(c.shape[1]), c[k]) for n, c in self.touched.items()}

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

    @property
    def worker_state_bytes(self) -> int:
        """Bytes of one copy of the state outside the server arrays (worker state, counters):
        what a whole-job checkpoint writes on top of the server rows."""
        return int(sum(a[0].nbytes for n, a in self.snapshots.items() if n not in self.server_params))

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
            "contraction": None if self.contraction is None else _estimate_to_json(self.contraction),
            "seconds_per_iteration": self.seconds_per_iteration,
            "info": self.info,
            "snapshot_names": list(self.snapshots),
            "touched_names": list(self.touched),
        }
        arrays = {"losses": self.losses, "distances": self.distances, "meta": np.array(json.dumps(meta))}
        arrays.update({f"snapshot__{n}": a for n, a in self.snapshots.items()})
        arrays.update({f"touched__{n}": a for n, a in self.touched.items()})
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
                touched = {n: z[f"touched__{n}"] for n in meta.get("touched_names", [])}
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
            contraction=None if fit is None else _estimate_from_json(fit),
            seconds_per_iteration=meta["seconds_per_iteration"],
            info=meta["info"],
            touched=touched,
        )


def touched_counts(
    model: Model, data: Any, seed: int, k: int, shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, np.ndarray] | None:
    """Per server array, how often iteration ``k`` of the run seeded ``seed`` accesses each row
    (:meth:`~scar.models.base.Model.touched_rows` on a fresh copy of the iteration's stream);
    None for a dense model."""
    rows = model.touched_rows(data, iteration_rng(seed, k))
    if rows is None:
        return None
    out = {}
    for n in model.server_params:
        ids = np.asarray(rows.get(n, np.zeros(0, dtype=np.int64)))
        n_rows = int(shapes[n][0])
        out[n] = ids.astype(np.int32) if ids.dtype == bool else np.bincount(ids, minlength=n_rows).astype(np.int32)
        if out[n].shape != (n_rows,):
            raise ValueError(f"{model.name}.touched_rows: rows of {n!r} out of range [0, {n_rows})")
    return out


def _estimate_to_json(est: ContractionEstimate) -> dict[str, Any]:
    return {**vars(est), "fit": vars(est.fit)}


def _estimate_from_json(d: dict[str, Any]) -> ContractionEstimate:
    return ContractionEstimate(**{**d, "fit": ContractionFit(**d["fit"])})


def estimate_baseline_contraction(
    distances: np.ndarray, k_base: int, *, n_boot: int = 200, seed: int = 0
) -> tuple[ContractionEstimate | None, str]:
    """The one contraction estimate of a baseline, over iterations ``[0, k_base]``, and why
    there is none (``""`` when there is)."""
    try:
        return estimate_contraction_ci(distances, 0, k_base + 1, n_boot=n_boot, seed=seed), ""
    except NotLinearlyConvergentError as err:
        return None, str(err)


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
    n_boot: int = 200,
    progress: Callable[[int, float], None] | None = None,
    engine: Engine | None = None,
) -> Baseline:
    """Train ``max_iters`` iterations unperturbed and measure the target, ``K_base`` and ``c``.

    ``n_boot`` bootstrap resamples give the interval of ``c`` (seeded with ``seed``).
    ``progress(k, loss)`` is called after every iteration (for a progress bar). ``engine``
    executes the run (default: in this process).
    """
    if max_iters < 2:
        raise ValueError(f"max_iters must be at least 2, got {max_iters}")
    engine = engine if engine is not None else InProcessEngine(model, data, seed)
    engine.load(model.init_state(data, seed), 0)
    snaps: list[State] = [engine.state()]
    losses = [engine.objective()]
    shapes = {n: snaps[0][n].shape for n in model.server_params}
    touched: list[dict[str, np.ndarray] | None] = [None]
    t0 = time.perf_counter()
    for k in range(1, max_iters + 1):
        touched.append(touched_counts(model, data, seed, k, shapes))
        engine.step()
        losses.append(engine.objective())
        snaps.append(engine.state())
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
    fit, why = estimate_baseline_contraction(distances, int(k_base), n_boot=n_boot, seed=seed)
    snapshots = {n: np.stack([s[n] for s in snaps[: k_base + 1]]) for n in snaps[0]}
    counts: dict[str, np.ndarray] = {}
    if touched[1] is not None:
        counts = {
            n: np.stack([np.zeros(shapes[n][0], np.int32)] + [t[n] for t in touched[1 : k_base + 1]]) for n in model.server_params
        }  # type: ignore[index]
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
        info={"contraction_error": why} if why else {},
        touched=counts,
    )
