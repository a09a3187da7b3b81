"""Rating datasets for matrix factorization: MovieLens and Jester.

A rating dataset holds one entry per observed rating: ``user`` and ``item`` (int64 ids
renumbered from 0 in order of first appearance of the sorted original ids), ``rating``
(float64), and ``shape`` = (n_users, n_items).
"""

from __future__ import annotations

import zipfile
from typing import Literal

import numpy as np
import pandas as pd

from scar._checks import check_int, check_number
from scar.datasets.base import Dataset, DatasetUnavailableError, download, installed_file

_GROUPLENS = "https://files.grouplens.org/datasets/movielens/{variant}.zip"
_JESTER_1 = "https://eigentaste.berkeley.edu/dataset/jester_dataset_1_1.zip"


def _ratings(name: str, users, items, ratings, source: str, description: str) -> Dataset:
    """Renumber ids from 0 and pack the arrays."""
    user_ids, user = np.unique(np.asarray(users), return_inverse=True)
    item_ids, item = np.unique(np.asarray(items), return_inverse=True)
    arrays = {
        "user": user.astype(np.int64),
        "item": item.astype(np.int64),
        "rating": np.asarray(ratings, dtype=np.float64),
        "shape": np.array([len(user_ids), len(item_ids)], dtype=np.int64),
    }
    return Dataset(name, arrays, source, description)


def load_movielens(
    source: Literal["embedded", "online"],
    seed: int,
    *,
    variant: str = "ml-100k",
    data_home: str | None = None,
) -> Dataset:
    """MovieLens explicit ratings (1 to 5 stars).

    Embedded: the exact ML-100k (100,000 ratings, 943 users, 1,682 movies) shipped in the
    ``recbole`` 1.2.1 wheel (installed by ``make`` with ``--no-deps``; only its file is read).
    Online: GroupLens ``variant`` ("ml-100k" or "ml-1m"), downloaded once into ``data_home``.
    ``seed`` is unused (the data is fixed).
    """
    if variant not in ("ml-100k", "ml-1m"):
        raise ValueError(f"variant must be 'ml-100k' or 'ml-1m', got {variant!r}")
    if source == "online":
        archive = download("movielens", _GROUPLENS.format(variant=variant), data_home)
        member, sep = ("ml-100k/u.data", "\t") if variant == "ml-100k" else ("ml-1m/ratings.dat", "::")
        try:
            with zipfile.ZipFile(archive) as zf, zf.open(member) as fh:
                table = pd.read_csv(fh, sep=sep, header=None, engine="python", usecols=[0, 1, 2])
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            raise DatasetUnavailableError(f"{archive} is not a readable MovieLens {variant} archive: {exc}") from exc
        return _ratings(
            "movielens", table[0], table[1], table[2], "online",
            f"MovieLens {variant} from GroupLens, {len(table):,} ratings",
        )  # fmt: skip

    if variant != "ml-100k":
        raise ValueError(f"only ml-100k is embedded; variant {variant!r} needs source 'online'")
    path = installed_file(
        "MovieLens", "recbole", "dataset_example/ml-100k/ml-100k.inter",
        "install it with: pip install --no-deps recbole==1.2.1 (make does), or use source='online'",
    )  # fmt: skip
    table = pd.read_csv(path, sep="\t")
    table.columns = [c.split(":")[0] for c in table.columns]
    if len(table) != 100_000:
        raise DatasetUnavailableError(f"{path} has {len(table)} ratings, expected ML-100k's 100,000")
    return _ratings(
        "movielens", table["user_id"], table["item_id"], table["rating"], "embedded",
        "MovieLens 100k (100,000 ratings, 943 users, 1,682 movies) embedded in the recbole 1.2.1 wheel",
    )  # fmt: skip


def load_jester(
    source: Literal["embedded", "online"],
    seed: int,
    *,
    n_users: int = 24_983,
    rank: int = 5,
    noise: float = 2.0,
    data_home: str | None = None,
) -> Dataset:
    """Jester joke ratings (continuous, in [-10, 10]), 100 jokes.

    Online: Jester dataset 1 (24,983 users; "99" marks a missing rating), downloaded once
    into ``data_home``; reading its ``.xls`` needs ``xlrd``. Embedded: no offline copy
    exists, so this is a *synthetic stand-in* (``source="synthetic"``) of Jester 1's shape:
    ``n_users`` x 100 jokes, each user rating between 36 and 100 jokes (Jester 1 users rated
    at least 36; 56% of the matrix is observed), values from a seeded rank-``rank`` matrix
    plus Gaussian noise of standard deviation ``noise``, clipped to [-10, 10].
    """
    if source == "online":
        archive = download("jester", _JESTER_1, data_home)
        try:
            with zipfile.ZipFile(archive) as zf:
                frames = [pd.read_excel(zf.open(n), header=None) for n in sorted(zf.namelist()) if n.endswith(".xls")]
        except ImportError as exc:
            raise DatasetUnavailableError(f"reading Jester's .xls files needs xlrd ({exc}); pip install xlrd") from exc
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise DatasetUnavailableError(f"{archive} is not a readable Jester dataset 1 archive: {exc}") from exc
        dense = pd.concat(frames).to_numpy()[:, 1:]  # column 0: how many jokes the user rated
        users, items = np.nonzero(dense != 99)
        return _ratings(
            "jester", users, items, dense[users, items], "online",
            f"Jester dataset 1 (eigentaste.berkeley.edu), {len(users):,} ratings",
        )  # fmt: skip

    check_int("n_users", n_users)
    check_int("rank", rank)
    check_number("noise", noise)
    n_items = 100
    rng = np.random.default_rng(seed)
    # Scaled so that the noiseless ratings spread over most of [-10, 10] (std about 4.5).
    user_f = rng.normal(size=(n_users, rank))
    item_f = rng.normal(size=(n_items, rank)) * (4.5 / np.sqrt(rank))
    item_bias = rng.normal(scale=1.5, size=n_items)
    n_rated = rng.integers(36, n_items + 1, size=n_users)
    # Each user's rated jokes: the n_rated smallest of random keys, i.e. a uniform subset.
    keys = rng.random((n_users, n_items))
    observed = keys <= np.take_along_axis(np.sort(keys, axis=1), (n_rated - 1)[:, None], axis=1)
    users, items = np.nonzero(observed)
    values = np.einsum("ij,ij->i", user_f[users], item_f[items]) + item_bias[items]
    values = np.clip(values + noise * rng.standard_normal(len(values)), -10.0, 10.0)
    return _ratings(
        "jester", users, items, values, "synthetic",
        f"synthetic stand-in for Jester dataset 1 (NOT the real data): {n_users:,} users x 100 jokes, "
        f"{len(values):,} ratings in [-10, 10], rank {rank} plus noise {noise:g} (seed {seed})",
    )  # fmt: skip
