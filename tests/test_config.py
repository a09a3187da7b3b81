"""Malformed configurations are rejected with a message naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import REPO, run_snakemake
from scar import config as scar_config

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
        ("models.mlr.datasets", ["mnist", "imagenet"], "imagenet"),  # dataset not declared
        ("models.mlr.params", {"learning_rate": 0.1, "momentum": 0.9}, "momentum"),  # unknown hyperparameter
        ("checkpoints.r_values", [0.3], "r * C"),  # r * C not a whole number
        ("failures.window", [0.9, 0.1], "failures.window"),
        ("failures.fractions", [0.01], "failures.fractions"),  # less than one node
    ],
)
def test_semantic_check_names_the_key(default_config, path, value, named):
    cfg = _set(default_config, path, value)
    validate(cfg, SCHEMA)  # the schema cannot see these
    with pytest.raises(scar_config.ConfigError) as err:
        scar_config.check(cfg)
    assert named in str(err.value)


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
    assert len(a) == f["n_trials"] * len(f["fractions"])
    assert a["position"].between(*f["window"]).all()
    assert not a.duplicated(["model", "dataset", "fraction", "trial"]).any()


def test_workflow_refuses_a_bad_config_at_parse_time(tmp_path, default_config):
    bad = _set(default_config, "checkpoints.intervall", 8)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = run_snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "bad.yaml"), timeout=120)
    assert proc.returncode != 0
    assert "intervall" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
