"""Model registry: a model is one module here plus one entry in :data:`MODELS`.

Third-party packages can add models without touching this file through the ``scar.models``
entry-point group (``name = "package.module:ModelClass"``).
"""

from __future__ import annotations

import inspect
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


def _registry() -> dict[str, type[Model]]:
    found = dict(MODELS)
    for ep in entry_points(group="scar.models"):
        found.setdefault(ep.name, ep.load())
    return found


def available_models() -> list[str]:
    return sorted(_registry())


def make_model(name: str, params: dict[str, Any] | None = None) -> Model:
    """Build a registered model; an unknown name or hyperparameter is a ValueError naming it."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(registry)}")
    cls = registry[name]
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
    "available_models",
    "make_model",
]
