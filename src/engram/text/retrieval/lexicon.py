"""A per-cube lexical index built from a snapshot: stemmed term counts as a sparse matrix.

FTS5's bm25() computes IDF over the whole table (every owner's memories), cannot change
k1/b and only scores rows. Scoring in process gives per-cube statistics (one owner's data
never shifts another's ranking) and BM25 over larger units — a turn with its neighbours,
a whole session — as real documents rather than averaged scores.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import snowballstemmer
from scipy import sparse

from engram.store.vector_index import CubeSnapshot, SnapshotRow
from engram.text.query import query_terms

_WORD = re.compile(r"\w+", re.UNICODE)
_LOCAL = threading.local()  # snowball stemmers keep state on the object: one per thread
MAX_QUERY_TERMS = 64


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    stemmer = getattr(_LOCAL, "stemmer", None)
    if stemmer is None:
        stemmer = _LOCAL.stemmer = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


def tokens(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower())]


def query_tokens(text: str) -> list[str]:
    """The query's terms (engram.text.query) stemmed like the index."""
    return list(dict.fromkeys(stem(w) for w in query_terms(text, MAX_QUERY_TERMS)))


@dataclass(frozen=True)
class Documents:
    """Term counts of some unit (rows, windows, sessions) with their lengths."""

    counts: sparse.csc_matrix  # units x terms; column slices are what BM25 reads
    lengths: np.ndarray
    mean_length: float

    @classmethod
    def of(cls, counts: sparse.spmatrix) -> Documents:
        csc = sparse.csc_matrix(counts)
        lengths = np.asarray(csc.sum(axis=1)).ravel()
        return cls(csc, lengths, float(lengths.mean()) if len(lengths) else 0.0)


@dataclass(frozen=True)
class Lexicon:
    """Stemmed term counts of a cube's rows; vocabulary and statistics are per cube."""

    vocab: dict[str, int]
    rows: Documents

    @classmethod
    def of(cls, snapshot: CubeSnapshot) -> Lexicon:
        return snapshot.derive("lexicon", lambda: cls.build(snapshot.texts))

    @classmethod
    def build(cls, texts: list[str]) -> Lexicon:
        vocab: dict[str, int] = {}
        return cls(vocab, Documents.of(_count(texts, vocab)))

    def extended(self, rows: list[SnapshotRow]) -> Lexicon:
        """This lexicon plus new rows (kept across inserts instead of re-tokenising all)."""
        vocab = dict(self.vocab)
        new = _count([r.text for r in rows], vocab)
        old = self.rows.counts.tocsr()  # CSR: widening to the grown vocabulary is a reshape
        old = sparse.csr_matrix(
            (old.data, old.indices, old.indptr), shape=(old.shape[0], new.shape[1])
        )
        return Lexicon(vocab, Documents.of(sparse.vstack([old, new])))

    def selected(self, keep: np.ndarray) -> Lexicon:
        """This lexicon restricted to the rows that stay."""
        return Lexicon(self.vocab, Documents.of(self.rows.counts.tocsr()[keep]))

    def bm25(
        self, terms: list[str], docs: Documents, k1: float = 1.2, b: float = 0.75
    ) -> np.ndarray:
        """BM25 of each unit of `docs`; cost grows with the postings of the query terms only."""
        ids = [self.vocab[t] for t in terms if t in self.vocab]
        n = docs.counts.shape[0]
        out = np.zeros(n)
        if not ids or n == 0:
            return out
        norm = k1 * (1 - b + b * docs.lengths / (docs.mean_length or 1.0))
        csc = docs.counts
        for tid in ids:
            start, end = csc.indptr[tid], csc.indptr[tid + 1]
            if start == end:
                continue
            units, tf = csc.indices[start:end], csc.data[start:end]
            idf = np.log1p((n - (end - start) + 0.5) / ((end - start) + 0.5))
            out[units] += idf * tf * (k1 + 1) / (tf + norm[units])
        return out


def window_group(snapshot: CubeSnapshot, before: int, after: int) -> sparse.csr_matrix:
    """Rows x rows, 1 where column j is row i itself or one of its `before` earlier /
    `after` later neighbours in the same session (cached on the snapshot)."""

    def build() -> sparse.csr_matrix:
        n = len(snapshot)
        prev, nxt = snapshot.neighbours
        rows, cols = [np.arange(n)], [np.arange(n)]
        for links, steps in ((prev, before), (nxt, after)):
            cursor = np.arange(n)
            for _ in range(steps):
                cursor = np.where(cursor >= 0, links[np.maximum(cursor, 0)], -1)
                ok = cursor >= 0
                rows.append(np.nonzero(ok)[0])
                cols.append(cursor[ok])
        r, c = np.concatenate(rows), np.concatenate(cols)
        return sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))

    return snapshot.derive(f"window-group:{before}:{after}", build)


def _count(texts: list[str], vocab: dict[str, int]) -> sparse.csr_matrix:
    """Term counts of `texts` (rows) over `vocab`, which grows with new terms."""
    indptr: list[int] = [0]
    indices: list[int] = []
    data: list[int] = []
    for text in texts:
        row: dict[int, int] = {}
        for tok in tokens(text):
            tid = vocab.setdefault(tok, len(vocab))
            row[tid] = row.get(tid, 0) + 1
        indices.extend(row)
        data.extend(row.values())
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
        shape=(len(texts), max(len(vocab), 1)),
    )


def window_documents(snapshot: CubeSnapshot, before: int, after: int) -> Documents:
    """Each row's window (itself, `before` earlier and `after` later turns of its session)
    as one document."""
    return snapshot.derive(
        f"window-docs:{before}:{after}",
        lambda: Documents.of(
            window_group(snapshot, before, after) @ Lexicon.of(snapshot).rows.counts
        ),
    )


def session_documents(snapshot: CubeSnapshot) -> Documents:
    """Each session as one document (units = session codes; memories without a session
    are not part of it)."""

    def build() -> Documents:
        codes = snapshot.sessions
        has = codes >= 0
        n_sessions = int(codes.max()) + 1 if has.any() else 0
        member = sparse.csr_matrix(
            (np.ones(int(has.sum())), (codes[has], np.nonzero(has)[0])),
            shape=(n_sessions, len(snapshot)),
        )
        return Documents.of(member @ Lexicon.of(snapshot).rows.counts)

    return snapshot.derive("session-docs", build)
