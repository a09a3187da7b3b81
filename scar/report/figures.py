"""Figures of the evaluation (seaborn). Each function takes the tidy trial table and writes one
PNG; nothing here computes a statistic the tables do not also hold."""

from __future__ import annotations

import os
from fractions import Fraction

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window (CI, cluster nodes)
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from scar._atomic import atomic_write
from scar.report.analysis import STRATEGY_ORDER, bound_verdicts, fraction_text


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
    """Objective of each baseline run against iteration, with its target and K_base."""
    experiments = list(curves["experiment"].unique())
    ncols = min(3, len(experiments))
    nrows = -(-len(experiments) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(experiments) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, experiments):
        c = curves[curves["experiment"] == name]
        ax.plot(c["iteration"], c["objective"], lw=1.5)
        target, k_base = float(c["target"].iloc[0]), int(c["k_base"].iloc[0])
        ax.axhline(target, color="C3", ls="--", lw=1, label=f"target {target:.4g}")
        ax.axvline(k_base, color="C2", ls=":", lw=1, label=f"K_base = {k_base}")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("training objective (log scale)")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
