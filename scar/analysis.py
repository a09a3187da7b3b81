"""Aggregation of trial results: mean rework with confidence intervals, and the reduction
against traditional checkpointing (SCAR.md section 4, step 5).

Trials are paired: every strategy is measured on the same failures (same iteration, same lost
nodes, same random stream), so the reduction ``1 - mean(rework_s) / mean(rework_traditional)``
gets its confidence interval from a bootstrap over trials that resamples the pairs together.
Censored runs enter with their lower-bound rework (cap - K_base) and are counted in
``n_censored``, never dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

#: Columns that identify one cell of the summary table.
GROUP_COLUMNS: list[str] = [
    "model", "dataset", "dataset_label", "data_source", "strategy", "checkpoint_policy",
    "recovery_policy", "failure_fraction", "r", "C",
]  # fmt: skip
#: Columns that identify one failure (the unit of pairing).
PAIR_COLUMNS: list[str] = ["model", "dataset", "failure_fraction", "trial"]
BASELINE_STRATEGY = "traditional"


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of ``values`` (NaN interval for one value)."""
    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean()) if x.size else np.nan
    if x.size < 2:
        return m, np.nan, np.nan
    sem = float(x.std(ddof=1) / np.sqrt(x.size))
    if sem == 0.0:
        return m, m, m
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * sem
    return m, m - half, m + half


def paired_reduction(
    strategy: np.ndarray, reference: np.ndarray, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """``1 - mean(strategy) / mean(reference)`` and its paired percentile-bootstrap interval.

    NaN when the reference's mean rework is zero (nothing to reduce).
    """
    s = np.asarray(strategy, dtype=np.float64)
    t = np.asarray(reference, dtype=np.float64)
    if s.shape != t.shape or s.size == 0:
        raise ValueError(f"paired samples must have the same non-zero length, got {s.shape} and {t.shape}")
    if t.mean() == 0:
        return np.nan, np.nan, np.nan
    point = 1.0 - s.mean() / t.mean()
    if s.size < 2:
        return float(point), np.nan, np.nan
    idx = np.random.default_rng(seed).integers(0, s.size, size=(n_boot, s.size))
    ts = t[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = 1.0 - s[idx].mean(axis=1) / ts
    boots = boots[np.isfinite(boots)]
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha]) if boots.size else (np.nan, np.nan)
    return float(point), float(lo), float(hi)


def summarize(trials: pd.DataFrame, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (model, dataset, strategy, failure fraction, r): rework statistics and the
    reduction against ``traditional`` on the same failures."""
    missing = sorted(
        set(GROUP_COLUMNS + PAIR_COLUMNS + ["rework", "censored", "perturbation_norm", "bound"]) - set(trials.columns)
    )
    if missing:
        raise ValueError(f"trial table lacks column(s) {missing}")
    reference = (
        trials[trials["strategy"] == BASELINE_STRATEGY].set_index(PAIR_COLUMNS)["rework"]
        if (trials["strategy"] == BASELINE_STRATEGY).any()
        else None
    )
    out = []
    for key, g in trials.groupby(GROUP_COLUMNS, sort=True, dropna=False):
        row = dict(zip(GROUP_COLUMNS, key))
        mean, lo, hi = mean_ci(g["rework"].to_numpy(), confidence)
        bound = g["bound"].to_numpy(dtype=np.float64)
        holds = g["rework"].to_numpy() <= np.ceil(bound - 1e-9)
        row.update(
            n_trials=len(g),
            n_censored=int(g["censored"].sum()),
            rework_mean=mean,
            rework_ci_low=lo,
            rework_ci_high=hi,
            rework_median=float(g["rework"].median()),
            perturbation_norm_mean=float(g["perturbation_norm"].mean()),
            bound_mean=float(np.nanmean(bound)) if np.isfinite(bound).any() else np.nan,
            bound_holds=float(holds[np.isfinite(bound)].mean()) if np.isfinite(bound).any() else np.nan,
        )
        red = (np.nan, np.nan, np.nan)
        if reference is not None:
            ref = reference.reindex(pd.MultiIndex.from_frame(g[PAIR_COLUMNS]))
            if ref.notna().all():
                red = paired_reduction(g["rework"].to_numpy(), ref.to_numpy(), confidence=confidence, n_boot=n_boot, seed=seed)
        row.update(reduction=red[0], reduction_ci_low=red[1], reduction_ci_high=red[2])
        out.append(row)
    return pd.DataFrame(out)


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper-style table: SCAR against traditional per model, dataset, failure fraction
    (and r), with the rework of both and the reduction with its interval."""
    scar = summary[summary["strategy"] == "scar"]
    trad = summary[summary["strategy"] == BASELINE_STRATEGY][["model", "dataset", "failure_fraction", "rework_mean"]]
    merged = scar.merge(trad, on=["model", "dataset", "failure_fraction"], suffixes=("", "_traditional"))
    return merged[
        ["model", "dataset_label", "failure_fraction", "r", "C", "n_trials", "rework_mean_traditional",
         "rework_mean", "reduction", "reduction_ci_low", "reduction_ci_high", "n_censored"]
    ].rename(columns={"rework_mean": "rework_mean_scar", "dataset_label": "dataset"})  # fmt: skip
