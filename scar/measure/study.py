"""The perturbation study: measured rework of controlled perturbations against the bound.

For one model and dataset, at a few sampled iterations ``T`` of the baseline, every configured
perturbation (:mod:`scar.measure.perturbations`) is applied to the server parameters, the model's
``after_recovery`` is called on the perturbed rows, and the run continues to the baseline's
target with the baseline's random stream, exactly as a failure trial does
(:func:`scar.measure.trials.run_trial`). Each run is recorded with the bound
``log_{1/c}(1 + ||delta|| / (c^T ||x_0 - x*||))`` computed from the contraction rate ``c``
estimated on the baseline (with its bootstrap interval), and whether the bound held.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scar.measure import perturbations as P
from scar.core.bounds import NotLinearlyConvergentError, estimate_contraction_ci, iteration_cost_bound, local_contraction_rates
from scar.models.base import Model, State
from scar.measure.trajectory import Baseline, copy_state, iteration_rng, run_until_target
from scar.measure.trials import TrialSettings, failure_iteration, stable_seed

log = logging.getLogger("scar")

#: Columns of the per-run table of the study, in order.
STUDY_COLUMNS: tuple[str, ...] = (
    "model", "dataset", "dataset_label", "kind", "level", "requested_norm", "failure_position",
    "failure_iteration", "perturbed_fraction", "perturbation_norm", "effective_norm", "distance_to_final", "k_base", "k_pert",
    "rework", "rework_fractional", "censored", "censor_reason", "bound", "bound_low", "bound_high",
    "bound_held", "c_hat", "stochastic",
)  # fmt: skip


@dataclass(frozen=True)
class StudySettings:
    """What the study perturbs (the ``perturbations:`` section of the config).

    ``norms`` are multiples of ``||x_0 - x_final||`` (for ``gaussian`` and ``adversarial``),
    ``block_fractions`` the fractions of blocks of ``reset`` and ``rollback``,
    ``rollback_staleness`` how many iterations old the copy of ``rollback`` is, ``formats`` the
    number formats of ``precision``, ``staleness`` the ages ``k`` of ``staleness``.
    """

    n_iterations: int = 3
    kinds: tuple[str, ...] = tuple(P.KINDS)
    norms: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    block_fractions: tuple[float, ...] = (0.125, 0.5)
    rollback_staleness: int = 8
    formats: tuple[str, ...] = P.FORMATS
    staleness: tuple[int, ...] = (1, 4)
    window: tuple[float, float] = (0.1, 0.9)
    n_boot: int = 200
    seed: int = 0
    levels: list[tuple[str, Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n_iterations < 1:
            raise ValueError(f"perturbations.n_iterations must be >= 1, got {self.n_iterations}")
        for k in self.kinds:
            try:
                P.get_kind(k)
            except ValueError as err:
                raise ValueError(f"perturbations.kinds: {err}") from None
        if any(not n > 0 for n in self.norms):
            raise ValueError(f"perturbations.norms must be positive, got {list(self.norms)}")
        if any(not 0 < f <= 1 for f in self.block_fractions):
            raise ValueError(f"perturbations.block_fractions must be in (0, 1], got {list(self.block_fractions)}")
        if self.rollback_staleness < 1:
            raise ValueError(f"perturbations.rollback_staleness must be >= 1, got {self.rollback_staleness}")
        for f in self.formats:
            if f not in P.FORMATS:
                raise ValueError(f"perturbations.formats: unknown format {f!r}; expected some of {list(P.FORMATS)}")
        if any(k < 1 for k in self.staleness):
            raise ValueError(f"perturbations.staleness must be >= 1, got {list(self.staleness)}")
        lo, hi = self.window
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"perturbations window must satisfy 0 <= start < end <= 1, got {list(self.window)}")
        if self.n_boot < 10:
            raise ValueError(f"perturbations.n_boot must be >= 10, got {self.n_boot}")
        per_kind: dict[str, Sequence[Any]] = {
            "gaussian": self.norms,
            "adversarial": self.norms,
            "reset": self.block_fractions,
            "rollback": self.block_fractions,
            "precision": self.formats,
            "staleness": self.staleness,
        }
        object.__setattr__(self, "levels", [(k, v) for k in self.kinds for v in per_kind[k]])

    def positions(self, key: str) -> np.ndarray:
        """The sampled positions (fractions of ``K_base``) for experiment ``key``."""
        rng = np.random.default_rng(stable_seed(self.seed, key, "perturbations"))
        return np.sort(rng.uniform(*self.window, size=self.n_iterations))


def final_server_state(model: Model, data: Any, baseline: Baseline) -> State:
    """The server parameters at the end of the baseline run (``x_final``), recomputed from the
    snapshot at ``K_base`` with the baseline's random streams; checked against the recorded
    distance ``||x_K_base - x_final||``."""
    state = baseline.state_at(baseline.k_base)
    for k in range(baseline.k_base + 1, baseline.max_iters + 1):
        model.step(state, data, iteration_rng(baseline.seed, k))
    final = {n: state[n] for n in baseline.server_params}
    got = P.norm_of(baseline.server_state_at(baseline.k_base), final)
    want = float(baseline.distances[baseline.k_base])
    if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
        # Not fatal: the direction is still close to x_K - x_final, but say so in the job's log.
        log.warning(
            "recomputing the %s baseline's final parameters gave ||x_K - x_final|| = %.6g, recorded %.6g: the "
            "model's step is not bit-reproducible from its random stream (adversarial directions are approximate)",
            baseline.model, got, want,
        )  # fmt: skip
    return final


def is_stochastic(model: Model, data: Any, baseline: Baseline) -> bool:
    """Whether one step from ``x_0`` depends on its random stream (SGD, Gibbs sampling)."""
    a, b = baseline.state_at(0), baseline.state_at(0)
    model.step(a, data, np.random.default_rng([baseline.seed, 10**9, 1]))
    model.step(b, data, np.random.default_rng([baseline.seed, 10**9, 2]))
    return not all(np.array_equal(a[n], b[n]) for n in baseline.server_params)


def contraction_summary(baseline: Baseline, settings: StudySettings) -> dict[str, Any]:
    """The estimate of ``c`` and ``||x_0 - x*||`` over ``[0, K_base]`` with bootstrap intervals,
    and the spread of local rates along the run; ``fit_error`` says why when it cannot be fitted."""
    out: dict[str, Any] = {"k_base": baseline.k_base, "fit_error": ""}
    try:
        est = estimate_contraction_ci(baseline.distances, 0, baseline.k_base + 1, n_boot=settings.n_boot, seed=settings.seed)
    except NotLinearlyConvergentError as err:
        out |= dict.fromkeys(
            ["c_hat", "c_low", "c_high", "initial_distance", "initial_distance_low", "initial_distance_high", "fit_r2"], np.nan
        )
        out["fit_error"] = str(err)
    else:
        out |= {
            "c_hat": est.c,
            "c_low": est.c_low,
            "c_high": est.c_high,
            "initial_distance": est.initial_distance,
            "initial_distance_low": est.initial_distance_low,
            "initial_distance_high": est.initial_distance_high,
            "fit_r2": est.fit.r2,
        }
    window = max(3, baseline.k_base // 4)
    local = local_contraction_rates(baseline.distances, window, baseline.k_base + 1)
    out["local_window"] = window
    out["c_local_min"] = float(np.nanmin(local)) if np.isfinite(local).any() else np.nan
    out["c_local_max"] = float(np.nanmax(local)) if np.isfinite(local).any() else np.nan
    return out


def _bounds(norm: float, T: int, fit: Mapping[str, Any]) -> tuple[float, float, float]:
    if not np.isfinite(fit.get("c_hat", np.nan)):
        return np.nan, np.nan, np.nan
    point = iteration_cost_bound(norm, T, fit["c_hat"], fit["initial_distance"])
    corners = [
        iteration_cost_bound(norm, T, c, d)
        for c in (fit["c_low"], fit["c_high"])
        for d in (fit["initial_distance_low"], fit["initial_distance_high"])
    ]
    return point, min(corners + [point]), max(corners + [point])


def run_study(
    model: Model,
    data: Any,
    baseline: Baseline,
    settings: StudySettings,
    trial_settings: TrialSettings,
    *,
    dataset: str = "",
    dataset_label: str = "",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every configured perturbation at every sampled iteration: the runs (:data:`STUDY_COLUMNS`)
    and the contraction summary of the experiment."""
    fit = contraction_summary(baseline, settings)
    stochastic = is_stochastic(model, data, baseline)
    fit |= {"model": model.name, "dataset": dataset, "stochastic": stochastic}
    x_final = final_server_state(model, data, baseline) if "adversarial" in settings.kinds else None
    d0 = float(baseline.distances[0])
    cap = trial_settings.cap(baseline.k_base)
    diverge_above = trial_settings.diverge_above(float(baseline.losses[0]), baseline.loss_final)
    names = baseline.server_params
    key = f"{model.name}/{dataset}"
    rows = []
    for position in settings.positions(key):
        T0 = failure_iteration(float(position), baseline.k_base)
        for kind, level in settings.levels:
            rng = np.random.default_rng(stable_seed(settings.seed, key, T0, kind, level))
            T = T0
            x_T = {n: np.array(baseline.snapshots[n][T]) for n in names}
            requested = np.nan
            all_rows = {n: np.ones(x_T[n].shape[0], dtype=bool) for n in names}
            perturbed_rows = all_rows
            state: State | None = None
            if kind == "gaussian":
                requested = float(level) * d0
                new, norm = P.gaussian(x_T, requested, rng)
            elif kind == "adversarial":
                requested = float(level) * d0
                assert x_final is not None
                new, norm = P.adversarial(x_T, x_final, requested)
            elif kind == "reset":
                new, norm, perturbed_rows = P.reset(x_T, baseline.server_state_at(0), float(level), rng)
            elif kind == "rollback":
                stale_at = max(0, T - settings.rollback_staleness)
                new, norm, perturbed_rows = P.rollback(x_T, baseline.server_state_at(stale_at), float(level), rng)
            elif kind == "precision":
                new, norm = P.precision(x_T, str(level))
            elif kind == "staleness":
                stale_at = max(0, T - int(level))
                state = P.stale_update(
                    model, data, baseline.state_at(T), baseline.server_state_at(stale_at), iteration_rng(baseline.seed, T + 1)
                )
                T = T + 1
                new = {n: state[n] for n in names}
                norm = P.norm_of(new, baseline.server_state_at(T))
            else:  # pragma: no cover - StudySettings validates kinds
                raise ValueError(kind)
            if state is None:
                state = baseline.state_at(T)
                state.update({n: np.array(a, copy=True) for n, a in new.items()})
            model.after_recovery(state, data, perturbed_rows)
            # What remains of the perturbation once the model has resynchronised its state
            # (a model may rebuild server values from worker state, e.g. counts from assignments).
            effective = P.norm_of({n: state[n] for n in names}, baseline.server_state_at(T))
            if all(np.array_equal(state[n], baseline.snapshots[n][T]) for n in state):
                k_pert, k_frac, reason = baseline.k_base, baseline.k_base_fractional, ""
            else:
                run = run_until_target(
                    model, data, copy_state(state), start=T, target=baseline.target, cap=cap, seed=baseline.seed,
                    diverge_above=diverge_above,
                )  # fmt: skip
                k_pert, k_frac, reason = run.k_reached, run.k_fractional, run.censor_reason
            censored = k_pert is None
            bound, bound_low, bound_high = _bounds(norm, T, fit)
            n_rows = sum(int(np.sum(perturbed_rows[n])) for n in names)
            rows.append(
                {
                    "model": model.name,
                    "dataset": dataset,
                    "dataset_label": dataset_label or dataset,
                    "kind": kind,
                    "level": str(level),
                    "requested_norm": requested,
                    "failure_position": float(position),
                    "failure_iteration": T,
                    "perturbed_fraction": n_rows / sum(x_T[n].shape[0] for n in names),
                    "perturbation_norm": norm,
                    "effective_norm": effective,
                    "distance_to_final": float(baseline.distances[T]),
                    "k_base": baseline.k_base,
                    "k_pert": np.nan if censored else k_pert,
                    "rework": (cap if censored else k_pert) - baseline.k_base,
                    "rework_fractional": (cap if censored else k_frac) - baseline.k_base_fractional,
                    "censored": censored,
                    "censor_reason": reason,
                    "bound": bound,
                    "bound_low": bound_low,
                    "bound_high": bound_high,
                    "c_hat": fit["c_hat"],
                    "stochastic": stochastic,
                }
            )
    from scar.report.analysis import bound_verdicts  # scipy.stats: imported where needed (see scar.stages.pipeline.aggregate)

    frame = pd.DataFrame(rows)
    frame["bound_held"] = bound_verdicts(frame["rework"].to_numpy(), frame["bound"].to_numpy(), frame["censored"].to_numpy())
    return frame[list(STUDY_COLUMNS)], fit


