"""Datasets for the experiments, loadable without internet.

Every dataset has an online loader (its canonical source) and an embedded default that is
installed with the project from the package index (docs/design.md §7). Where no offline copy
exists (Cover Type, Jester) the embedded default is a seeded synthetic stand-in with the real
data's shape, and the result says so: ``source == "synthetic"`` and a ``label`` that marks it.

Adding a dataset is one loader function and one entry in ``_LOADERS``. A loader takes
``source`` (``"embedded"`` or ``"online"``), ``seed`` and its own keyword options, and returns
a full :class:`Dataset`; :func:`load_dataset` does the fallback and the subsampling.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from scar._checks import check_int
from scar.datasets.base import _SOURCES, Dataset, DatasetUnavailableError, Source
from scar.datasets.classification import load_covtype, load_mnist
from scar.datasets.corpora import load_20newsgroups, load_reuters
from scar.datasets.ratings import load_jester, load_movielens

__all__ = [
    "Dataset",
    "DatasetUnavailableError",
    "Source",
    "available_datasets",
    "check_dataset_options",
    "declared_dims",
    "dataset_options",
    "load_dataset",
]

logger = logging.getLogger(__name__)

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "20newsgroups": load_20newsgroups,
    "covtype": load_covtype,
    "jester": load_jester,
    "mnist": load_mnist,
    "movielens": load_movielens,
    "reuters": load_reuters,
}


# The sizes each dataset will have, where they are known without loading it (see declared_dims):
# facts of the shipped files and of the canonical sources, checked against the loaded data by
# tests/test_datasets.py. None where they depend on preprocessing of downloaded text.
def _classification_dims(n_features: int, n_classes: int) -> Callable[..., dict[str, int]]:
    return lambda source, **options: {"n_features": n_features, "n_classes": n_classes}


def _movielens_dims(source: str, *, variant: str = "ml-100k", **options: Any) -> dict[str, int]:
    return {"n_users": 943, "n_items": 1682} if variant == "ml-100k" else {"n_users": 6040, "n_items": 3952}


def _jester_dims(source: str, *, n_users: int = 24_983, **options: Any) -> dict[str, int]:
    return {"n_users": int(n_users) if source == "embedded" else 24_983, "n_items": 100}


def _corpus_dims(n_docs: int, n_words: int) -> Callable[..., dict[str, int] | None]:
    return lambda source, **options: {"n_docs": n_docs, "n_words": n_words} if source == "embedded" else None


_DIMS: dict[str, Callable[..., dict[str, int] | None]] = {
    "20newsgroups": _corpus_dims(199, 3231),
    "covtype": _classification_dims(54, 7),
    "jester": _jester_dims,
    "mnist": _classification_dims(784, 10),
    "movielens": _movielens_dims,
    "reuters": _corpus_dims(395, 4258),
}


def declared_dims(name: str, source: Source = "embedded", options: Mapping[str, Any] | None = None) -> dict[str, int] | None:
    """The :attr:`Dataset.dims` that ``load_dataset(name, source, **options)`` will give, known
    without loading it, or None where only loading tells (a downloaded corpus; ``auto``, whose
    source is decided by the network). Subsampling (``max_samples``) keeps them: it keeps every
    class and every feature."""
    if name not in _DIMS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_DIMS))}")
    if source == "auto":
        online, embedded = _DIMS[name]("online", **(options or {})), _DIMS[name]("embedded", **(options or {}))
        return online if online == embedded else None
    return _DIMS[name](source, **(options or {}))


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
    check_int("seed", seed, minimum=0)
    if max_samples is not None:
        check_int("max_samples", max_samples)

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
    if y is None or "X" not in dataset.arrays:
        raise ValueError(
            f"max_samples applies to classification datasets; {dataset.name!r} sizes itself through "
            f"its options {dataset_options(dataset.name)}"
        )
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
