"""Text corpora for LDA: Reuters and 20 Newsgroups, as document-term counts.

A corpus dataset holds a document-term count matrix in CSR form: ``doc_ptr`` (n_docs + 1
offsets), ``word`` and ``count`` (int64, one entry per distinct word of a document), and
``vocabulary`` (the words, str). Raw text is tokenised with scikit-learn's CountVectorizer:
lower case, words of 2+ letters, English stop words removed, words in more than half of the
documents or in fewer than ``min_df`` dropped, and documents left empty removed.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import re
import tarfile
import zlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from scar._checks import check_int
from scar.datasets.base import Dataset, DatasetUnavailableError, _fetch, _sklearn_datasets, download, installed_file

_REUTERS_21578 = "https://kdd.ics.uci.edu/databases/reuters21578/reuters21578.tar.gz"


def _corpus(name: str, counts, vocabulary: Sequence[str], source: str, description: str) -> Dataset:
    """Pack a (documents x words) count matrix, dropping empty documents and unused words."""
    import scipy.sparse

    counts = scipy.sparse.csr_matrix(counts, dtype=np.int64)
    counts = counts[np.asarray(counts.sum(axis=1)).ravel() > 0]
    used = np.flatnonzero(np.asarray(counts.sum(axis=0)).ravel() > 0)
    counts = counts[:, used].tocsr()
    counts.sort_indices()
    arrays = {
        "doc_ptr": counts.indptr.astype(np.int64),
        "word": counts.indices.astype(np.int64),
        "count": counts.data.astype(np.int64),
        "vocabulary": np.asarray(vocabulary, dtype=str)[used],
    }
    n_docs, n_tokens = counts.shape[0], int(counts.data.sum())
    return Dataset(name, arrays, source, f"{description}: {n_docs:,} documents, {len(used):,} words, {n_tokens:,} tokens")


def count_matrix(dataset: Dataset):
    """A corpus dataset's (documents x words) counts as a scipy CSR matrix."""
    import scipy.sparse

    a = dataset.arrays
    shape = (len(a["doc_ptr"]) - 1, len(a["vocabulary"]))
    return scipy.sparse.csr_matrix((a["count"], a["word"], a["doc_ptr"]), shape=shape)


def _vectorise(texts: Sequence[str], min_df: int, max_features: int | None):
    from sklearn.feature_extraction.text import CountVectorizer

    check_int("min_df", min_df)
    if max_features is not None:
        check_int("max_features", max_features)
    vectoriser = CountVectorizer(
        stop_words="english",
        token_pattern=r"(?u)\b[a-zA-Z]{2,}\b",
        min_df=min_df,
        max_df=0.5,
        max_features=max_features,
    )
    counts = vectoriser.fit_transform(texts)
    return counts, vectoriser.get_feature_names_out()


def load_reuters(
    source: Literal["embedded", "online"],
    seed: int,
    *,
    min_df: int = 5,
    max_features: int | None = 5000,
    data_home: str | None = None,
) -> Dataset:
    """Reuters newswire.

    Embedded: the 395-document RCV1 excerpt shipped, as counts, with the ``lda`` package
    (``lda.datasets.load_reuters()``; 4,258 words, its own preprocessing; ``min_df`` and
    ``max_features`` do not apply). Online: the 21,578 stories of Reuters-21578 (UCI KDD
    archive), bodies tokenised here with ``min_df`` and ``max_features``. ``seed`` is unused.
    """
    if source == "online":
        archive = download("reuters", _REUTERS_21578, data_home)
        try:
            texts = []
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    if member.name.endswith(".sgm"):
                        raw = tar.extractfile(member).read().decode("latin-1")  # type: ignore[union-attr]
                        texts += [re.sub(r"&#\d+;|&lt;|&gt;|&amp;", " ", b) for b in re.findall(r"<BODY>(.*?)</BODY>", raw, re.S)]
        except (tarfile.TarError, OSError) as exc:
            raise DatasetUnavailableError(f"{archive} is not a readable Reuters-21578 archive: {exc}") from exc
        counts, vocabulary = _vectorise(texts, min_df, max_features)
        return _corpus("reuters", counts, vocabulary, "online", "Reuters-21578 (UCI KDD archive) story bodies")

    try:
        import lda.datasets
    except ModuleNotFoundError as exc:
        raise DatasetUnavailableError(f"embedded Reuters needs the 'lda' package ({exc}); pip install lda") from exc
    X = lda.datasets.load_reuters()
    vocabulary = lda.datasets.load_reuters_vocab()
    return _corpus("reuters", X, vocabulary, "embedded", "Reuters RCV1 excerpt embedded in the lda package")


class _Bunch(dict):
    """Stands in for scikit-learn's old ``Bunch`` when reading gensim's pickled test corpus."""


def _read_mini_newsgroup(path) -> tuple[list[str], np.ndarray]:
    """gensim's ``mini_newsgroup``: a zlib-compressed protocol-0 pickle of a scikit-learn Bunch.

    Read with an unpickler that builds only dicts and numpy arrays: a data file must not be
    able to run code.
    """
    allowed = {
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,
        ("sklearn.datasets.base", "Bunch"): _Bunch,
        ("__builtin__", "dict"): dict,
        ("__builtin__", "object"): object,
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) not in allowed:
                raise pickle.UnpicklingError(f"{path}: refusing to load {module}.{name}")
            return allowed[(module, name)]

    try:
        bunch = Unpickler(io.BytesIO(zlib.decompress(path.read_bytes())), encoding="latin1").load()
        return list(bunch["data"]), np.asarray(bunch["target"])
    except (zlib.error, pickle.UnpicklingError, KeyError, EOFError) as exc:
        raise DatasetUnavailableError(f"{path} is not gensim's mini_newsgroup corpus: {exc}") from exc


def _strip_header(post: str) -> str:
    """The body of a news post: everything after the first blank line."""
    _, sep, body = post.partition("\n\n")
    return body if sep else post


def load_20newsgroups(
    source: Literal["embedded", "online"],
    seed: int,
    *,
    min_df: int = 2,
    max_features: int | None = 5000,
    data_home: str | None = None,
) -> Dataset:
    """20 Newsgroups posts, headers removed.

    Online: the 11,314 training posts of all 20 groups via scikit-learn's
    ``fetch_20newsgroups`` (headers, signatures and quotes removed). Embedded: the 200 posts
    (alt.atheism and sci.space, 100 each) of ``mini_newsgroup`` in gensim's test data
    (installed by ``make`` with ``--no-deps``; only the file is read), headers removed.
    ``seed`` is unused.
    """
    if source == "online":
        bunch = _fetch(
            "20newsgroups", _sklearn_datasets().fetch_20newsgroups, subset="train",
            remove=("headers", "footers", "quotes"), data_home=data_home,
        )  # fmt: skip
        counts, vocabulary = _vectorise(bunch.data, min_df, max_features)
        return _corpus("20newsgroups", counts, vocabulary, "online", "20 Newsgroups training posts (scikit-learn)")

    path = installed_file(
        "20 Newsgroups", "gensim", "test/test_data/mini_newsgroup",
        "install it with: pip install --no-deps gensim==4.4.0 (make does), or use source='online'",
    )  # fmt: skip
    posts, _ = _read_mini_newsgroup(path)
    counts, vocabulary = _vectorise([_strip_header(p) for p in posts], min_df, max_features)
    return _corpus("20newsgroups", counts, vocabulary, "embedded", "20 Newsgroups, 200 posts from gensim's test data")
