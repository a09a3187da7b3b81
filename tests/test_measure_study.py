"""Tests of the perturbation study (scar.measure.study)."""

from __future__ import annotations

import numpy as np
import pytest

from scar.measure import perturbations as P
from scar.measure.study import StudySettings, run_study, summarize_study
from scar.measure.trajectory import run_baseline
from scar.measure.trials import TrialSettings
from scar.models import make_model


@pytest.fixture(scope="module")
def quadratic_study():
    model = make_model("quadratic", {"curvature_min": 1.0, "curvature_max": 1.0, "step_size": 0.1})
    baseline = run_baseline(model, None, seed=0, max_iters=120, tol=0.001, final_window=5)
    settings = StudySettings(n_iterations=3, n_boot=50)
    return run_study(model, None, baseline, settings, TrialSettings(), dataset="none")


def test_study_on_the_quadratic_estimates_c_and_the_bound_holds_in_every_run(quadratic_study):
    runs, fit = quadratic_study
    assert fit["c_low"] - 1e-4 <= 0.9 <= fit["c_high"] + 1e-4
    assert not fit["stochastic"]
    assert len(runs) == 3 * len(StudySettings().levels)
    assert set(runs["kind"]) == set(P.KINDS)
    assert (runs["bound_held"] == 1.0).all()
    assert (runs["bound_low"] <= runs["bound"]).all() and (runs["bound"] <= runs["bound_high"]).all()
    # The norm-controlled kinds got the norm asked for.
    ctl = runs[runs["kind"].isin(["gaussian", "adversarial"])]
    np.testing.assert_allclose(ctl["perturbation_norm"], ctl["requested_norm"], rtol=1e-9)
    # For one curvature the adversarial direction is the worst case: within an iteration of the bound.
    adv = runs[runs["kind"] == "adversarial"]
    assert (np.abs(adv["rework_fractional"] - adv["bound"]) < 1.0).all()
    summary = summarize_study(runs, [fit])
    assert (summary["bound_held"] == 1.0).all()
    assert (summary["why_not"] == "").all()


def test_study_settings_name_the_bad_key():
    with pytest.raises(ValueError, match="perturbations.kinds"):
        StudySettings(kinds=("gaussian", "cosmic_ray"))
    with pytest.raises(ValueError, match="perturbations.formats"):
        StudySettings(formats=("fp4",))
    with pytest.raises(ValueError, match="perturbations.norms"):
        StudySettings(norms=(0.1, -1.0))


def test_study_on_sgd_logistic_regression_runs_every_kind_and_reports_why():
    """A stochastic model: every kind runs through the model interface (after_recovery, common
    random numbers), the norms asked for are met, and the summary says why the bound may fail."""
    from scar.datasets import load_dataset

    model = make_model("mlr", {"learning_rate": 0.1, "batch_size": 50, "l2": 0.001})
    data = model.prepare(load_dataset("mnist", "embedded", max_samples=300, seed=0))
    baseline = run_baseline(model, data, seed=0, max_iters=25, tol=0.02, final_window=5)
    settings = StudySettings(n_iterations=1, norms=(0.1,), block_fractions=(0.5,), formats=("int8",), staleness=(2,), n_boot=20)
    runs, fit = run_study(model, data, baseline, settings, TrialSettings(), dataset="mnist")
    assert fit["stochastic"] and 0 < fit["c_low"] <= fit["c_hat"] <= fit["c_high"] < 1
    assert list(runs["kind"]) == list(P.KINDS)
    assert runs["rework"].notna().all() and runs["bound_held"].isin([0.0, 1.0]).all()
    ctl = runs[runs["kind"].isin(["gaussian", "adversarial"])]
    np.testing.assert_allclose(ctl["perturbation_norm"], ctl["requested_norm"], rtol=1e-9)
    # mlr's after_recovery leaves the server parameters as they are.
    np.testing.assert_allclose(runs["effective_norm"], runs["perturbation_norm"], rtol=1e-12)
    stale = runs[runs["kind"] == "staleness"].iloc[0]
    assert stale["failure_iteration"] == runs.iloc[0]["failure_iteration"] + 1
    # The same study again gives the same rows (seeded, common random numbers).
    again, _ = run_study(model, data, baseline, settings, TrialSettings(), dataset="mnist")
    assert runs.equals(again)
    summary = summarize_study(runs, [fit])
    row = summary[summary["kind"] == "all"].iloc[0]
    assert row["stochastic"]
    if row["bound_held"] < 1:
        assert "stochastic" in row["why_not"]
