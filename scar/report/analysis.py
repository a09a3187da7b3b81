"""Aggregation of trial results: mean rework with confidence intervals, and the reduction
against traditional checkpointing (docs/design.md §6).

Trials are paired: every strategy is measured on the same failures (same iteration, same lost
nodes, same random stream), so the reduction ``1 - mean(rework_s) / mean(rework_traditional)``
gets its confidence interval from a bootstrap over trials that resamples the pairs together.
Censored runs enter with their lower-bound rework (cap - K_base) and are counted in
``n_censored``, never dropped. Bootstrap resamples in which traditional's mean rework is zero
have no reduction and are left out of its interval.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import stats

from scar.checkpoint.strategy import DEFAULT_STRATEGIES
from scar.core.bounds import bound_verdicts

#: Columns that identify one cell of the summary table.
GROUP_COLUMNS: list[str] = [
    "model", "dataset", "dataset_label", "data_source", "strategy", "checkpoint_policy",
    "recovery_policy", "failure_fraction", "r", "C",
]  # fmt: skip
#: Columns that identify one failure (the unit of pairing).
#: Strategies in the order tables and figures show them: the reference first, SCAR last.
STRATEGY_ORDER: list[str] = [s for s in DEFAULT_STRATEGIES if s != "scar"] + ["scar"]
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


#: The two rework measures: whole iterations, and the interpolated crossing of the target.
MEASURES: dict[str, str] = {"rework": "", "rework_fractional": "_fractional"}


def summarize(trials: pd.DataFrame, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (model, dataset, strategy, failure fraction, r): rework statistics (in whole
    iterations and interpolated), the reduction against ``traditional`` on the same failures,
    the checkpoint bytes written before the failures relative to ``traditional``, and the
    share of decidable runs where the bound held."""
    needed = GROUP_COLUMNS + PAIR_COLUMNS + [*MEASURES, "censored", "perturbation_norm", "bound", "checkpoint_bytes"]
    missing = sorted(set(needed) - set(trials.columns))
    if missing:
        raise ValueError(f"trial table lacks column(s) {missing}")
    is_ref = trials["strategy"] == BASELINE_STRATEGY
    reference = trials[is_ref].set_index(PAIR_COLUMNS) if is_ref.any() else None
    out = []
    for key, g in trials.groupby(GROUP_COLUMNS, sort=True, dropna=False):
        row = dict(zip(GROUP_COLUMNS, key))
        verdicts = bound_verdicts(g["rework"].to_numpy(), g["bound"].to_numpy(), g["censored"].to_numpy())
        decided = verdicts[np.isfinite(verdicts)]
        row.update(
            n_trials=len(g),
            n_censored=int(g["censored"].sum()),
            perturbation_norm_mean=float(g["perturbation_norm"].mean()),
            bound_mean=float(np.nanmean(g["bound"])) if np.isfinite(g["bound"]).any() else np.nan,
            bound_holds=float(decided.mean()) if decided.size else np.nan,
            bound_decided=int(decided.size),
            checkpoint_bytes_mean=float(g["checkpoint_bytes"].mean()),
        )
        ref = reference.reindex(pd.MultiIndex.from_frame(g[PAIR_COLUMNS])) if reference is not None else None
        paired = ref is not None and bool(ref["rework"].notna().all())
        row["checkpoint_bytes_vs_traditional"] = (
            float(g["checkpoint_bytes"].mean() / ref["checkpoint_bytes"].mean()) if paired else np.nan
        )
        for column, suffix in MEASURES.items():
            values = g[column].to_numpy(dtype=np.float64)
            mean, lo, hi = mean_ci(values, confidence)
            red = (np.nan, np.nan, np.nan)
            if paired:
                red = paired_reduction(
                    values, ref[column].to_numpy(dtype=np.float64), confidence=confidence, n_boot=n_boot, seed=seed
                )
            row.update(
                {
                    f"rework{suffix}_mean": mean,
                    f"rework{suffix}_ci_low": lo,
                    f"rework{suffix}_ci_high": hi,
                    f"reduction{suffix}": red[0],
                    f"reduction{suffix}_ci_low": red[1],
                    f"reduction{suffix}_ci_high": red[2],
                }
            )
        row["rework_median"] = float(g["rework"].median())
        out.append(row)
    return pd.DataFrame(out)


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper-style table: SCAR against traditional per model, dataset, failure fraction
    (and r): the rework of both and the reduction with its interval, in whole iterations and
    interpolated."""
    scar = summary[summary["strategy"] == "scar"]
    keys = ["model", "dataset", "failure_fraction"]
    trad = summary[summary["strategy"] == BASELINE_STRATEGY][[*keys, "rework_mean", "rework_fractional_mean"]]
    merged = scar.merge(trad, on=keys, suffixes=("", "_traditional"))
    return merged[
        ["model", "dataset_label", "failure_fraction", "r", "C", "n_trials", "n_censored",
         "rework_mean_traditional", "rework_mean", "reduction", "reduction_ci_low", "reduction_ci_high",
         "rework_fractional_mean_traditional", "rework_fractional_mean", "reduction_fractional",
         "reduction_fractional_ci_low", "reduction_fractional_ci_high", "checkpoint_bytes_vs_traditional"]
    ].rename(
        columns={"rework_mean": "rework_mean_scar", "rework_fractional_mean": "rework_fractional_mean_scar",
                 "dataset_label": "dataset"}
    )  # fmt: skip


def fraction_text(f: float) -> str:
    """``0.25`` as ``"1/4"``: how fractions (of nodes, of blocks) read in tables and figures."""
    return str(Fraction(float(f)).limit_denominator(1000))


def results_table(summary: pd.DataFrame, measure: str = "rework_fractional") -> pd.DataFrame:
    """The paper's results table, one row per model, dataset, failure fraction (and r): the
    mean rework of every strategy with its 95% CI, then SCAR's reduction against traditional
    with its paired-bootstrap CI. Cells are text (``"4.80 [4.1, 5.5]"``), for reading.

    ``measure`` is ``"rework_fractional"`` (interpolated at the target crossing) or
    ``"rework"`` (whole iterations).
    """
    suffix = MEASURES.get(measure)
    if suffix is None:
        raise ValueError(f"measure must be one of {sorted(MEASURES)}, got {measure!r}")
    strategies = [s for s in STRATEGY_ORDER if s in set(summary["strategy"])]
    strategies += sorted(set(summary["strategy"]) - set(strategies))
    # Rows are keyed by the fractional policies' r; full-checkpoint strategies (r = 1) repeat.
    fractional_r = sorted(set(summary.loc[summary["r"] < 1, "r"]), reverse=True) or [1.0]
    rows = []
    for (model, label, f), g in summary.groupby(["model", "dataset_label", "failure_fraction"], sort=True):
        for r in fractional_r:
            row = {"model": model, "dataset": label, "nodes lost": fraction_text(f), "r": fraction_text(r)}
            for s in strategies:
                e = g[(g["strategy"] == s) & ((g["r"] == r) | (g["r"] == 1.0))]
                if e.empty:
                    continue
                e = e.iloc[0]
                row["trials"] = int(e["n_trials"])
                row[s] = f"{e[f'{measure}_mean']:.2f} [{e[f'{measure}_ci_low']:.2f}, {e[f'{measure}_ci_high']:.2f}]"
            scar = g[(g["strategy"] == "scar") & (g["r"] == r)]
            if len(scar):
                e = scar.iloc[0]
                red, lo, hi = (e[f"reduction{suffix}{x}"] for x in ("", "_ci_low", "_ci_high"))
                row["SCAR reduction"] = f"{red:.0%} [{lo:.0%}, {hi:.0%}]" if np.isfinite(red) else "n/a (no rework)"
            rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a GitHub Markdown table (no extra dependency)."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
