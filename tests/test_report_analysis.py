"""Aggregation: intervals, paired reductions, bound verdicts, the summary and headline tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scar.report.analysis import bound_verdicts, headline, markdown_table, mean_ci, paired_reduction, results_table, summarize


def test_mean_ci_is_the_student_t_interval():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    mean, lo, hi = mean_ci(x)
    half = stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2.0
    assert mean == pytest.approx(3.5)
    assert (lo, hi) == pytest.approx((3.5 - half, 3.5 + half))
    assert np.isnan(mean_ci(np.array([3.0]))[1])
    assert mean_ci(np.array([2.0, 2.0, 2.0])) == (2.0, 2.0, 2.0)


def test_paired_reduction_point_and_interval():
    ref = np.array([4.0, 6.0, 5.0, 7.0, 3.0])
    point, lo, hi = paired_reduction(0.25 * ref, ref)
    # Strategy rework proportional to the reference in every pair: no uncertainty in the ratio.
    assert point == pytest.approx(0.75)
    assert lo == pytest.approx(0.75) and hi == pytest.approx(0.75)
    rng = np.random.default_rng(0)
    noisy = np.clip(0.5 * ref + rng.normal(0, 1, ref.size), 0, None)
    point, lo, hi = paired_reduction(noisy, ref, n_boot=4000)
    assert point == pytest.approx(1 - noisy.mean() / ref.mean())
    assert lo < point < hi
    assert all(np.isnan(paired_reduction(np.ones(3), np.zeros(3))))
    with pytest.raises(ValueError):
        paired_reduction(np.ones(3), np.ones(4))


def test_bound_verdicts_treat_censored_runs_as_lower_bounds():
    rework = np.array([2, 5, 9, 9, 1])
    bound = np.array([2.5, 3.9, 7.5, 20.0, np.nan])
    censored = np.array([False, False, True, True, False])
    v = bound_verdicts(rework, bound, censored)
    # held; failed; censored and already over the bound: failed; censored within: unknown; no bound: unknown
    np.testing.assert_array_equal(v[:3], [1.0, 0.0, 0.0])
    assert np.isnan(v[3]) and np.isnan(v[4])


def _trials() -> pd.DataFrame:
    rows = []
    for trial, (trad, scar, bytes_t, bytes_s) in enumerate([(4, 1, 100, 120), (6, 0, 100, 110), (5, 2, 200, 200)]):
        for strategy, rework, nbytes, r, ckpt, rec in (
            ("traditional", trad, bytes_t, 1.0, "full", "full"),
            ("scar", scar, bytes_s, 0.25, "priority", "partial"),
        ):
            rows.append(
                dict(
                    model="m", dataset="d", dataset_label="d", data_source="embedded", strategy=strategy,
                    checkpoint_policy=ckpt, recovery_policy=rec, failure_fraction=0.25, r=r, C=8, trial=trial,
                    rework=rework, rework_fractional=rework - 0.5, censored=False, perturbation_norm=0.1 * rework,
                    bound=rework + 1.0, checkpoint_bytes=nbytes, seed=0,
                )
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_summarize_pairs_strategies_on_the_same_failures():
    trials = _trials()
    summary = summarize(trials).set_index("strategy")
    assert summary.loc["scar", "reduction"] == pytest.approx(1 - 1.0 / 5.0)
    assert summary.loc["scar", "reduction_fractional"] == pytest.approx(1 - 0.5 / 4.5)
    assert summary.loc["traditional", "reduction"] == pytest.approx(0.0)
    assert summary.loc["scar", "checkpoint_bytes_vs_traditional"] == pytest.approx(430 / 400)
    assert summary.loc["scar", "n_trials"] == 3 and summary.loc["scar", "n_censored"] == 0
    assert summary.loc["scar", "bound_holds"] == 1.0 and summary.loc["scar", "bound_decided"] == 3
    # Pairing is by trial, not by row order.
    shuffled = summarize(trials.sample(frac=1.0, random_state=1)).set_index("strategy")
    assert shuffled.loc["scar", "reduction"] == pytest.approx(summary.loc["scar", "reduction"])
    # A missing partner leaves the reduction undefined rather than mispaired.
    partial = summarize(trials.drop(index=0)).set_index("strategy")
    assert np.isnan(partial.loc["scar", "reduction"])


def test_summarize_names_missing_columns():
    with pytest.raises(ValueError, match="checkpoint_bytes"):
        summarize(_trials().drop(columns="checkpoint_bytes"))


def test_headline_has_one_row_per_fraction_with_both_reworks():
    table = headline(summarize(_trials()))
    assert len(table) == 1
    row = table.iloc[0]
    # The headline is on the interpolated measure; _whole columns count whole iterations.
    assert row["rework_mean_traditional"] == pytest.approx(4.5)
    assert row["rework_mean_scar"] == pytest.approx(0.5)
    assert row["reduction"] == pytest.approx(1 - 0.5 / 4.5)
    assert row["rework_mean_traditional_whole"] == pytest.approx(5.0)
    assert row["reduction_whole"] == pytest.approx(0.8)


def test_results_table_has_every_strategy_and_scars_reduction():
    summary = summarize(_trials())
    table = results_table(summary, "rework")
    assert list(table.columns) == ["model", "dataset", "nodes lost", "r", "trials", "traditional", "scar", "SCAR reduction"]
    row = table.iloc[0]
    assert row["nodes lost"] == "1/4" and row["r"] == "1/4" and row["trials"] == 3
    lo, hi = summary.set_index("strategy").loc["traditional", ["rework_ci_low", "rework_ci_high"]]
    assert row["traditional"] == f"5.00 [{lo:.2f}, {hi:.2f}]"
    assert row["SCAR reduction"].startswith("80% [")
    interpolated = results_table(summary, "rework_fractional").iloc[0]
    assert interpolated["scar"].startswith("0.50 [")
    with pytest.raises(ValueError, match="measure"):
        results_table(summary, "speed")


def test_markdown_table_has_a_header_rule_and_one_line_per_row():
    text = markdown_table(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 | y |"]


def test_intervals_over_several_baselines_hold_the_variation_between_them():
    # Two baselines whose trials differ by a constant offset: within each the spread is small,
    # between them large. The two-stage bootstrap must see it; a pooled t-interval on the
    # cluster-free trials cannot tell.
    rng = np.random.default_rng(3)
    values = np.concatenate([5 + 0.1 * rng.standard_normal(10), 9 + 0.1 * rng.standard_normal(10)])
    clusters = np.repeat([0, 1], 10)
    _, lo_c, hi_c = mean_ci(values, clusters=clusters, n_boot=4000)
    _, lo_t, hi_t = mean_ci(values)
    assert hi_c - lo_c > 1.3 * (hi_t - lo_t)
    assert lo_c < values.mean() < hi_c
    ref = values + 4.0
    point, lo, hi = paired_reduction(values, ref, clusters=clusters, n_boot=4000)
    assert lo < point < hi


def test_cells_of_equal_trials_are_flagged_not_given_a_zero_width_interval():
    from scar.report.analysis import reduction_cell, rework_cell, zero_count_bound

    assert zero_count_bound(20) == pytest.approx(1 - 0.05 ** (1 / 20))
    assert rework_cell(0.0, 0.0, 0.0, 20) == "0.00 (all 20 zero; P(rework > 0) < 14%)"
    assert rework_cell(2.0, 2.0, 2.0, 5) == "2.00 (all 5 equal)"
    assert rework_cell(4.8, 4.1, 5.5, 20) == "4.80 [4.10, 5.50]"
    assert reduction_cell(1.0, 1.0, 1.0, 20) == "100% (all 20 pairs alike: no interval)"
    assert reduction_cell(np.nan, np.nan, np.nan, 20) == "n/a (no rework)"
