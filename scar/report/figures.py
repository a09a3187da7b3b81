"""Every figure of the evaluation (matplotlib and seaborn). Each function takes a tidy table and
writes one PNG atomically; nothing here computes a statistic the tables do not also hold."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (CI, cluster nodes)
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from scar._atomic import atomic_write
from scar.core.bounds import bound_verdicts
from scar.measure.perturbations import KINDS
from scar.measure.study import bound_interval
from scar.report.analysis import STRATEGY_ORDER, fraction_text


def strategy_label(strategy: str, r: float) -> str:
    """``scar (r=1/4)`` for fractional policies, the bare name for full checkpoints."""
    if strategy in ("traditional", "full_partial") or r == 1.0:
        return strategy
    return f"{strategy} (r={fraction_text(r)})"


def _with_labels(trials: pd.DataFrame) -> pd.DataFrame:
    df = trials.copy()
    df["strategy (r)"] = [strategy_label(s, r) for s, r in zip(df["strategy"], df["r"])]
    df["experiment"] = df["model"] + " / " + df["dataset_label"]
    df["failure fraction"] = [fraction_text(f) for f in df["failure_fraction"]]
    return df


def _label_order(df: pd.DataFrame) -> list[str]:
    rank = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    pairs = df[["strategy", "r", "strategy (r)"]].drop_duplicates()
    pairs = pairs.assign(rank=pairs["strategy"].map(lambda s: rank.get(s, len(rank))))
    return list(pairs.sort_values(["rank", "r"], ascending=[True, False])["strategy (r)"])


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_rework_by_strategy(trials: pd.DataFrame, path: str | os.PathLike) -> None:
    """Mean rework (95% CI over trials) per strategy and failure fraction, in whole iterations
    (left) and interpolated at the target crossing (right); one row per model and dataset."""
    df = _with_labels(trials)
    long = df.melt(
        id_vars=["experiment", "failure fraction", "strategy (r)"], value_vars=["rework", "rework_fractional"],
        var_name="measure", value_name="extra iterations",
    )  # fmt: skip
    long["measure"] = long["measure"].map({"rework": "whole iterations", "rework_fractional": "interpolated"})
    fractions = sorted(df["failure fraction"].unique(), key=lambda s: float(Fraction(s)))
    grid = sns.catplot(
        data=long, kind="bar", x="failure fraction", y="extra iterations", hue="strategy (r)", row="experiment",
        col="measure", col_order=["whole iterations", "interpolated"], hue_order=_label_order(df), order=fractions,
        errorbar=("ci", 95), height=2.8, aspect=1.6, palette="colorblind", sharey="row",
    )  # fmt: skip
    grid.set_axis_labels("fraction of server nodes lost", "rework (extra iterations)")
    grid.set_titles("{row_name} — {col_name}")
    grid.figure.suptitle("Rework after a partial failure, by recovery strategy (mean, 95% CI)", y=1.01)
    _save(grid.figure, path)


def pareto_points(trials: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and strategy (at its r): mean bytes written by the failure (codec bytes
    and row indices, iteration 0 included), mean interpolated rework with its 95% Student-t
    half-width, and whether the point is on the experiment's Pareto front (no other point has
    both fewer or equal bytes and less or equal rework, one of them strictly)."""
    df = _with_labels(trials)
    index = df["checkpoint_index_bytes"] if "checkpoint_index_bytes" in df else 0
    df = df.assign(bytes=df["checkpoint_bytes"] + index)
    g = df.groupby(["experiment", "strategy", "r", "strategy (r)"], sort=False)
    pts = g.agg(
        bytes=("bytes", "mean"),
        rework=("rework_fractional", "mean"),
        sd=("rework_fractional", "std"),
        n=("rework_fractional", "size"),
    )
    pts = pts.reset_index()
    pts["half_width"] = 1.96 * pts["sd"].fillna(0.0) / np.sqrt(pts["n"])
    front = []
    for _, e in pts.groupby("experiment", sort=False):
        b, w = e["bytes"].to_numpy(), e["rework"].to_numpy()
        dominated = (
            (b[None, :] <= b[:, None]) & (w[None, :] <= w[:, None]) & ((b[None, :] < b[:, None]) | (w[None, :] < w[:, None]))
        ).any(axis=1)
        front.append(pd.Series(~dominated, index=e.index))
    pts["pareto"] = pd.concat(front) if front else False
    return pts.drop(columns="sd")


