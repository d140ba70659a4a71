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
    (
        # Retention (engram.lifecycle): strength (stability in days; NULL = the configured
        # initial strength), the last successful recall and how many there were, pinning,
        # an explicit expiry, and the tier (working buffer, episodic, long-term). Existing
        # memories start long-term. Per-owner policy overrides go with their cube.
        "0004_retention",
        """
        ALTER TABLE memories ADD COLUMN strength REAL;
        ALTER TABLE memories ADD COLUMN last_recalled_at TEXT;
        ALTER TABLE memories ADD COLUMN recall_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE memories ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE memories ADD COLUMN expires_at TEXT;
        ALTER TABLE memories ADD COLUMN tier TEXT NOT NULL DEFAULT 'long_term';
        CREATE INDEX memories_expiry ON memories(cube_id, expires_at)
            WHERE expires_at IS NOT NULL;
        CREATE INDEX memories_tier ON memories(cube_id, tier, session_id);
        CREATE TABLE retention_policies (
            cube_id INTEGER NOT NULL REFERENCES cubes(id),
            type TEXT NOT NULL,
            policy TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (cube_id, type)
        )
        """,
    ),
    (
        # Background jobs (engram.extract): one row per (cube, session, extractor, input
        # hash), so the same input is never queued twice; session_key '' is a job over the
        # whole cube. A running job holds a lease; one whose worker died is claimed again
        # when it expires. Erasing a cube erases its jobs.
        "0005_jobs",
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            cube_id INTEGER NOT NULL REFERENCES cubes(id) ON DELETE CASCADE,
            session_key TEXT NOT NULL,
            extractor TEXT NOT NULL,
            input_hash TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'done', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            not_before TEXT NOT NULL,
            lease_until TEXT,
            error TEXT,
            result TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (cube_id, session_key, extractor, input_hash)
        );
        CREATE INDEX jobs_runnable ON jobs(state, not_before, id);
        CREATE INDEX jobs_cube ON jobs(cube_id, id)
        """,
    ),
    (
        # Idempotency keys of writes (engram.server.idempotency): per owner and key, the
        # request's fingerprint, 'running' until the write ends, then its response, which
        # a retry with the same key gets back. Kept until expires_at; erasing memories of
        # an owner erases that owner's records (a response may quote the erased text).
        "0006_idempotency_keys",
        """
        CREATE TABLE idempotency_keys (
            owner TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('running', 'done')),
            status INTEGER,
            response TEXT,
            started_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            PRIMARY KEY (owner, key)
        );
        CREATE INDEX idempotency_keys_expiry ON idempotency_keys(expires_at)
        """,
    ),
    (
        # Provenance of tier artifacts (engram.tiers): which memory ids, at which version,
        # every KV block (tier 'activation', key = block key) and adapter version (tier
        # 'parametric', key = 'v<N>') was built from, so "which tiers hold memory X" is one
        # query and an erasure finds every artifact to delete. Keyed by owner, not cube:
        # an erasure removes the cube before its artifacts are all gone.
        "0007_tier_artifacts",
        """
        CREATE TABLE tier_artifacts (
            tier TEXT NOT NULL,
            owner TEXT NOT NULL,
            artifact TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            memory_version INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (tier, owner, artifact, memory_id)
        );
        CREATE INDEX tier_artifacts_memory ON tier_artifacts(memory_id)
        """,
    ),
    (
        # Mounts (engram.compose): `owner` reads the cube of owner `cube` beside its own in
        # search and answer. Keyed by owner names (an owner may mount before it has
        # memories of its own); erasing either owner's last memory removes the row.
        "0008_mounts",
        """
        CREATE TABLE mounts (
            owner TEXT NOT NULL,
            cube TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (owner, cube)
        );
        CREATE INDEX mounts_cube ON mounts(cube)
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
