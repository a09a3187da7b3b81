"""The `perturbations:` and `planner:` config sections: bad values are named."""

from __future__ import annotations

import copy

import pytest
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import REPO
from scar.stages import config as scar_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def _with(cfg: dict, section: str, key: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg[section][key] = value
    return cfg


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("perturbations", "nrom", [0.1], "nrom"),  # misspelt key
        ("perturbations", "kinds", ["gaussian", "bitflip"], "bitflip"),
        ("perturbations", "formats", ["fp8"], "fp8"),
        ("perturbations", "norms", [-0.1], "-0.1"),
        ("planner", "mtbf", 0, "mtbf"),
        ("planner", "validate", ["mlr mnist"], "mlr mnist"),
        ("planner", "strategies", ["traditional", "scar2"], "scar2"),
    ],
)
def test_schema_names_the_bad_key(default_config, section, key, value, named):
    with pytest.raises(WorkflowError) as err:
        validate(_with(default_config, section, key, value), SCHEMA)
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("planner", "validate", ["mlr/imagenet"], "planner.validate"),  # not a configured experiment
        ("planner", "intervals", [3], "planner.intervals"),  # no r with r * C whole, and no full strategy
    ],
)
def test_semantic_check_names_the_key(default_config, section, key, value, named):
    cfg = _with(default_config, section, key, value)
    if key == "intervals":
        cfg["planner"]["strategies"] = ["scar"]
    validate(cfg, SCHEMA)
    with pytest.raises(scar_config.ConfigError, match=named):
        scar_config.check(cfg)


def test_shipped_settings_are_read(default_config):
    study = scar_config.study_settings(default_config)
    assert study.window == tuple(default_config["failures"]["window"])
    assert len(study.levels) > 0
    planner = scar_config.planner_settings(default_config)
    assert planner.validate == tuple(default_config["planner"]["validate"])
    assert all(
        tuple(e.split("/")) in {(x.model, x.dataset) for x in scar_config.experiments(default_config)} for e in planner.validate
    )
