"""The dataset container and what every loader shares: fetching online, finding installed files."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from scar._atomic import atomic_write

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
        MNIST file is grouped by label): shuffle before using them in order. Rating datasets
        hold ``"user"``, ``"item"`` (int64 ids from 0) and ``"rating"`` (float64), one entry
        per observed rating, and ``"shape"`` = (n_users, n_items). Text corpora hold a
        document-term count matrix in CSR form: ``"doc_ptr"`` (n_docs + 1), ``"word"`` and
        ``"count"`` (int64), and ``"vocabulary"`` (str).
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
    def dims(self) -> dict[str, int]:
        """The sizes a model's parameters follow: ``n_features`` and ``n_classes`` (classification),
        ``n_users`` and ``n_items`` (ratings), ``n_docs`` and ``n_words`` (corpora)."""
        a = self.arrays
        if "X" in a:
            return {"n_features": int(a["X"].shape[1]), "n_classes": int(a["y"].max()) + 1 if a["y"].size else 0}
        if "shape" in a:
            return {"n_users": int(a["shape"][0]), "n_items": int(a["shape"][1])}
        if "vocabulary" in a:
            return {"n_docs": int(a["doc_ptr"].size - 1), "n_words": int(a["vocabulary"].size)}
        return {}

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


def download(dataset: str, url: str, data_home: str | os.PathLike[str] | None = None) -> Path:
    """The file at ``url``, downloaded once into ``data_home`` (default ``~/scar_data``).

    Written atomically, so an interrupted download never leaves a partial file behind; a
    failure is a :class:`DatasetUnavailableError` naming the dataset.
    """
    home = Path(data_home or os.environ.get("SCAR_DATA", Path.home() / "scar_data")).expanduser()
    path = home / dataset / url.rsplit("/", 1)[-1]
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s to %s", url, path)

    def fetch() -> None:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_write(path) as fh:
            while chunk := response.read(1 << 20):
                fh.write(chunk)

    _fetch(dataset, fetch)
    return path


def installed_file(dataset: str, distribution: str, suffix: str, hint: str) -> Path:
    """A data file shipped inside an installed distribution, found without importing it.

    Some embedded datasets come from packages installed only for their data (``recbole``,
    ``gensim``: ``pip install --no-deps``); importing them would pull in their heavy
    dependencies, so the file is located through the distribution's file list instead.
    """
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if str(f).endswith(suffix):
            path = Path(f.locate())
            if path.is_file():
                return path
    raise DatasetUnavailableError(f"embedded {dataset} not found: {distribution!r} does not provide {suffix!r}; {hint}")
