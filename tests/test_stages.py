"""The stage functions the workflow scripts call."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from scar.measure.trials import TRIAL_COLUMNS, TrialSpec
from scar.stages.aggregate import aggregate
from scar.stages.baseline import train_baseline
from scar.stages.config import trial_settings
from scar.stages.data import prepare_dataset
from scar.stages.trials import run_trials


def test_uncaught_errors_reach_the_job_log(tmp_path):
    log = tmp_path / "job.log"
    code = (
        f"from scar.stages.job_log import setup_logging\nsetup_logging({str(log)!r})\nraise ValueError('bad block count 1234')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    text = log.read_text()
    assert "Traceback" in text and "bad block count 1234" in text


def test_stages_chain_on_files(tmp_path, tiny_config):
    data = tmp_path / "data.npz"
    prepare_dataset("mnist", {"source": "embedded", "max_samples": 300}, 0, data)
    params = {"learning_rate": 0.1, "batch_size": 50, "l2": 1e-3}
    baseline = train_baseline(
        "mlr", params, data, tmp_path / "b.npz", tmp_path / "b.json",
        max_iters=20, tol=0.02, final_window=5, seed=0, progress=False,
    )  # fmt: skip
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["k_base"] == baseline.k_base
    assert summary["data_source"] == "embedded"
    assert len(summary["objective_curve"]) == 21
    settings = trial_settings(tiny_config)
    specs = [TrialSpec(0, 0.5, 0.25, 1), TrialSpec(1, 0.7, 0.5, 2)]
    frame = run_trials("mlr", params, data, tmp_path / "b.npz", specs, settings, tmp_path / "t.csv")
    assert list(frame.columns) == list(TRIAL_COLUMNS)
    assert len(frame) == 2 * len(settings.strategies)
    again = pd.read_csv(tmp_path / "t.csv")
    assert np.array_equal(again["rework"], frame["rework"])
    out = {name: tmp_path / f"{name}.csv" for name in ("trials", "summary", "headline", "baselines")}
    summary_frame = aggregate(
        [tmp_path / "t.csv"], [tmp_path / "b.json"],
        trials_out=out["trials"], summary_out=out["summary"], headline_out=out["headline"], baselines_out=out["baselines"],
    )  # fmt: skip
    assert set(summary_frame["strategy"]) == {s.name for s in settings.strategies}
    headline = pd.read_csv(out["headline"])
    assert len(headline) == 2  # one row per failure fraction for SCAR
    assert pd.read_csv(out["baselines"])["k_base"].tolist() == [baseline.k_base]


def test_a_killed_trial_batch_resumes_without_redoing_finished_trials(tmp_path, tiny_config, monkeypatch):
    import scar.stages.trials as pipeline

    data = tmp_path / "data.npz"
    prepare_dataset("mnist", {"source": "embedded", "max_samples": 300}, 0, data)
    params = {"learning_rate": 0.1, "batch_size": 50, "l2": 1e-3}
    train_baseline(
        "mlr", params, data, tmp_path / "b.npz", tmp_path / "b.json",
        max_iters=20, tol=0.02, final_window=5, seed=0, progress=False,
    )  # fmt: skip
    settings = trial_settings(tiny_config)
    specs = [TrialSpec(0, 0.5, 0.25, 1), TrialSpec(1, 0.7, 0.5, 2), TrialSpec(2, 0.3, 0.25, 3)]
    reference = run_trials("mlr", params, data, tmp_path / "b.npz", specs, settings, tmp_path / "ref.csv")
    assert not (tmp_path / "ref.csv.progress").exists()

    real = pipeline.run_trial
    calls = []

    def killed_at_the_third(*args, **kwargs):
        calls.append(args[3].trial)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the job is killed while running its third trial
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run_trial", killed_at_the_third)
    out = tmp_path / "t.csv"
    try:
        run_trials("mlr", params, data, tmp_path / "b.npz", specs, settings, out)
    except KeyboardInterrupt:
        pass
    assert not out.exists() and (tmp_path / "t.csv.progress").exists()
    # A kill in the middle of writing a line leaves a partial last line: it is ignored.
    with open(tmp_path / "t.csv.progress", "a") as fh:
        fh.write('{"trial": "cut sh')

    calls.clear()
    monkeypatch.setattr(pipeline, "run_trial", lambda *a, **k: calls.append(a[3].trial) or real(*a, **k))
    resumed = run_trials("mlr", params, data, tmp_path / "b.npz", specs, settings, out)
    assert calls == [2]  # only the trial that had not finished
    pd.testing.assert_frame_equal(resumed, reference)
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(tmp_path / "ref.csv"))
    assert not (tmp_path / "t.csv.progress").exists()


def test_trial_progress_of_other_settings_is_discarded(tmp_path):
    from scar.stages.journal import TrialProgress

    path = tmp_path / "x.progress"
    first = TrialProgress(path, {"settings": {"interval": 8}})
    assert first.load() == {}
    first.add("t0", [{"rework": 1.5, "censored": np.bool_(False), "k_pert": np.nan}])
    rows = TrialProgress(path, {"settings": {"interval": 8}}).load()["t0"]
    assert rows[0]["rework"] == 1.5 and rows[0]["censored"] is False and np.isnan(rows[0]["k_pert"])
    assert TrialProgress(path, {"settings": {"interval": 4}}).load() == {}


def test_the_baseline_stage_checks_the_layout_before_training(tmp_path):
    from scar.measure.trials import TrialSettings

    data = tmp_path / "data.npz"
    prepare_dataset("covtype", {"source": "embedded", "options": {"n_samples": 300}}, 0, data)
    with pytest.raises(ValueError, match="55 blocks cannot be spread over 64 server nodes"):
        train_baseline(
            "mlr", {}, data, tmp_path / "b.npz", tmp_path / "b.json", max_iters=20, tol=0.02, final_window=5, seed=0,
            settings=TrialSettings.from_names(n_nodes=64), progress=False,
        )  # fmt: skip
    assert not (tmp_path / "b.npz").exists()