def plot_rework_vs_bytes(trials: pd.DataFrame, path: str | os.PathLike) -> None:
    """Per model and dataset: each strategy's mean rework (interpolated, 95% CI over trials)
    against the mean bytes it had written by the failure (codec bytes and row indices), the
    Pareto front of strategies and codecs joined by a line."""
    pts = pareto_points(trials)
    order = _label_order(_with_labels(trials))
    palette = dict(zip(order, sns.color_palette("colorblind", len(order))))
    experiments = list(dict.fromkeys(pts["experiment"]))
    ncol = min(3, len(experiments))
    nrow = -(-len(experiments) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), squeeze=False)
    for ax, name in zip(axes.ravel(), experiments):
        e = pts[pts["experiment"] == name]
        for label in order:
            p = e[e["strategy (r)"] == label]
            if len(p):
                ax.errorbar(p["bytes"] / 1e6, p["rework"], yerr=p["half_width"], fmt="o", color=palette[label],
                            label=label, capsize=2)  # fmt: skip
        f = e[e["pareto"]].sort_values("bytes")
        ax.plot(f["bytes"] / 1e6, f["rework"], color="0.3", lw=1, ls="--", zorder=0)
        ax.set_xlabel("bytes written by the failure (MB)")
        ax.set_ylabel("rework, interpolated")
        ax.set_title(name)
    for ax in axes.ravel()[len(experiments) :]:
        ax.axis("off")
    fig.suptitle("Rework against bytes written, every strategy and codec (dashed: the Pareto front)")
    fig.tight_layout()
    legend: dict[str, Any] = {}
    for ax in axes.ravel():
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    labels = [label for label in order if label in legend]
    handles = [legend[label] for label in labels]
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, frameon=False)
    _save(fig, path)


def plot_rework_vs_perturbation(trials: pd.DataFrame, path: str | os.PathLike) -> None:
    """Per model and dataset (one row each): left, rework against the perturbation norm
    ||x_recovered - x_T||; right, measured rework against the worst-case bound, where points
    on or under the diagonal are runs in which the bound held."""
    df = _with_labels(trials)
    order = _label_order(df)
    experiments = list(dict.fromkeys(df["experiment"]))
    fig, axes = plt.subplots(len(experiments), 2, figsize=(12, 3.6 * len(experiments)), squeeze=False)
    for i, (name, (ax1, ax2)) in enumerate(zip(experiments, axes)):
        e = df[df["experiment"] == name]
        positive = e[e["perturbation_norm"] > 0]
        sns.scatterplot(
            data=positive, x="perturbation_norm", y="rework_fractional", hue="strategy (r)", hue_order=order,
            palette="colorblind", alpha=0.7, ax=ax1, legend=i == 0,
        )  # fmt: skip
        if len(positive):
            ax1.set_xscale("log")
        ax1.set_xlabel("perturbation norm ||x_recovered - x_T|| (log scale)")
        ax1.set_ylabel("rework, interpolated")
        ax1.set_title(f"{name}: rework grows with the perturbation")
        zero = int((e["perturbation_norm"] == 0).sum())
        if zero:
            ax1.text(0.01, 0.98, f"{zero} runs with zero perturbation not shown", transform=ax1.transAxes, va="top", fontsize=8)
        if i == 0 and ax1.get_legend() is not None:
            sns.move_legend(ax1, "lower center", bbox_to_anchor=(1.1, 1.12), ncol=3, frameon=False, title=None)
        bounded = e[np.isfinite(e["bound"])]
        sns.scatterplot(
            data=bounded, x="bound", y="rework", hue="strategy (r)", hue_order=order, palette="colorblind",
            alpha=0.7, ax=ax2, legend=False,
        )  # fmt: skip
        if len(bounded):
            top = float(max(bounded["bound"].max(), bounded["rework"].max(), 1.0))
            ax2.plot([0, top], [0, top], color="0.4", lw=1, ls="--", label="rework = bound")
            verdicts = bound_verdicts(bounded["rework"], bounded["bound"], bounded["censored"])
            decided = verdicts[np.isfinite(verdicts)]
            held = f"{decided.mean():.0%} of {decided.size}" if decided.size else "none of the"
            ax2.set_title(f"bound held in {held} decidable runs")
            ax2.legend(loc="upper left")
        else:
            ax2.set_title("no bound: c could not be estimated")
        ax2.set_xlabel("bound log_{1/c}(1 + ||delta|| / (c^T ||x_0 - x*||)), c estimated")
        ax2.set_ylabel("measured rework (whole iterations)")
    fig.tight_layout()
    _save(fig, path)


