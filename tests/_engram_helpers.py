"""Shared test helpers: a tiny real embedder and direct SQLite inspection."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from pathlib import Path

import numpy as np

from engram.embed.base import Embedder
from engram.store.base import NewMemory
from engram.types import MemoryType

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder(Embedder):
    """Bag-of-words feature hashing into `dim` buckets: deterministic across processes
    (blake2b, not Python's salted hash), fast, and good enough to rank exact word overlap."""

    def __init__(self, dim: int = 64, name: str | None = None):
        self.dim = dim
        self.name = name or f"hash-bow-{dim}"
        self.calls = 0

    def _embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                out[row, bucket] += 1.0 if digest[4] & 1 else -1.0
        return out


def db_path(home: Path) -> Path:
    return Path(home) / "engram.db"


def table_counts(path: Path) -> dict[str, int]:
    """Row counts of every table that holds memory data, read with a separate connection."""
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("cubes", "memories", "versions", "memories_fts")
        }
    finally:
        conn.close()


def all_table_bytes(path: Path) -> dict[str, bytes]:
    """Every cell of every table (FTS5 shadow tables included) as bytes, per table."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        dump: dict[str, bytes] = {}
        for table in tables:
            chunks: list[bytes] = []
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    if isinstance(cell, bytes):
                        chunks.append(cell)
                    elif cell is not None:
                        chunks.append(str(cell).encode("utf-8", "surrogatepass"))
            dump[table] = b"\x00".join(chunks)
        return dump
    finally:
        conn.close()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def new_row(text: object, source_id: str | None = None) -> NewMemory:
    """A store-level row (no validation: the store tests feed it odd values on purpose)."""
    return NewMemory(
        text=text,  # type: ignore[arg-type]
        index_text=text if isinstance(text, str) else "x",
        type=MemoryType.NOTE,
        metadata={},
        user_id="u",
        agent_id=None,
        session_id=None,
        source_id=source_id,
        turn_index=0,
        role="user",
        name=None,
        occurred_at=None,
        source="test",
    )


_BOX = re.compile(r"[\u2500-\u257f]")


def plain(output: str) -> str:
    """Terminal output as one line of words: Rich's panel borders gone and every wrap (at
    whatever width the terminal had) undone, so a test never depends on the width."""
    return " ".join(_BOX.sub(" ", output).split())


def fill(disk: Path, leave: int = 64 << 10) -> Path:
    """Fill the disk, then give back `leave` bytes (enough to open a store, not to write)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler
