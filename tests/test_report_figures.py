"""Tests of the figures (scar.report.figures): each draws a real PNG from a small real run."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from scar.measure.study import StudySettings, run_study
from scar.measure.trials import TrialSettings, plan_trials, run_trial, trials_frame
from scar.planner.inputs import PlannerSettings
from scar.planner.plan import plan_for_baseline
from scar.planner.validation import planner_verdicts, summarize_validation, validate_plan
from scar.report import figures


@pytest.fixture(scope="module")
def trials(quadratic_baseline):
    model, base = quadratic_baseline
    settings = TrialSettings.from_names(interval=8, r_values=(0.25,), n_nodes=8)
    rows = [
        row
        for spec in plan_trials(3, [0.25, 0.5], (0.1, 0.9), 0, key="quadratic/none")
        for row in run_trial(model, None, base, spec, settings, dataset="none")
    ]
    return trials_frame(rows)


def _check_png(path, min_width=300):
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[1] >= min_width and img.shape[0] >= 200
    # Something is drawn: far from a blank canvas.
    assert np.mean(img[..., :3] < 0.9) > 0.01
    return img


def test_rework_figures(tmp_path, trials):
    figures.plot_rework_by_strategy(trials, tmp_path / "by_strategy.png")
    figures.plot_rework_vs_perturbation(trials, tmp_path / "vs_perturbation.png")
    _check_png(tmp_path / "by_strategy.png")
    _check_png(tmp_path / "vs_perturbation.png")


def test_rework_vs_bytes_figure_and_its_pareto_front(tmp_path, quadratic_baseline):
    model, base = quadratic_baseline
    settings = TrialSettings.from_names(["scar", "full_partial", "lc_partial", "lc_full_partial"], interval=8, r_values=(0.25,))
    rows = [
        row
        for spec in plan_trials(3, [0.25], (0.1, 0.9), 0, key="quadratic/none")
        for row in run_trial(model, None, base, spec, settings, dataset="none")
    ]
    frame = trials_frame(rows)
    pts = figures.pareto_points(frame).set_index("strategy")
    for s, g in frame.groupby("strategy"):
        assert pts.loc[s, "bytes"] == pytest.approx((g["checkpoint_bytes"] + g["checkpoint_index_bytes"]).mean())
        assert pts.loc[s, "rework"] == pytest.approx(g["rework_fractional"].mean())
    # On the front exactly when no other point is at most as costly on both axes, and better on one.
    for s, p in pts.iterrows():
        others = pts.drop(index=s)
        beaten = ((others["bytes"] <= p["bytes"]) & (others["rework"] <= p["rework"])
                  & ((others["bytes"] < p["bytes"]) | (others["rework"] < p["rework"]))).any()  # fmt: skip
        assert p["pareto"] == (not beaten)
    assert pts["pareto"].any()
    figures.plot_rework_vs_bytes(frame, tmp_path / "vs_bytes.png")
    _check_png(tmp_path / "vs_bytes.png")


def test_baselines_figure(tmp_path, quadratic_baseline):
    _, base = quadratic_baseline
    curves = pd.DataFrame(
        {"experiment": "quadratic / none", "iteration": np.arange(base.losses.size), "objective": base.losses,
         "target": base.target, "k_base": base.k_base}
    )  # fmt: skip
    figures.plot_baselines(curves, tmp_path / "baselines.png")
    _check_png(tmp_path / "baselines.png")


def test_study_figure_has_a_column_per_experiment(tmp_path, quadratic_baseline):
    model, base = quadratic_baseline
    runs, fit = run_study(model, None, base, StudySettings(n_iterations=2), TrialSettings(), dataset="none")
    figures.plot_study(runs, [fit], tmp_path / "one.png")
    two = pd.concat([runs, runs.assign(dataset="other")], ignore_index=True)
    figures.plot_study(two, [fit, {**fit, "dataset": "other"}], tmp_path / "two.png")
    one_img, two_img = _check_png(tmp_path / "one.png"), _check_png(tmp_path / "two.png")
    assert two_img.shape[1] > 1.5 * one_img.shape[1]


def test_validation_figure(tmp_path, quadratic_baseline):
    model, base = quadratic_baseline
    p = plan_for_baseline(
        PlannerSettings(mtbf=15, strategies=("traditional", "scar"), intervals=(4, 16), r_values=(0.5,), n_replicates=2), base
    )
    runs = validate_plan(model, None, base, p, TrialSettings(), n_replicates=2, experiment=("quadratic", "none"))
    figures.plot_validation(summarize_validation(runs), planner_verdicts(runs), tmp_path / "validation.png")
    _check_png(tmp_path / "validation.png")