def plot_baselines(curves: pd.DataFrame, path: str | os.PathLike) -> None:
    """Objective of each baseline run against iteration, with its target and K_base; one panel
    per experiment, one curve per baseline seed (column ``seed``, when there is one)."""
    if "seed" not in curves:
        curves = curves.assign(seed=0)
    experiments = list(curves["experiment"].unique())
    ncols = min(3, len(experiments))
    nrows = -(-len(experiments) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(experiments) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, experiments):
        runs = curves[curves["experiment"] == name]
        several = runs["seed"].nunique() > 1
        for i, (seed, c) in enumerate(runs.groupby("seed", sort=True)):
            target, k_base = float(c["target"].iloc[0]), int(c["k_base"].iloc[0])
            tag = f"seed {seed}: " if several else ""
            ax.plot(c["iteration"], c["objective"], lw=1.5, color=f"C{i}", label=f"{tag}objective" if several else None)
            ax.axhline(target, color=f"C{i}", ls="--", lw=0.8, label=f"{tag}target {target:.4g}")
            ax.axvline(k_base, color=f"C{i}", ls=":", lw=0.8, label=f"{tag}K_base = {k_base}")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("training objective (log scale)")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_study(runs: pd.DataFrame, fits: Sequence[Mapping[str, Any]], path: Any) -> None:
    """One column per model and dataset. Top: measured rework against the perturbation norm,
    by kind, with the bound's curve at each sampled iteration (c estimated; band: its bootstrap
    interval). Bottom: measured rework against the iteration of the perturbation, with each
    run's bound as a grey tick. Runs where the bound failed are circled in red."""
    by_exp = {(f["model"], f["dataset"]): f for f in fits}
    experiments = list(runs[["model", "dataset", "dataset_label"]].drop_duplicates().itertuples(index=False))
    fig, axes = plt.subplots(2, len(experiments), figsize=(6.2 * len(experiments), 8.4), squeeze=False)
    kinds = [k for k in KINDS if k in set(runs["kind"])]
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
                curve = [bound_interval(x, int(T), fit) for x in grid]
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


