"""Named, ordered schema migrations for the SQLite store; pending ones run in one
transaction, and a store that has applied a migration this Engram does not know is refused."""

from __future__ import annotations

import sqlite3

from engram.errors import SchemaVersionError, StoreError

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE cubes (
            id INTEGER PRIMARY KEY,
            owner TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            rev INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE memories (
            key INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            cube_id INTEGER NOT NULL REFERENCES cubes(id),
            type TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'active',
            text TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            user_id TEXT, agent_id TEXT, session_id TEXT,
            source_id TEXT, turn_index INTEGER, role TEXT, name TEXT,
            occurred_at TEXT,
            source TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            access_count INTEGER NOT NULL DEFAULT 0,
            last_accessed_at TEXT,
            embedding BLOB NOT NULL
        );
        CREATE INDEX memories_cube ON memories(cube_id, state, key);
        CREATE INDEX memories_session ON memories(cube_id, session_id);
        CREATE UNIQUE INDEX memories_source ON memories(cube_id, source_id)
            WHERE source_id IS NOT NULL;
        CREATE TABLE versions (
            memory_key INTEGER NOT NULL REFERENCES memories(key) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            event TEXT NOT NULL,
            text TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            reason TEXT,
            source TEXT,
            at TEXT NOT NULL,
            PRIMARY KEY (memory_key, version)
        );
        CREATE VIRTUAL TABLE memories_fts USING fts5(
            body, cube, tokenize = 'porter unicode61 remove_diacritics 2'
        );
        """,
    ),
    (
        # Keys and cube ids are never reused (AUTOINCREMENT): a purged memory's key must not
        # come back as another memory (buffered access counts, cursors, cached snapshots),
        # nor an erased cube's id as another owner's cube. SQLite cannot alter a primary
        # key, so both tables are rebuilt (its 12-step procedure; foreign keys off meanwhile
        # and checked before the commit). memories_fts rowids and versions.memory_key keep
        # pointing at the same keys: rows are copied with their keys.
        "0002_keys_never_reused",
        """
        CREATE TABLE cubes_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            owner TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            rev INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO cubes_new (id, owner, created_at, rev)
            SELECT id, owner, created_at, rev FROM cubes;
        DROP TABLE cubes;
        ALTER TABLE cubes_new RENAME TO cubes;
        CREATE TABLE memories_new (
            key INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            cube_id INTEGER NOT NULL REFERENCES cubes(id),
            type TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'active',
            text TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            user_id TEXT, agent_id TEXT, session_id TEXT,
            source_id TEXT, turn_index INTEGER, role TEXT, name TEXT,
            occurred_at TEXT,
            source TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            access_count INTEGER NOT NULL DEFAULT 0,
            last_accessed_at TEXT,
            embedding BLOB NOT NULL
        );
        INSERT INTO memories_new (key, id, cube_id, type, state, text, metadata, user_id,
            agent_id, session_id, source_id, turn_index, role, name, occurred_at, source,
            version, created_at, updated_at, access_count, last_accessed_at, embedding)
            SELECT key, id, cube_id, type, state, text, metadata, user_id, agent_id,
            session_id, source_id, turn_index, role, name, occurred_at, source, version,
            created_at, updated_at, access_count, last_accessed_at, embedding FROM memories;
        DROP TABLE memories;
        ALTER TABLE memories_new RENAME TO memories;
        CREATE INDEX memories_cube ON memories(cube_id, state, key);
        CREATE INDEX memories_session ON memories(cube_id, session_id);
        CREATE UNIQUE INDEX memories_source ON memories(cube_id, source_id)
            WHERE source_id IS NOT NULL
        """,
    ),
    (
        # Feedback: which memories a caller cited, used or marked wrong for a query (RMM's
        # retrospective reflection), and each cube's online reranker weights. A purged
        # memory takes its feedback rows with it; a query left with none is erased too.
        "0003_feedback",
        """
        ALTER TABLE cubes ADD COLUMN feedback_rev INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE feedback_queries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            cube_id INTEGER NOT NULL REFERENCES cubes(id),
            query TEXT NOT NULL,
            vector BLOB NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX feedback_queries_cube ON feedback_queries(cube_id, id);
        CREATE TABLE feedback (
            query_id INTEGER NOT NULL REFERENCES feedback_queries(id) ON DELETE CASCADE,
            memory_key INTEGER NOT NULL REFERENCES memories(key) ON DELETE CASCADE,
            label TEXT NOT NULL CHECK (label IN ('cited', 'used', 'wrong')),
            PRIMARY KEY (query_id, memory_key)
        );
        CREATE INDEX feedback_memory ON feedback(memory_key);
        CREATE TABLE rerankers (
            cube_id INTEGER PRIMARY KEY REFERENCES cubes(id),
            weights TEXT NOT NULL,
            events INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        )
        """,
    ),
]


def apply_migrations(conn: sqlite3.Connection, where: str, now: str) -> None:
    """Run every pending migration on `conn`, inside the caller's transaction."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    applied = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
    unknown = applied - {name for name, _ in MIGRATIONS}
    if unknown:
        raise SchemaVersionError(
            f"store {where} has migrations this Engram does not know "
            f"({', '.join(sorted(unknown))}); upgrade Engram to open it"
        )
    for name, script in MIGRATIONS:
        if name in applied:
            continue
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, now))
    problems = conn.execute("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise StoreError(f"store {where} fails its foreign key check: {problems[:5]}")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
