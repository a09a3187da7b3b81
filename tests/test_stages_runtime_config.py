"""The ``runtime:`` section of the configuration (scar.stages.config.runtime_settings)."""

from __future__ import annotations

import pytest

from scar.stages.config import ConfigError, check, runtime_settings, runtime_strategies


def test_default_runtime_section_reads(default_config) -> None:
    r = runtime_settings(default_config)
    assert r.experiments == ("mlr/mnist", "mf/movielens") and r.address is None
    names = [s.name for s in runtime_strategies(default_config, r)]
    assert names == ["traditional", "scar"]


def test_absent_runtime_section_turns_the_stage_off(tiny_config) -> None:
    tiny_config.pop("runtime", None)
    assert runtime_settings(tiny_config).experiments == ()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("experiments", ["mlr/nowhere"], "runtime.experiments: 'mlr/nowhere' is not a configured experiment"),
        ("n_failures", 0, "runtime.n_failures"),
        ("fraction", 1.5, "runtime.fraction"),
        ("strategies", ["nope"], "unknown strategy 'nope'"),
    ],
)
def test_bad_runtime_values_name_their_key(default_config, key, value, message) -> None:
    default_config["runtime"][key] = value
    with pytest.raises(ConfigError, match=message):
        check(default_config)


def test_runtime_nodes_must_fit_every_experiment(default_config) -> None:
    default_config["runtime"]["n_nodes"] = 10**6
    with pytest.raises(ConfigError, match="mlr on dataset mnist"):
        check(default_config)
