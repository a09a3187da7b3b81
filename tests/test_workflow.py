"""The Snakemake workflow end to end, on a tiny config, in a subprocess."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, SNAKEFILE, run_snakemake
from scar.measure.trials import TRIAL_COLUMNS
from scar.stages import config as scar_config

pytestmark = pytest.mark.slow

TABLES = (
    "trials",
    "summary",
    "headline",
    "baselines",
    "results",
    "perturbations",
    "perturbation_summary",
    "plans",
    "planner_validation",
    "planner_verdicts",
)
TINY = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
TINY_TRIALS = scar_config.trial_table(TINY)
TINY_BATCHES = len(TINY_TRIALS.drop_duplicates(["model", "dataset", "baseline_seed", "batch"]))
FIGURES = ("rework_by_strategy", "rework_vs_perturbation", "rework_vs_bytes", "baselines", "perturbations", "planner_validation")


def _jobs(output: str) -> dict[str, int]:
    """Job counts from Snakemake's 'Job stats' table."""
    stats = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def _interrupt_after_trials(workdir: Path, config: Path, n_done: int, timeout: float = 300) -> list[Path]:
    """Start the workflow, press Ctrl-C (SIGINT to its process group) once ``n_done`` trial
    results exist, and return the trial results left after the interrupt. With one core at
    most one job is in flight when interrupted: Snakemake marks its output incomplete even if
    it was already written, and reruns it."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "-d",
        str(workdir),
        "--cores",
        "1",
        "--configfile",
        str(config),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # A shell without job control starts background commands with SIGINT ignored, and
        # the child would inherit that (CI run as `.ci/run &`): give Snakemake Ctrl-C back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + timeout
    try:
        while len(sorted((workdir / "results" / "trials").rglob("*.csv"))) < n_done:
            assert proc.poll() is None, "the workflow ended before it could be interrupted"
            assert time.monotonic() < deadline, "no trial results appeared in time"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return sorted((workdir / "results" / "trials").rglob("*.csv"))


def test_tiny_run_interrupted_resumes_end_to_end(tmp_path):
    config = REPO / "tests" / "configs" / "tiny.yaml"
    results = tmp_path / "results"
    done = _interrupt_after_trials(tmp_path, config, n_done=2)
    assert 0 < len(done) < TINY_BATCHES
    assert not (results / "tables" / "trials.csv").exists()
    stamps = {p: p.stat().st_mtime_ns for p in done}

    # Resume: finished trials are kept as they are; only the rest run.
    proc = run_snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = _jobs(proc.stdout + proc.stderr)
    kept = [p for p, t in stamps.items() if p.stat().st_mtime_ns == t]
    assert len(kept) >= max(1, len(stamps) - 1)
    assert jobs.get("run_trials", 0) == TINY_BATCHES - len(kept)

    for name in TABLES:
        assert (results / "tables" / f"{name}.csv").stat().st_size > 0
    for name in FIGURES:
        png = results / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    trials = pd.read_csv(results / "tables" / "trials.csv")
    assert list(trials.columns) == list(TRIAL_COLUMNS)
    # Per experiment 2 positions x 2 fractions, each under 5 strategies (one r).
    assert len(trials) == len(TINY_TRIALS) * 5
    assert set(trials["model"]) == {"mlr", "mf", "lda"}
    assert set(trials["strategy"]) == {"traditional", "scar", "full_partial", "round_robin_partial", "random_partial"}
    assert trials["rework"].notna().all()
    assert (trials.loc[trials["recovery_policy"] == "full", "r"] == 1.0).all()
    assert (trials["failure_iteration"] >= 1).all()
    assert (trials["failure_iteration"] < trials["k_base"]).all()
    assert np.isfinite(trials["bound"]).all() and trials["c_hat"].between(0, 1, inclusive="neither").all()
    assert trials["rework_fractional"].notna().all()
    # Traditional recovery rolls everything back: never a smaller perturbation than full_partial's.
    by = trials.set_index(["model", "dataset", "trial", "failure_fraction", "strategy"])["perturbation_norm"].unstack()
    assert (by["traditional"] >= by["full_partial"] - 1e-12).all()

    summary = pd.read_csv(results / "tables" / "summary.csv")
    for col in ("rework_mean", "rework_ci_low", "rework_ci_high", "reduction", "n_censored"):
        assert col in summary.columns
    trad = summary[summary["strategy"] == "traditional"]
    assert (trad["reduction"].isna() | (trad["reduction"] == 0)).all()

    # The perturbation study: every kind at the sampled iteration, with the bound and c's interval.
    study = pd.read_csv(results / "tables" / "perturbations.csv")
    assert set(study["kind"]) == {"gaussian", "adversarial", "reset", "rollback", "precision", "staleness"}
    assert study["rework"].notna().all() and np.isfinite(study["bound"]).all()
    assert (study["bound_low"] <= study["bound"]).all() and (study["bound"] <= study["bound_high"]).all()
    ps = pd.read_csv(results / "tables" / "perturbation_summary.csv")
    assert (ps["c_low"] <= ps["c_hat"]).all() and (ps["c_hat"] <= ps["c_high"]).all()
    # The planner: a plan per experiment, and predicted against simulated cost for mlr/mnist.
    plans = pd.read_csv(results / "tables" / "plans.csv")
    per_experiment = plans.groupby(["model", "dataset"])
    assert (per_experiment["recommended"].sum() == 1).all() and (per_experiment["young_daly_reference"].sum() == 1).all()
    assert len(per_experiment) == 3
    validation = pd.read_csv(results / "tables" / "planner_validation.csv")
    assert {"recommended", "traditional at Young/Daly"} <= set(validation["role"])
    assert np.isfinite(validation[["predicted_cost", "simulated_cost"]].to_numpy()).all()
    # Every candidate is simulated, and the recommendations are judged against the cheapest.
    # (one experiment validated; Young/Daly's C = round(sqrt(2 * 2 * 10)) = 6 is not a candidate)
    assert len(validation) == scar_config.planner_settings(TINY).n_validated_settings
    verdicts = pd.read_csv(results / "tables" / "planner_verdicts.csv")
    assert set(verdicts["pricing"]) == {"calibrated", "bound"} and (verdicts["excess"] >= 0).all()
    # The report's front page: the description with the headline results, from the tables.
    front = (results / "report" / "front_page.rst").read_text()
    assert "Headline results" in front and "Checkpoint planner" in front

    # The HTML report holds the figures and tables.
    report = results / "report.html"
    proc = run_snakemake(tmp_path, "--configfile", str(config), "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert report.stat().st_size > 10_000
    assert "Headline results" in report.read_text()  # the front page shows the results

    # A second run from scratch gives the same numbers (seeded end to end).
    other = tmp_path / "again"
    other.mkdir()
    proc = run_snakemake(other, "--cores", "2", "--configfile", str(config))
    assert proc.returncode == 0, proc.stderr[-4000:]
    pd.testing.assert_frame_equal(trials, pd.read_csv(other / "results" / "tables" / "trials.csv"))
    for name in ("perturbations", "planner_validation"):
        pd.testing.assert_frame_equal(
            pd.read_csv(results / "tables" / f"{name}.csv"), pd.read_csv(other / "results" / "tables" / f"{name}.csv")
        )


def test_paper_config_dry_run_builds_its_dag(tmp_path):
    t0 = time.perf_counter()
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "paper.yaml"), timeout=300)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = _jobs(proc.stdout + proc.stderr)
    # 3 numpy models x 2 datasets and 2 torch models x 1 dataset, x 100 positions x 3 fractions,
    # in batches of failures.batch_size per baseline: the 6 stochastic experiments (mlr, lda,
    # cnn, ncf) have baseline.seeds baselines (20 positions each), ALS's two have one.
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    size, seeds = paper["failures"]["batch_size"], paper["baseline"]["seeds"]
    assert jobs["run_trials"] == 2 * math.ceil(100 * 3 / size) + 6 * seeds * math.ceil(100 // seeds * 3 / size)
    assert jobs["train_baseline"] == 2 + 6 * seeds
    print(f"paper config dry run: {elapsed:.1f}s for {jobs['total']} jobs")
    assert elapsed < 60, f"the paper config's DAG took {elapsed:.0f}s to build (limit 60s)"
