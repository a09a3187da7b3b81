"""A synthetic stand-in of Criteo's shape, for the runtime's scale curve (labelled synthetic).

Criteo's display-advertising data has 13 integer features and 26 categorical ones per example,
the categories hashed into a large feature space (the hashing trick), and a binary click label.
:func:`criteo_standin` draws examples of that shape: 13 log-scaled counts, and 26 categorical
fields with Zipf-distributed category ids, each (field, category) hashed into ``n_buckets``;
the label is drawn from a logistic model with planted sparse weights. Not the real data.
"""

from __future__ import annotations

import numpy as np

from scar.datasets.base import Dataset

N_NUMERIC, N_CATEGORICAL = 13, 26
_HASH = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing's multiplier


def criteo_standin(n_samples: int, n_buckets: int, seed: int = 0, *, n_categories: int = 10**6) -> Dataset:
    """``n_samples`` examples over ``N_NUMERIC + n_buckets`` features, in CSR arrays:
    ``row_ptr``, ``feature``, ``value`` (float64), the labels ``y`` (0/1) and ``n_features``."""
    if n_samples < 1 or n_buckets < 1:
        raise ValueError(f"need n_samples >= 1 and n_buckets >= 1, got {n_samples} and {n_buckets}")
    rng = np.random.default_rng(seed)
    numeric = np.log1p(rng.poisson(3.0, size=(n_samples, N_NUMERIC)).astype(np.float64))
    cats = np.minimum(rng.zipf(1.3, size=(n_samples, N_CATEGORICAL)), n_categories).astype(np.uint64)
    fields = np.arange(N_CATEGORICAL, dtype=np.uint64)
    with np.errstate(over="ignore"):  # the hash wraps around on purpose
        hashed = ((cats * np.uint64(N_CATEGORICAL) + fields) * _HASH) >> np.uint64(20)
    bucket = (hashed % np.uint64(n_buckets)).astype(np.int64) + N_NUMERIC
    feature = np.concatenate([np.broadcast_to(np.arange(N_NUMERIC), (n_samples, N_NUMERIC)), bucket], axis=1)
    value = np.concatenate([numeric, np.ones((n_samples, N_CATEGORICAL))], axis=1)
    n_features = N_NUMERIC + n_buckets
    planted = np.zeros(n_features)
    hot = rng.choice(n_features, size=min(n_features, 1000), replace=False)
    planted[hot] = rng.normal(0.0, 1.0, size=hot.size)
    z = (planted[feature] * value).sum(axis=1) - 1.0
    y = (rng.random(n_samples) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    width = N_NUMERIC + N_CATEGORICAL
    return Dataset(
        name="criteo",
        arrays={
            "row_ptr": np.arange(0, n_samples * width + 1, width, dtype=np.int64),
            "feature": feature.reshape(-1).astype(np.int64),
            "value": value.reshape(-1),
            "y": y,
            "n_features": np.array([n_features]),
        },
        source="synthetic",
        description=f"synthetic stand-in of Criteo's shape: {n_samples} examples, 13 numeric + 26 hashed categorical "
        f"fields into {n_buckets} buckets, planted logistic labels",
    )
