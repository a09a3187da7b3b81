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

from scar.checkpoint.strategy import STRATEGIES
from scar.core.bounds import bound_verdicts

#: Columns that identify one cell of the summary table.
GROUP_COLUMNS: list[str] = [
    "model", "dataset", "dataset_label", "data_source", "strategy", "checkpoint_policy",
    "recovery_policy", "failure_fraction", "r", "C",
]  # fmt: skip
#: Columns that identify one failure (the unit of pairing).
#: Strategies in the order tables and figures show them: the reference first, SCAR last.
STRATEGY_ORDER: list[str] = [s for s in STRATEGIES if s != "scar"] + ["scar"]
PAIR_COLUMNS: list[str] = ["model", "dataset", "failure_fraction", "trial"]
BASELINE_STRATEGY = "traditional"


def mean_ci(
    values: np.ndarray, confidence: float = 0.95, *, clusters: np.ndarray | None = None, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and confidence interval of ``values`` (NaN interval for one value): Student-t, or,
    with ``clusters`` (the baseline of each value) of more than one value, the percentiles of a
    two-stage bootstrap (:func:`cluster_bootstrap_means`) that holds the variation between
    baselines. All values equal give a zero-width interval: :func:`results_table` says so."""
    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean()) if x.size else np.nan
    if x.size < 2:
        return m, np.nan, np.nan
    if clusters is not None and np.unique(clusters).size > 1:
        (boots,) = cluster_bootstrap_means((x,), clusters, n_boot=n_boot, seed=seed)
        alpha = (1.0 - confidence) / 2
        lo, hi = np.quantile(boots, [alpha, 1 - alpha])
        return m, float(min(lo, m)), float(max(hi, m))
    sem = float(x.std(ddof=1) / np.sqrt(x.size))
    if sem == 0.0:
        return m, m, m
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * sem
    return m, m - half, m + half


def cluster_bootstrap_means(
    columns: tuple[np.ndarray, ...], clusters: np.ndarray, *, n_boot: int = 2000, seed: int = 0
) -> tuple[np.ndarray, ...]:
    """Means of each of ``columns`` (paired: the same rows) over ``n_boot`` two-stage bootstrap
    resamples: clusters (baselines) drawn with replacement, then rows within each drawn cluster.
    The spread of these means holds the variation between clusters as well as within them."""
    clusters = np.asarray(clusters)
    ids = np.unique(clusters)
    members = [np.flatnonzero(clusters == c) for c in ids]
    rng = np.random.default_rng(seed)
    sums = [np.zeros(n_boot) for _ in columns]
    counts = np.zeros(n_boot)
    for _ in ids:
        chosen = rng.integers(0, ids.size, size=n_boot)
        for c, rows in enumerate(members):
            draw = np.flatnonzero(chosen == c)
            if not draw.size:
                continue
            idx = rows[rng.integers(0, rows.size, size=(draw.size, rows.size))]
            for total, col in zip(sums, columns):
                total[draw] += col[idx].sum(axis=1)
            counts[draw] += rows.size
    return tuple(total / counts for total in sums)


def paired_reduction(
    strategy: np.ndarray,
    reference: np.ndarray,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    clusters: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """``1 - mean(strategy) / mean(reference)`` and its paired percentile-bootstrap interval.

    With ``clusters`` (the baseline of each pair) of more than one value, the bootstrap is
    two-stage (:func:`cluster_bootstrap_means`), so the interval holds the variation between
    baselines. NaN when the reference's mean rework is zero (nothing to reduce).
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
    if clusters is not None and np.unique(clusters).size > 1:
        ss, ts = cluster_bootstrap_means((s, t), clusters, n_boot=n_boot, seed=seed)
    else:
        idx = np.random.default_rng(seed).integers(0, s.size, size=(n_boot, s.size))
        ss, ts = s[idx].mean(axis=1), t[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = 1.0 - ss / ts
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
    needed = GROUP_COLUMNS + PAIR_COLUMNS + [*MEASURES, "seed", "censored", "perturbation_norm", "bound", "checkpoint_bytes"]
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
        clusters = g["seed"].to_numpy()
        row["n_baselines"] = int(np.unique(clusters).size)
        for column, suffix in MEASURES.items():
            values = g[column].to_numpy(dtype=np.float64)
            mean, lo, hi = mean_ci(values, confidence, clusters=clusters, n_boot=n_boot, seed=seed)
            red = (np.nan, np.nan, np.nan)
            if paired:
                red = paired_reduction(
                    values, ref[column].to_numpy(dtype=np.float64), confidence=confidence, n_boot=n_boot, seed=seed,
                    clusters=clusters,
                )  # fmt: skip
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
    (and r): the rework of both and the reduction with its interval, on the interpolated
    measure (the columns ending in ``_whole`` count whole iterations)."""
    scar = summary[summary["strategy"] == "scar"]
    keys = ["model", "dataset", "failure_fraction"]
    trad = summary[summary["strategy"] == BASELINE_STRATEGY][[*keys, "rework_mean", "rework_fractional_mean"]]
    merged = scar.merge(trad, on=keys, suffixes=("", "_traditional"))
    names = {
        "dataset_label": "dataset",
        "rework_fractional_mean_traditional": "rework_mean_traditional",
        "rework_fractional_mean": "rework_mean_scar",
        "reduction_fractional": "reduction",
        "reduction_fractional_ci_low": "reduction_ci_low",
        "reduction_fractional_ci_high": "reduction_ci_high",
        "rework_mean_traditional": "rework_mean_traditional_whole",
        "rework_mean": "rework_mean_scar_whole",
        "reduction": "reduction_whole",
        "reduction_ci_low": "reduction_ci_low_whole",
        "reduction_ci_high": "reduction_ci_high_whole",
    }
    columns = ["model", "dataset_label", "failure_fraction", "r", "C", "n_trials", "n_baselines", "n_censored", *list(names)[1:],
               "checkpoint_bytes_vs_traditional"]  # fmt: skip
    return merged[columns].rename(columns=names)


def fraction_text(f: float) -> str:
    """``0.25`` as ``"1/4"``: how fractions (of nodes, of blocks) read in tables and figures."""
    return str(Fraction(float(f)).limit_denominator(1000))


def zero_count_bound(n: int, confidence: float = 0.95) -> float:
    """Exact one-sided upper confidence bound on the chance of a nonzero outcome after ``n`` of
    ``n`` zeros (Clopper-Pearson: ``1 - (1 - confidence)^(1/n)``; about ``3/n`` at 95%)."""
    return 1.0 - (1.0 - confidence) ** (1.0 / n)


def rework_cell(mean: float, lo: float, hi: float, n: int) -> str:
    """``"4.80 [4.10, 5.50]"``; a cell whose ``n`` trials were all equal says so instead of
    printing a zero-width interval (twenty equal values do not make a certainty)."""
    if np.isfinite(lo) and lo == hi:
        if mean == 0:
            return f"0.00 (all {n} zero; P(rework > 0) < {zero_count_bound(n):.0%})"
        return f"{mean:.2f} (all {n} equal)"
    return f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def reduction_cell(red: float, lo: float, hi: float, n: int) -> str:
    """``"91% [89%, 92%]"``; flagged where every resample gave the same reduction."""
    if not np.isfinite(red):
        return "n/a (no rework)"
    if np.isfinite(lo) and lo == hi:
        return f"{red:.0%} (all {n} pairs alike: no interval)"
    return f"{red:.0%} [{lo:.0%}, {hi:.0%}]"


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
                    row[s] = "—"  # not measured on this model (rebuild where it has nothing to rebuild)
                    continue
                e = e.iloc[0]
                row["trials"] = int(e["n_trials"])
                row[s] = rework_cell(e[f"{measure}_mean"], e[f"{measure}_ci_low"], e[f"{measure}_ci_high"], int(e["n_trials"]))
            scar = g[(g["strategy"] == "scar") & (g["r"] == r)]
            if len(scar):
                e = scar.iloc[0]
                red, lo, hi = (e[f"reduction{suffix}{x}"] for x in ("", "_ci_low", "_ci_high"))
                row["SCAR reduction"] = reduction_cell(red, lo, hi, int(e["n_trials"]))
            rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a GitHub Markdown table (no extra dependency)."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
