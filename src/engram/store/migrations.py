"""Named, ordered schema migrations for the SQLite store; each runs in one transaction."""

from __future__ import annotations

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
]