def plot_validation(summary: pd.DataFrame, verdicts: pd.DataFrame, path: Any) -> None:
    """Per validated experiment, predicted against simulated cost of a run for every candidate
    (filled: rework priced by the calibrated model, hollow: by the bound; the recommendations
    ringed; the diagonal is a perfect prediction); last panel, each recommendation's simulated
    cost over the cheapest simulated setting's, with 95% paired-bootstrap intervals over
    replicates, against the tolerance."""
    experiments = list(summary[["model", "dataset"]].drop_duplicates().itertuples(index=False))
    n = max(1, len(experiments))
    fig, axes = plt.subplots(1, n + 1, figsize=(5.2 * (n + 1), 4.6), squeeze=False)
    for ax, (m, d) in zip(axes[0], experiments):
        h = summary[(summary["model"] == m) & (summary["dataset"] == d)]
        ax.scatter(h["simulated_cost"], h["predicted_cost"], color="C0", s=18, label="calibrated rework")
        ax.scatter(h["simulated_cost"], h["predicted_cost_bound"], facecolors="none", edgecolors="C3", s=18, label="bound rework")
        for col, pred, colour in (("rank", "predicted_cost", "C0"), ("rank_bound", "predicted_cost_bound", "C3")):
            rec = h[h[col] == 1]
            ax.scatter(rec["simulated_cost"], rec[pred], s=160, facecolors="none", edgecolors=colour, linewidths=2)
        lo = float(min(h["simulated_cost"].min(), h["predicted_cost"].min())) * 0.95
        hi = float(max(h["simulated_cost"].max(), h["predicted_cost_bound"].max())) * 1.05
        ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=1, label="predicted = simulated")
        ax.set_xlabel("simulated cost of a run (mean over replicates)")
        ax.set_ylabel("predicted cost of a run")
        ax.set_title(f"{m} / {d}: {len(h)} settings (ringed: recommended)", fontsize=9)
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    labels = [f"{m}/{d}" for m, d in experiments]
    for k, (pricing, colour) in enumerate((("calibrated", "C0"), ("bound", "C3"))):
        v = verdicts[verdicts["pricing"] == pricing].set_index(["model", "dataset"])
        x = np.arange(len(experiments)) + (k - 0.5) * 0.35
        y = np.array([100 * float(v.loc[e, "excess"]) if e in v.index else np.nan for e in experiments])
        low = np.array([100 * float(v.loc[e, "excess_ci_low"]) if e in v.index else np.nan for e in experiments])
        high = np.array([100 * float(v.loc[e, "excess_ci_high"]) if e in v.index else np.nan for e in experiments])
        ax.bar(x, y, width=0.35, color=colour, label=f"recommended ({pricing} rework)")
        ax.errorbar(x, y, yerr=[y - low, high - y], fmt="none", color="k", capsize=3)
        for xi, yi in zip(x, y):
            if np.isfinite(yi):  # a zero-height bar (the cheapest itself) stays readable
                ax.annotate(f"+{yi:.0f}%", (xi, max(yi, 0)), ha="center", va="bottom", fontsize=7, color=colour)
    if len(verdicts):
        tol = float(verdicts["tolerance"].iloc[0])
        ax.axhline(100 * tol, color="0.3", ls="--", lw=1, label=f"{tol:.0%} tolerance")
    ax.set_xticks(np.arange(len(experiments)), labels, fontsize=8)
    ax.set_ylabel("simulated cost over the cheapest simulated setting (%)")
    ax.set_title("the planner's recommendation against the cheapest", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_runtime_scale(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """The live runtime's cost curve against model size (benchmarks/bench_runtime_scale.py):
    iteration, checkpoint and restore seconds against the number of weights, log-log."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = [
        ("iteration_s", "iteration (data-parallel)"),
        ("full_save_s", "full checkpoint"),
        ("priority_save_s", "priority checkpoint (r = 1/4)"),
        ("partial_restore_s", "partial restore (1 shard)"),
        ("full_restore_s", "traditional restore (all shards)"),
        ("partial_recovery_s", "partial recovery, with Ray's detect + restart"),
    ]
    for col, label in series:
        ax.plot(table["weights"], table[col], marker="o", label=label)
    ax.set(xscale="log", yscale="log", xlabel="model size (weights)", ylabel="seconds")
    ax.set_title("Live runtime on a synthetic Criteo stand-in (sparse LR)")
    ax.legend(fontsize=8)
    _save(fig, path)
