"""Model registry: a model is one module here plus one entry in :data:`MODELS`.

The torch models (``cnn``, ``ncf``) are listed in :data:`TORCH_MODELS` and imported when first
made, so a job of another model does not pay torch's import.

Third-party packages can add models without touching this file through the ``scar.models``
entry-point group (``name = "package.module:ModelClass"``).
"""

from __future__ import annotations

import inspect
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from scar.models.base import Model, State
from scar.models.lda import LDA
from scar.models.logistic_regression import LogisticRegression
from scar.models.matrix_factorization import MatrixFactorization
from scar.models.quadratic import Quadratic

MODELS: dict[str, type[Model]] = {
    LDA.name: LDA,
    LogisticRegression.name: LogisticRegression,
    MatrixFactorization.name: MatrixFactorization,
    Quadratic.name: Quadratic,
}

#: Models built on torch, by name: "module:Class", imported on first use.
TORCH_MODELS: dict[str, str] = {
    "cnn": "scar.models.cnn:ConvNet",
    "ncf": "scar.models.recommender:EmbeddingRecommender",
}


def _load(target: str) -> type[Model]:
    module, cls = target.split(":")
    return getattr(import_module(module), cls)


def available_models() -> list[str]:
    names = set(MODELS) | set(TORCH_MODELS) | {ep.name for ep in entry_points(group="scar.models")}
    return sorted(names)


def model_class(name: str) -> type[Model]:
    """The class registered as ``name`` (a torch model's module is imported now)."""
    if name in MODELS:
        return MODELS[name]
    if name in TORCH_MODELS:
        return _load(TORCH_MODELS[name])
    for ep in entry_points(group="scar.models"):
        if ep.name == name:
            return ep.load()
    raise ValueError(f"unknown model {name!r}; registered models: {available_models()}")


def make_model(name: str, params: dict[str, Any] | None = None) -> Model:
    """Build a registered model; an unknown name or hyperparameter is a ValueError naming it."""
    cls = model_class(name)
    params = dict(params or {})
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"model {name!r} has no hyperparameter(s) {unknown}; it accepts {sorted(accepted)}")
    model = cls(**params)
    try:
        model.check_params()
    except ValueError as err:
        raise ValueError(f"model {name!r}: {err}") from err
    return model


__all__ = [
    "LDA",
    "MODELS",
    "MatrixFactorization",
    "Model",
    "State",
    "LogisticRegression",
    "Quadratic",
    "TORCH_MODELS",
    "available_models",
    "make_model",
    "model_class",
]
