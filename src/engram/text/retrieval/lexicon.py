"""A per-cube lexical index built from a snapshot: stemmed term counts as a sparse matrix.

FTS5's bm25() computes IDF over the whole table (every owner's memories), cannot change
k1/b and only scores rows. Scoring in process gives per-cube statistics (one owner's data
never shifts another's ranking) and BM25 over larger units — a turn with its neighbours,
a whole session — as real documents rather than averaged scores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import snowballstemmer
from scipy import sparse

from engram.store.vector_index import CubeSnapshot
from engram.text.query import STOPWORDS

_WORD = re.compile(r"\w+", re.UNICODE)
_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    return _STEMMER.stemWord(word)


def tokens(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower())]


def query_tokens(text: str) -> list[str]:
    words = [w for w in _WORD.findall(text.lower())]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(stem(w) for w in kept))


@dataclass
class Lexicon:
    """Term counts per row (CSR, rows x terms) plus the grouping matrices for windows and
    sessions; document frequencies are per cube."""

    vocab: dict[str, int]
    counts: sparse.csc_matrix  # column slices (one per query term) are what BM25 reads

    @classmethod
    def of(cls, snapshot: CubeSnapshot) -> Lexicon:
        cached = snapshot.derived.get("lexicon")
        if cached is None:
            cached = snapshot.derived["lexicon"] = cls.build(snapshot.texts)
        return cached

    @classmethod
    def build(cls, texts: list[str]) -> Lexicon:
        vocab: dict[str, int] = {}
        indptr, indices, data = [0], [], []
        for text in texts:
            row: dict[int, int] = {}
            for tok in tokens(text):
                tid = vocab.setdefault(tok, len(vocab))
                row[tid] = row.get(tid, 0) + 1
            indices.extend(row)
            data.extend(row.values())
            indptr.append(len(indices))
        counts = sparse.csr_matrix(
            (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
            shape=(len(texts), max(len(vocab), 1)),
        )
        return cls(vocab, counts.tocsc())

    def bm25(
        self, terms: list[str], docs: sparse.csc_matrix, k1: float = 1.2, b: float = 0.75
    ) -> np.ndarray:
        """BM25 of each row of `docs` (term counts of rows, windows or sessions)."""
        ids = [self.vocab[t] for t in terms if t in self.vocab]
        n = docs.shape[0]
        if not ids or n == 0:
            return np.zeros(n)
        lengths = _row_lengths(docs)
        avg = lengths.mean() or 1.0
        sub = docs[:, ids].toarray()
        df = (sub > 0).sum(axis=0)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        norm = k1 * (1 - b + b * lengths / avg)
        return ((sub * (k1 + 1)) / (sub + norm[:, None]) * idf).sum(axis=1)


def _row_lengths(docs: sparse.csc_matrix) -> np.ndarray:
    return np.asarray(docs.sum(axis=1)).ravel()


def window_matrix(snapshot: CubeSnapshot, before: int, after: int) -> sparse.csr_matrix:
    """Rows x rows: row i sums itself, `before` earlier and `after` later turns of its session."""
    cached_key = f"window:{before}:{after}"
    cached = snapshot.derived.get(cached_key)
    if cached is not None:
        return cached
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
    matrix = sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    snapshot.derived[cached_key] = matrix
    return matrix


def session_matrix(snapshot: CubeSnapshot) -> sparse.csr_matrix:
    """Rows x rows: row i sums every turn of its session (itself alone without a session)."""
    cached = snapshot.derived.get("session")
    if cached is not None:
        return cached
    n = len(snapshot)
    codes = snapshot.sessions
    has = codes >= 0
    member = sparse.csr_matrix(
        (np.ones(int(has.sum())), (codes[has], np.nonzero(has)[0])),
        shape=(int(codes.max()) + 1 if has.any() else 0, n),
    )
    same = (member.T @ member).tocsr()
    lone = sparse.csr_matrix((np.ones(int((~has).sum())), (np.nonzero(~has)[0],) * 2), shape=(n, n))
    matrix = (same + lone).tocsr()
    snapshot.derived["session"] = matrix
    return matrix
