"""Every key of the shipped configs is documented in config/README.md."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO


def _keys(node, prefix=""):
    if not isinstance(node, dict):
        return
    for k, v in node.items():
        # Names of datasets, models and per-dataset overrides are the user's: documented as <name>.
        generic = "<name>" if prefix in ("datasets", "models") else ("<dataset>" if prefix.endswith(".overrides") else k)
        path = f"{prefix}.{generic}" if prefix else generic
        yield path
        if path.endswith((".params", ".options", ".<dataset>")):
            continue  # hyperparameters, loader options and per-dataset overrides: documented as a whole
        yield from _keys(v, path)


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_every_config_key_is_documented(name):
    doc = (REPO / "config" / "README.md").read_text()
    config = yaml.safe_load((REPO / "config" / name).read_text())
    # A section (e.g. `failures`) is documented through its keys (`failures.n_trials`, ...).
    missing = [k for k in _keys(config) if f"`{k}`" not in doc and f"`{k}." not in doc]
    assert not missing, f"config/{name} keys missing from config/README.md: {missing}"
