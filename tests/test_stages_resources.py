"""Trial batching: which trials each workflow job runs, and what the jobs ask a scheduler for."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import REPO, run_snakemake
from scar.measure.trials import TrialSettings
from scar.stages import config as scar_config
from scar.stages import resources

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def _with_batch(cfg: dict, size) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["failures"]["batch_size"] = size
    return cfg


@pytest.mark.parametrize("size", [1, 3, 7, 60, 1000])
def test_batches_partition_each_experiments_trials(default_config, size):
    cfg = copy.deepcopy(default_config)
    cfg["datasets"]["covtype"] = {"source": "embedded"}
    cfg["models"]["mlr"]["datasets"] = ["mnist", "covtype"]
    cfg = _with_batch(cfg, size)
    table = scar_config.trial_table(cfg)
    unbatched = scar_config.trial_table(_with_batch(cfg, 1))
    # The same trials whatever the batch size; only the job they run in differs.
    cols = ["model", "dataset", "baseline_seed", "fraction", "trial", "position", "seed"]
    pd.testing.assert_frame_equal(table[cols], unbatched[cols])
    experiments = {(e.model, e.dataset): e for e in scar_config.experiments(cfg)}
    for (model, dataset), rows in table.groupby(["model", "dataset"]):
        exp = experiments[model, dataset]
        assert len(rows) == len(cfg["failures"]["fractions"]) * exp.n_trials
        # Stochastic experiments spread their positions over baseline.seeds baselines (no more
        # than positions), every fraction of a position on the same one; deterministic ones have one.
        n_seeds = min(cfg["baseline"]["seeds"], exp.n_trials) if model in ("mlr", "lda", "cnn", "ncf") else 1
        assert sorted(set(rows["baseline_seed"])) == [cfg["seed"] + j for j in range(n_seeds)]
        assert (rows.groupby("trial")["baseline_seed"].nunique() == 1).all()
        for _, one in rows.groupby("baseline_seed"):
            sizes = one.groupby("batch").size()
            assert list(sizes.index) == list(range(len(sizes)))  # batches 0..n-1
            assert (sizes.iloc[:-1] == size).all() and 1 <= sizes.iloc[-1] <= size


def test_batch_size_defaults_and_is_checked(default_config):
    cfg = copy.deepcopy(default_config)
    del cfg["failures"]["batch_size"]
    assert scar_config.batch_size(cfg) == scar_config.DEFAULT_BATCH_SIZE
    for bad in (0, -2, 1.5, "ten"):
        with pytest.raises(WorkflowError, match="batch_size"):
            validate(_with_batch(default_config, bad), SCHEMA)
        with pytest.raises(scar_config.ConfigError, match="failures.batch_size"):
            scar_config.check(_with_batch(default_config, bad))


def test_trial_runtime_scales_with_batch_and_measured_speed(tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"k_base": 50, "seconds_per_iteration": 0.5}))
    settings = TrialSettings.from_names(
        strategies=("traditional", "scar"), interval=8, r_values=(0.5, 0.25), n_nodes=8, placement="round_robin"
    )
    assert resources.runs_per_trial(settings) == 1 + 2
    one = resources.trials_runtime(summary, 1, settings)
    ten = resources.trials_runtime(summary, 10, settings)
    # 10 trials x 3 runs x cap(50) = 150 iterations x 0.5 s, doubled: 50 min on top of the base.
    assert ten == resources.BASE_MINUTES + 10 * 3 * 150 * 0.5 * resources.SAFETY / 60
    assert resources.BASE_MINUTES < one < ten


def test_memory_scales_with_inputs_and_state(tmp_path):
    assert resources.trials_mem_mb(100, 400) > resources.trials_mem_mb(10, 40) > resources.BASE_MB
    assert resources.baseline_mem_mb(10, 1.0, 200) > resources.baseline_mem_mb(10, 1.0, 20)


def test_dry_run_shows_batched_jobs(tmp_path, tiny_config):
    cfg = _with_batch(tiny_config, 3)  # 4 trials -> batches of 3 and 1
    cfg["baseline"]["seeds"] = 2  # the stochastic experiments: one position per baseline
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "c.yaml"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    # 2 positions x 2 fractions, one position per baseline seed: batches of 2 per seed.
    assert "results/trials/mlr/mnist/seed1/batch0.csv" in out and "results/trials/mlr/mnist/seed2/batch0.csv" in out
    assert "results/trials/mf/jester/seed1/batch1.csv" in out and "results/trials/mf/jester/seed2" not in out
    assert "batch2.csv" not in out