def summarize_study(runs: pd.DataFrame, fits: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (model, dataset, kind) plus one ``all`` row per experiment: the estimated
    ``c`` with its interval, the share of decidable runs where the bound held, and why it may not."""
    by_exp = {(f["model"], f["dataset"]): f for f in fits}
    out = []
    for (m, d), g in runs.groupby(["model", "dataset"], sort=True):
        fit = by_exp.get((m, d), {})
        for kind, h in [*g.groupby("kind", sort=False), ("all", g)]:
            decided = h["bound_held"].dropna()
            out.append(
                {
                    "model": m,
                    "dataset": d,
                    "kind": kind,
                    "n_runs": len(h),
                    "n_censored": int(h["censored"].sum()),
                    "n_decided": len(decided),
                    "bound_held": float(decided.mean()) if len(decided) else np.nan,
                    "rework_mean": float(h["rework"].mean()),
                    "bound_mean": float(h["bound"].mean()),
                    "c_hat": fit.get("c_hat", np.nan),
                    "c_low": fit.get("c_low", np.nan),
                    "c_high": fit.get("c_high", np.nan),
                    "initial_distance": fit.get("initial_distance", np.nan),
                    "fit_r2": fit.get("fit_r2", np.nan),
                    "c_local_min": fit.get("c_local_min", np.nan),
                    "c_local_max": fit.get("c_local_max", np.nan),
                    "stochastic": fit.get("stochastic", np.nan),
                    "why_not": _why_not(h, fit) if len(decided) and decided.mean() < 1 else "",
                }
            )
    return pd.DataFrame(out)


def _why_not(runs: pd.DataFrame, fit: Mapping[str, Any]) -> str:
    """The reasons the bound's assumptions fail for these runs, as far as the data show them."""
    reasons = []
    if fit.get("fit_error"):
        return f"no contraction rate: {fit['fit_error']}"
    if fit.get("stochastic"):
        reasons.append("stochastic updates: the bound holds for E||x_k - x*||, not for every run")
    lo, hi, c = fit.get("c_local_min", np.nan), fit.get("c_local_max", np.nan), fit.get("c_hat", np.nan)
    if np.isfinite(hi) and np.isfinite(lo) and hi - lo > 0.02:
        reasons.append(f"c is not constant along the run (local rates {lo:.3f}-{hi:.3f}, global fit {c:.3f})")
    if np.isfinite(hi) and hi >= 1.0:
        reasons.append("distances grow over part of the run (local rate >= 1)")
    failed = runs[runs["bound_held"] == 0.0]
    if len(failed) and set(failed["kind"]) <= {"adversarial", "reset"}:
        reasons.append(
            "failures only under perturbations along the slow direction (adversarial/reset): the unperturbed run "
            "contracts faster than one global c early on, such a perturbation decays at the slowest local rate"
        )
    if len(failed) and (failed["censor_reason"] == "diverged").any():
        reasons.append("some perturbed runs diverged")
    reasons.append("rework is measured on the objective's target, the bound on ||x_k - x*||")
    return "; ".join(reasons)


def plot_study(runs: pd.DataFrame, fits: Sequence[Mapping[str, Any]], path: Any) -> None:
    """One column per model and dataset. Top: measured rework against the perturbation norm,
    by kind, with the bound's curve at each sampled iteration (c estimated; band: its bootstrap
    interval). Bottom: measured rework against the iteration of the perturbation, with each
    run's bound as a grey tick. Runs where the bound failed are circled in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scar.report.figures import _save

    by_exp = {(f["model"], f["dataset"]): f for f in fits}
    experiments = list(runs[["model", "dataset", "dataset_label"]].drop_duplicates().itertuples(index=False))
    fig, axes = plt.subplots(2, len(experiments), figsize=(6.2 * len(experiments), 8.4), squeeze=False)
    kinds = [k for k in P.KINDS if k in set(runs["kind"])]
    colors = {k: f"C{i}" for i, k in enumerate(kinds)}
    markers = dict(zip(kinds, "osD^vP"))
    for j, (m, d, label) in enumerate(experiments):
        g = runs[(runs["model"] == m) & (runs["dataset"] == d)]
        fit = by_exp.get((m, d), {})
        top, bottom = axes[0, j], axes[1, j]
        pos = g[g["perturbation_norm"] > 0]
        lo = float(pos["perturbation_norm"].min()) if len(pos) else 1e-3
        hi = float(pos["perturbation_norm"].max()) if len(pos) else 1.0
        grid = np.geomspace(lo / 2, hi * 2, 80)
        if np.isfinite(fit.get("c_hat", np.nan)):
            # One curve per sampled iteration (staleness runs stand one iteration later).
            its = sorted(g.loc[g["kind"] != "staleness", "failure_iteration"].unique()) or sorted(g["failure_iteration"].unique())
            for i, T in enumerate(its):
                curve = [_bounds(x, int(T), fit) for x in grid]
                shade = 0.25 + 0.6 * i / max(1, len(its) - 1)
                color = str(1.0 - shade)
                top.plot(grid, [c[0] for c in curve], color=color, lw=1.2, label=f"bound at T={T}")
                top.fill_between(grid, [c[1] for c in curve], [c[2] for c in curve], color=color, alpha=0.15, lw=0)
        for k in kinds:
            h = pos[pos["kind"] == k]
            top.scatter(h["perturbation_norm"], h["rework"], c=colors[k], marker=markers[k], s=30, alpha=0.8, label=k)
            h = g[g["kind"] == k]
            bottom.scatter(h["failure_iteration"], h["rework"], c=colors[k], marker=markers[k], s=30, alpha=0.8, label=k)
        bottom.scatter(g["failure_iteration"], g["bound"], marker="_", s=140, c="0.35", label="bound of each run")
        failed = g[g["bound_held"] == 0.0]
        for ax, x in [] if failed.empty else ((top, failed["perturbation_norm"]), (bottom, failed["failure_iteration"])):
            ax.scatter(x, failed["rework"], s=110, facecolors="none", edgecolors="red", lw=1.2, label="bound failed")
        top.set_xscale("log")
        top.set_xlabel("perturbation norm ||delta|| (log scale)")
        bottom.set_xlabel("iteration T of the perturbation")
        for ax in (top, bottom):
            ax.set_ylabel("rework (extra iterations)")
        decided = g["bound_held"].dropna()
        held = f"{decided.mean():.0%} of {len(decided)}" if len(decided) else "no"
        c_txt = (
            f"c = {fit['c_hat']:.4f} [{fit['c_low']:.4f}, {fit['c_high']:.4f}]"
            if np.isfinite(fit.get("c_hat", np.nan))
            else "c not fitted"
        )
        top.set_title(f"{m} / {label}: {c_txt}\nbound held in {held} runs" + (" (stochastic)" if fit.get("stochastic") else ""))
        top.legend(fontsize=7, ncol=2)
        bottom.legend(fontsize=7, ncol=2)
    fig.suptitle("Perturbation study: measured rework and the bound log_{1/c}(1 + ||delta|| / (c^T ||x_0 - x*||))", y=1.0)
    fig.tight_layout()
    _save(fig, path)
