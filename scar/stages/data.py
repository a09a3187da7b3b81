"""Stage: prepare a dataset (rule prepare_dataset)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from scar.datasets import Dataset, load_dataset
from scar.stages.files import PathLike

log = logging.getLogger("scar")


def prepare_dataset(name: str, settings: Mapping[str, Any], seed: int, out: PathLike) -> Dataset:
    """Load dataset ``name`` as configured (source, max_samples, options) and save it."""
    ds = load_dataset(
        name,
        settings.get("source", "embedded"),
        max_samples=settings.get("max_samples"),
        seed=seed,
        **(settings.get("options") or {}),
    )
    ds.save(out)
    log.info("dataset %s: %s (%s), arrays %s", name, ds.description, ds.source, {k: v.shape for k, v in ds.arrays.items()})
    return ds
