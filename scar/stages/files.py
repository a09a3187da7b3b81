"""Reading and writing the stages' files: atomic CSV and JSON, and the loading of an
experiment's model, dataset and baseline."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from scar._atomic import atomic_write
from scar.datasets import Dataset
from scar.measure.trajectory import Baseline
from scar.models import Model, make_model

log = logging.getLogger("scar")

PathLike = str | os.PathLike


def write_csv(frame: pd.DataFrame, path: PathLike) -> None:
    with atomic_write(path, "w") as fh:
        frame.to_csv(fh, index=False)


def write_json(obj: Any, path: PathLike) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=float)
        fh.write("\n")


@dataclass(frozen=True)
class LoadedExperiment:
    """A stage's inputs: the model, its dataset (as saved and as the model prepared it) and,
    when asked for, the baseline."""

    model: Model
    dataset: Dataset
    data: Any
    baseline: Baseline | None = None

    def __iter__(self):  # model, dataset, data, baseline = load_experiment(...)
        return iter((self.model, self.dataset, self.data, self.baseline))


def load_experiment(
    model_name: str, params: Mapping[str, Any], dataset_path: PathLike, baseline_path: PathLike | None = None
) -> LoadedExperiment:
    """Build the model, load and prepare the dataset, and load the baseline if a path is given."""
    model = make_model(model_name, dict(params))
    dataset = Dataset.load(dataset_path)
    baseline = None if baseline_path is None else Baseline.load(baseline_path)
    return LoadedExperiment(model, dataset, model.prepare(dataset), baseline)
