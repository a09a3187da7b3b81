"""The rating and corpus datasets: embedded copies are the real files (or labelled stand-ins),
in the documented array formats; bad options are errors naming them."""

from __future__ import annotations

import numpy as np
import pytest

from scar.datasets import Dataset, DatasetUnavailableError, load_dataset
from scar.datasets.base import installed_file
from scar.datasets.corpora import _read_mini_newsgroup


def _check_ratings(d: Dataset) -> None:
    a = d.arrays
    n_users, n_items = a["shape"]
    assert a["user"].dtype == a["item"].dtype == np.int64
    assert a["user"].min() == 0 and a["user"].max() == n_users - 1
    assert a["item"].min() == 0 and a["item"].max() == n_items - 1
    assert len(a["user"]) == len(a["item"]) == len(a["rating"])
    # One rating per (user, item).
    assert len(np.unique(a["user"] * n_items + a["item"])) == len(a["rating"])


def _check_corpus(d: Dataset) -> None:
    a = d.arrays
    ptr = a["doc_ptr"]
    assert ptr[0] == 0 and ptr[-1] == len(a["word"]) == len(a["count"])
    assert np.all(np.diff(ptr) > 0), "no empty documents"
    assert (a["count"] > 0).all()
    assert a["word"].min() >= 0 and a["word"].max() < len(a["vocabulary"])
    used = np.zeros(len(a["vocabulary"]), dtype=bool)
    used[a["word"]] = True
    assert used.all(), "every vocabulary word occurs"


def test_embedded_movielens_is_the_exact_ml_100k():
    d = load_dataset("movielens")
    _check_ratings(d)
    assert d.source == "embedded" and not d.synthetic
    assert tuple(d.arrays["shape"]) == (943, 1682)
    assert len(d.arrays["rating"]) == 100_000
    assert set(np.unique(d.arrays["rating"])) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # ML-100k's published mean rating.
    assert d.arrays["rating"].mean() == pytest.approx(3.52986, abs=1e-5)


def test_jester_stand_in_is_labelled_seeded_and_has_jesters_shape():
    a = load_dataset("jester", n_users=500, seed=3)
    b = load_dataset("jester", n_users=500, seed=3)
    _check_ratings(a)
    assert a.synthetic and "synthetic" in a.label and "NOT the real data" in a.description
    assert tuple(a.arrays["shape"]) == (500, 100)
    assert np.array_equal(a.arrays["rating"], b.arrays["rating"])
    assert np.abs(a.arrays["rating"]).max() <= 10.0
    per_user = np.bincount(a.arrays["user"])
    assert per_user.min() >= 36 and per_user.max() <= 100
    assert not np.array_equal(load_dataset("jester", n_users=500, seed=4).arrays["rating"][:100], a.arrays["rating"][:100])


@pytest.mark.parametrize("option, value", [("n_users", 0), ("rank", 1.5), ("noise", -1.0)])
def test_jester_bad_option_is_named(option, value):
    with pytest.raises(ValueError, match=option):
        load_dataset("jester", **{option: value})


def test_movielens_unknown_variant_is_named():
    with pytest.raises(ValueError, match="variant"):
        load_dataset("movielens", variant="ml-25m")


def test_embedded_reuters_is_the_lda_packages_excerpt():
    d = load_dataset("reuters")
    _check_corpus(d)
    assert d.source == "embedded"
    assert len(d.arrays["doc_ptr"]) - 1 == 395
    assert len(d.arrays["vocabulary"]) == 4258
    assert d.arrays["count"].sum() == 84010


def test_embedded_20newsgroups_is_gensims_mini_newsgroup():
    d = load_dataset("20newsgroups")
    _check_corpus(d)
    assert d.source == "embedded"
    assert 190 <= len(d.arrays["doc_ptr"]) - 1 <= 200  # posts with no kept word are dropped
    vocabulary = set(d.arrays["vocabulary"])
    assert {"space", "god"} <= vocabulary
    assert not {"the", "and"} & vocabulary, "stop words removed"


def test_mini_newsgroup_reader_refuses_code(tmp_path):
    import pickle
    import zlib

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "mini_newsgroup"
    bad.write_bytes(zlib.compress(pickle.dumps(Evil(), protocol=0)))
    with pytest.raises(DatasetUnavailableError, match="refusing"):
        _read_mini_newsgroup(bad)


def test_missing_installed_file_says_how_to_install():
    with pytest.raises(DatasetUnavailableError, match="pip install"):
        installed_file("X", "no-such-distribution-xyz", "a/file", "pip install it")


def test_max_samples_is_refused_for_non_classification_data():
    with pytest.raises(ValueError, match="max_samples applies to classification"):
        load_dataset("movielens", max_samples=10)


def test_corpus_round_trips_through_save(tmp_path):
    d = load_dataset("20newsgroups")
    d.save(tmp_path / "c.npz")
    e = Dataset.load(tmp_path / "c.npz")
    for key in d.arrays:
        assert np.array_equal(d.arrays[key], e.arrays[key])


def test_count_matrix_gives_back_the_document_term_counts():
    import lda.datasets

    from scar.datasets.corpora import count_matrix

    X = count_matrix(load_dataset("reuters"))
    assert np.array_equal(X.toarray(), lda.datasets.load_reuters())
