"""The workflow through a real SLURM cluster (the executor plugin, sbatch, srun), on the tiny config.

Needs a running cluster whose node is this machine: `.ci/slurm.sh up` starts one (root, Debian).
Without one the tests skip, saying why; with SCAR_REQUIRE_SLURM=1 (set by `.ci/run` when
`.ci/slurm.sh up` succeeded) they fail instead, so CI cannot pass by silently skipping them.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, run_snakemake
from scar.stages import config as scar_config

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

PROFILE = REPO / "profiles" / "slurm"
# A test cluster: no accounting database (so job status from squeue, no account), and a first
# status check after 2 s instead of 40 s.
CLUSTER_ARGS = (
    "--workflow-profile", str(PROFILE),
    "--slurm-no-account",
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--jobs", "4",
)  # fmt: skip
SLURM_ID = re.compile(r"SLURM_JOB_ID=(\d+)")


def _cluster_problem() -> str | None:
    """Why the workflow cannot run on SLURM here, or None if it can."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on PATH: start a single-node cluster with `.ci/slurm.sh up` (needs root and apt)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: is slurmctld running? (`.ci/slurm.sh up`)"
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states):
        said = (proc.stdout + proc.stderr).strip().splitlines()
        return f"the SLURM cluster is not up (sinfo: {said[-1] if said else 'no nodes'}); start it with `.ci/slurm.sh up`"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("SCAR_REQUIRE_SLURM") == "1":
        pytest.fail(f"SCAR_REQUIRE_SLURM=1 but {problem}")
    pytest.skip(problem)


def _slurm_ids(log: Path) -> set[str]:
    return set(SLURM_ID.findall(log.read_text()))


def _submitted(output: str) -> set[str]:
    """SLURM job ids the executor reported submitting."""
    return set(re.findall(r"submitted with SLURM jobid (\d+)", output, re.I)) | set(
        re.findall(r"SLURM (?:run )?ID:? (\d+)", output)
    )


def test_tiny_config_runs_as_slurm_jobs_and_matches_a_local_run(cluster, tmp_path, tiny_config):
    config = REPO / "tests" / "configs" / "tiny.yaml"
    on_slurm = tmp_path / "slurm"
    on_slurm.mkdir()
    t0 = time.perf_counter()
    proc = run_snakemake(on_slurm, "--configfile", str(config), *CLUSTER_ARGS, timeout=900)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    print(f"tiny config on SLURM: {wall:.1f}s")

    # Every submitted job ran inside its own SLURM job; the local rules did not.
    logs = on_slurm / "results" / "logs"
    trials = scar_config.trial_table(tiny_config)
    baselines = trials.drop_duplicates(["model", "dataset", "baseline_seed"])
    cluster_logs = [
        *(logs / "prepare_dataset" / f"{d}.log" for d in tiny_config["datasets"]),
        *(logs / "train_baseline" / r.model / r.dataset / f"seed{r.baseline_seed}.log" for r in baselines.itertuples()),
        *(
            logs / "run_trials" / r.model / r.dataset / f"seed{r.baseline_seed}" / f"batch{r.batch}.log"
            for r in trials.drop_duplicates(["model", "dataset", "baseline_seed", "batch"]).itertuples()
        ),
    ]
    ids = [_slurm_ids(p) for p in cluster_logs]
    assert all(len(i) == 1 for i in ids), dict(zip(map(str, cluster_logs), ids))
    job_ids = set().union(*ids)
    assert len(job_ids) == len(cluster_logs), "two jobs shared a SLURM job"
    submitted = _submitted(out)
    assert job_ids <= submitted, (job_ids, submitted)
    for local in ("aggregate", "figures"):
        text = (logs / f"{local}.log").read_text()
        assert "not a SLURM job" in text and not SLURM_ID.search(text)

    # The same numbers as a local run of the same config.
    local = tmp_path / "local"
    local.mkdir()
    proc = run_snakemake(local, "--cores", "2", "--configfile", str(config))
    assert proc.returncode == 0, proc.stderr[-4000:]
    for table in ("trials", "summary", "headline"):
        pd.testing.assert_frame_equal(
            pd.read_csv(on_slurm / "results" / "tables" / f"{table}.csv"),
            pd.read_csv(local / "results" / "tables" / f"{table}.csv"),
        )


def test_a_failing_cluster_job_fails_the_run_shows_its_log_and_keeps_finished_trials(cluster, tmp_path, tiny_config):
    # A second experiment that can only fail when it runs: a quadratic whose gradient step is so
    # long that it diverges (|1 - eta * lambda| = 2), which no check can tell before training.
    cfg = copy.deepcopy(tiny_config)
    cfg["datasets"] = {"mnist": cfg["datasets"]["mnist"]}
    cfg["models"] = {
        "mlr": cfg["models"]["mlr"],
        "quadratic": {"params": {"n_blocks": 16, "width": 2, "step_size": 3.0}, "datasets": ["mnist"], "max_iters": 30},
    }
    cfg["failures"]["batch_size"] = 2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "--configfile", str(tmp_path / "c.yaml"), *CLUSTER_ARGS, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-6000:]
    # The failed job's log is shown, with the reason.
    assert "Error in rule train_baseline" in out
    assert "the baseline did not make progress" in out
    # The failed job ran on the cluster; the other experiment's trial batches all finished (the
    # profile's keep-going), nothing was aggregated.
    failed_logs = sorted((tmp_path / "results" / "logs" / "train_baseline" / "quadratic").rglob("*.log"))
    assert failed_logs and all(_slurm_ids(p) for p in failed_logs)
    trials = tmp_path / "results" / "trials"
    want = scar_config.trial_table(cfg).query("model == 'mlr'").drop_duplicates(["baseline_seed", "batch"])
    got = sorted(str(p.relative_to(trials / "mlr" / "mnist")) for p in (trials / "mlr" / "mnist").rglob("*.csv"))
    assert got == sorted(f"seed{r.baseline_seed}/batch{r.batch}.csv" for r in want.itertuples())
    assert not (trials / "quadratic").exists() or not any((trials / "quadratic").rglob("*.csv"))
    assert not (tmp_path / "results" / "tables" / "trials.csv").exists()
