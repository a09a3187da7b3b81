"""Malformed configurations are rejected with a message naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import REPO, run_snakemake
from scar.stages import config as scar_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def _validate(cfg: dict) -> None:
    validate(cfg, SCHEMA)
    scar_config.check(cfg)


def test_shipped_configs_are_valid():
    for name in ("config.yaml", "paper.yaml"):
        _validate(yaml.safe_load((REPO / "config" / name).read_text()))


def _set(cfg: dict, path: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("checkpoints.intervall", 8, "intervall"),  # misspelt key
        ("failures.n_trials", _DELETE, "n_trials"),  # missing key
        ("failures.placement", "striped", "striped"),  # bad enum
        ("datasets.mnist.source", "internet", "internet"),
        ("strategies", ["traditional", "scar2"], "scar2"),
        ("failures.fractions", [0.25, 1.5], "1.5"),
        ("baseline.tol", 0, "tol"),
        ("rework_cap", -1, "rework_cap"),
    ],
)
def test_schema_rejects_and_names_the_key(default_config, path, value, named):
    with pytest.raises(WorkflowError) as err:
        validate(_set(default_config, path, value), SCHEMA)
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("models.mlr.datasets", ["mnist", "covtype", "imagenet"], "imagenet"),  # dataset not declared
        ("models.mlr.params", {"learning_rate": 0.1, "momentum": 0.9}, "momentum"),  # unknown hyperparameter
        ("checkpoints.r_values", [0.3], "r * C"),  # r * C not a whole number
        ("failures.window", [0.9, 0.1], "failures.window"),
        ("failures.fractions", [0.25, 0.25000001], "failures.fractions"),  # same result path
        ("datasets.mnist.options", {"n_sampels": 5}, "n_sampels"),  # unknown loader option
        ("models.mlr.params", {"learning_rate": "fast"}, "learning_rate"),  # bad type
        ("models.mlr.params", {"batch_size": 0}, "batch_size"),
    ],
)
def test_semantic_check_names_the_key(default_config, path, value, named):
    cfg = _set(default_config, path, value)
    validate(cfg, SCHEMA)  # the schema cannot see these
    with pytest.raises(scar_config.ConfigError) as err:
        scar_config.check(cfg)
    assert named in str(err.value)


def test_unknown_dataset_is_named(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["datasets"]["mnsit"] = cfg["datasets"].pop("mnist")
    cfg["models"]["mlr"]["datasets"] = ["mnsit"]
    with pytest.raises(scar_config.ConfigError, match="mnsit"):
        scar_config.check(cfg)


def test_unknown_model_is_named(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["models"]["transformer"] = cfg["models"].pop("mlr")
    with pytest.raises(scar_config.ConfigError, match="transformer"):
        scar_config.check(cfg)


def test_trial_table_is_deterministic_and_complete(default_config):
    a = scar_config.trial_table(default_config)
    b = scar_config.trial_table(default_config)
    assert a.equals(b)
    f = default_config["failures"]
    # Each experiment has its own number of failure positions (failures.n_trials or its own).
    n_positions = sum(e.n_trials for e in scar_config.experiments(default_config))
    assert len(a) == n_positions * len(f["fractions"])
    assert a["position"].between(*f["window"]).all()
    assert not a.duplicated(["model", "dataset", "fraction", "trial"]).any()


def test_a_model_or_dataset_sets_its_own_trial_count(default_config):
    cfg = _set(default_config, "models.mf.n_trials", 4)
    cfg["models"]["mf"]["overrides"]["jester"]["n_trials"] = 2
    table = scar_config.trial_table(cfg)
    assert table[table.model == "mf"].groupby("dataset")["trial"].nunique().to_dict() == {"jester": 2, "movielens": 4}
    n = default_config["failures"]["n_trials"]  # models that set none take the global count
    assert table[table.model == "mlr"].groupby("dataset")["trial"].nunique().to_dict() == {"covtype": n, "mnist": n}
    # No more baselines than failure positions: one for a stochastic model with one position.
    for positions, seeds in ((1, (0,)), (2, (0, 1))):
        cfg["models"]["cnn"]["n_trials"] = positions
        cnn = next(e for e in scar_config.experiments(cfg) if e.model == "cnn")
        assert cnn.n_trials == positions and cnn.seeds == seeds


def test_workflow_refuses_a_bad_config_at_parse_time(tmp_path, default_config):
    bad = _set(default_config, "checkpoints.intervall", 8)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "bad.yaml"), timeout=120)
    assert proc.returncode != 0
    assert "intervall" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_a_config_file_replaces_the_default_instead_of_merging_into_it(tmp_path, default_config):
    # With config/config.yaml present in the working directory (as in a checkout), a user's
    # file that lacks a key must fail, not silently inherit the default's value.
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(default_config))
    mine = copy.deepcopy(default_config)
    del mine["rework_cap"]
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(mine))
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "mine.yaml"), timeout=120)
    assert proc.returncode != 0
    assert "rework_cap" in proc.stdout + proc.stderr
    # Without --configfile the default is used, and --config still overrides single keys.
    proc = run_snakemake(tmp_path, "-n", "--config", "seed=5", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_layout_the_trials_cannot_run_is_refused_at_parse_time(default_config):
    # Cover Type's 55 weight rows cannot be spread over 100 server nodes: known from its
    # declared sizes, before any data is loaded or any baseline trains.
    cfg = _set(default_config, "failures.n_nodes", 100)
    with pytest.raises(scar_config.ConfigError, match=r"models\.mlr on dataset covtype .*55 blocks cannot be spread over 100"):
        scar_config.check(cfg)


def test_declared_dataset_sizes_are_the_loaded_ones(default_config):
    from scar.datasets import declared_dims, load_dataset

    for name, entry in default_config["datasets"].items():
        options = entry.get("options") or {}
        assert declared_dims(name, "embedded", options) == load_dataset(name, "embedded", **options).dims, name
