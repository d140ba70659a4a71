"""Named, transactional migrations of the PostgreSQL store, run under a transaction-level
advisory lock so processes starting together migrate once; then the application role, its
grants, and the vector column's dimension with its HNSW index.

Every table but `meta`, `schema_migrations` and the API keys' leads with `owner`, and
row-level security (forced, so it binds the tables' owner too) shows a transaction only the
rows of the owner it named in `engram.owner`, unless it asked for every owner
(`engram.scope = 'all'`).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from engram.errors import SchemaVersionError
from engram.store.postgres.conn import store_error

_LOCK = 0x656E6772616D  # "engram": the advisory lock key of migrations

OWNED_TABLES = (
    "cubes",
    "memories",
    "versions",
    "feedback_queries",
    "feedback",
    "rerankers",
    "retention_policies",
    "jobs",
    "idempotency_keys",
    "tier_artifacts",
)

_INITIAL = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE cubes (
    owner text NOT NULL PRIMARY KEY,
    id bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    created_at timestamptz NOT NULL,
    rev bigint NOT NULL DEFAULT 0,
    feedback_rev bigint NOT NULL DEFAULT 0
);
CREATE TABLE memories (
    owner text NOT NULL,
    key bigint GENERATED ALWAYS AS IDENTITY,
    id text COLLATE "C" NOT NULL UNIQUE,
    cube_id bigint NOT NULL REFERENCES cubes (id),
    type text NOT NULL,
    state text NOT NULL DEFAULT 'active',
    text text NOT NULL,
    index_text text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    user_id text, agent_id text, session_id text,
    source_id text, turn_index integer, role text, name text,
    occurred_at timestamptz,
    source text NOT NULL,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    access_count bigint NOT NULL DEFAULT 0,
    last_accessed_at timestamptz,
    strength double precision,
    last_recalled_at timestamptz,
    recall_count integer NOT NULL DEFAULT 0,
    pinned boolean NOT NULL DEFAULT false,
    expires_at timestamptz,
    tier text NOT NULL DEFAULT 'long_term',
    embedding vector NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', index_text)) STORED,
    PRIMARY KEY (owner, key)
);
CREATE INDEX memories_cube ON memories (owner, cube_id, state, key);
CREATE INDEX memories_session ON memories (owner, cube_id, session_id);
CREATE UNIQUE INDEX memories_source ON memories (owner, cube_id, source_id)
    WHERE source_id IS NOT NULL;
CREATE INDEX memories_expiry ON memories (owner, cube_id, expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX memories_tsv ON memories USING gin (tsv);
CREATE TABLE versions (
    owner text NOT NULL,
    memory_key bigint NOT NULL,
    version integer NOT NULL,
    event text NOT NULL,
    text text,
    metadata jsonb NOT NULL DEFAULT '{}',
    reason text,
    source text,
    at timestamptz NOT NULL,
    PRIMARY KEY (owner, memory_key, version),
    FOREIGN KEY (owner, memory_key) REFERENCES memories (owner, key) ON DELETE CASCADE
);
CREATE TABLE feedback_queries (
    owner text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    cube_id bigint NOT NULL REFERENCES cubes (id) ON DELETE CASCADE,
    query text NOT NULL,
    vector vector NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (owner, id)
);
CREATE TABLE feedback (
    owner text NOT NULL,
    query_id bigint NOT NULL,
    memory_key bigint NOT NULL,
    label text NOT NULL CHECK (label IN ('cited', 'used', 'wrong')),
    PRIMARY KEY (owner, query_id, memory_key),
    FOREIGN KEY (owner, query_id) REFERENCES feedback_queries (owner, id) ON DELETE CASCADE,
    FOREIGN KEY (owner, memory_key) REFERENCES memories (owner, key) ON DELETE CASCADE
);
CREATE INDEX feedback_memory ON feedback (owner, memory_key);
CREATE TABLE rerankers (
    owner text NOT NULL,
    cube_id bigint NOT NULL REFERENCES cubes (id) ON DELETE CASCADE,
    weights jsonb NOT NULL,
    events integer NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (owner, cube_id)
);
CREATE TABLE retention_policies (
    owner text NOT NULL,
    cube_id bigint NOT NULL REFERENCES cubes (id) ON DELETE CASCADE,
    type text NOT NULL,
    policy jsonb NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (owner, cube_id, type)
);
CREATE TABLE jobs (
    owner text NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    cube_id bigint NOT NULL REFERENCES cubes (id) ON DELETE CASCADE,
    session_key text NOT NULL,
    extractor text NOT NULL,
    input_hash text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}',
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    not_before timestamptz NOT NULL,
    lease_until timestamptz,
    error text,
    result jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (owner, id),
    UNIQUE (owner, cube_id, session_key, extractor, input_hash)
);
CREATE INDEX jobs_runnable ON jobs (state, not_before, id);
CREATE INDEX jobs_id ON jobs (id);
CREATE TABLE idempotency_keys (
    owner text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    state text NOT NULL CHECK (state IN ('running', 'done')),
    status integer,
    response text,
    started_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE TABLE tier_artifacts (
    owner text NOT NULL,
    tier text NOT NULL,
    artifact text NOT NULL,
    memory_id text NOT NULL,
    memory_version integer NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (owner, tier, artifact, memory_id)
);
CREATE INDEX tier_artifacts_memory ON tier_artifacts (memory_id)
"""

_RLS = "".join(
    f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON {table}
    USING (owner = current_setting('engram.owner', true)
           OR current_setting('engram.scope', true) = 'all');
"""
    for table in OWNED_TABLES
)

# Row-level security keeps a function that is not LEAKPROOF from index conditions: a
# full-text match (`tsv @@ q`) then scans every row of the owner instead of the GIN index
# (58 ms for a 25k-memory owner against 5 ms). ts_match_vq cannot raise on any input, so
# a superuser marks it; run by a role that cannot, the migration leaves it as it is and
# docs/postgres.md says what a DBA may run instead.
_LEAKPROOF_MATCH = """
DO $$ BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        ALTER FUNCTION ts_match_vq(tsvector, tsquery) LEAKPROOF;
    END IF;
END $$
"""

# Mounts (engram.compose): `owner` reads the cube of owner `cube` beside its own. The row
# is the reader's (row-level security by `owner`); erasing the mounted owner's last memory
# removes the rows naming it in the same transaction, scoped to every owner for that one
# statement (engram.store.postgres.mounts).
_MOUNTS = """
CREATE TABLE mounts (
    owner text NOT NULL,
    cube text NOT NULL,
    created_at timestamptz NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (owner, cube)
);
CREATE INDEX mounts_cube ON mounts (cube);
ALTER TABLE mounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE mounts FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_rows ON mounts
    USING (owner = current_setting('engram.owner', true)
           OR current_setting('engram.scope', true) = 'all')
"""

# API keys (engram.store.keys): every server on the database authenticates the same keys.
# A key is looked up by its token's hash before its owner is known, so these tables are not
# owner-scoped (a Citus deployment makes them reference tables); they hold hashes only.
_API_KEYS = """
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    token_sha256 text NOT NULL UNIQUE,
    owner text,
    scope text NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE TABLE api_key_reads (
    key_id text NOT NULL REFERENCES api_keys (id),
    owner text NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (key_id, owner)
)
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", _INITIAL),
    ("0002_row_level_security", _RLS),
    ("0003_leakproof_text_match", _LEAKPROOF_MATCH),
    ("0004_mounts", _MOUNTS),
    ("0005_api_keys", _API_KEYS),
]
# The application role's tables: the owned ones of 0001 (0002 secures exactly those) and
# those later migrations add, each with its own row-level security.
GRANTED_TABLES = ("meta", *OWNED_TABLES, "mounts", "api_keys", "api_key_reads")


def _statements(script: str) -> list[str]:
    """The script's statements: split at semicolons outside $$-quoted bodies."""
    out: list[str] = []
    current: list[str] = []
    for i, part in enumerate(script.split("$$")):
        if i % 2:  # inside a $$ ... $$ body
            current.append(f"$${part}$$")
            continue
        first, *rest = part.split(";")
        current.append(first)
        for piece in rest:
            out.append("".join(current))
            current = [piece]
    out.append("".join(current))
    return [s.strip() for s in out if s.strip()]


def _applied(cur: psycopg.Cursor[Any]) -> set[str] | None:
    cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not cur.fetchone()[0]:  # type: ignore[index]
        return None
    cur.execute("SELECT name FROM schema_migrations")
    return {row[0] for row in cur.fetchall()}


def _role_ready(cur: psycopg.Cursor[Any], role: str) -> bool:
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s) "
        "AND pg_has_role(current_user, %s, 'MEMBER')",
        (role, role),
    )
    if not cur.fetchone()[0]:  # type: ignore[index]
        return False
    cur.execute(
        "SELECT bool_and(has_table_privilege(%s, t, 'SELECT,INSERT,UPDATE,DELETE')) "
        "FROM unnest(%s::text[]) AS t",
        (role, list(GRANTED_TABLES)),
    )
    return bool(cur.fetchone()[0])  # type: ignore[index]


def _grant(cur: psycopg.Cursor[Any], role: str) -> None:
    """The application role: no login of its own, no ownership, every table's rows
    (through row-level security), and membership for whoever runs Engram."""
    ident = sql.Identifier(role)
    # roles are cluster-wide, advisory locks per database: another database's migration
    # may create it at the same moment
    cur.execute(
        sql.SQL(
            "DO $$ BEGIN CREATE ROLE {} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ).format(ident)
    )
    cur.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,))
    if not cur.fetchone()[0]:  # type: ignore[index]
        cur.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(ident))
    tables = sql.SQL(", ").join(sql.Identifier(t) for t in GRANTED_TABLES)
    cur.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(tables, ident))
    cur.execute(sql.SQL("GRANT SELECT ON schema_migrations TO {}").format(ident))
    # identity columns draw their keys without sequence privileges


def migrate(conn: psycopg.Connection, where: str, role: str) -> list[str]:
    """Apply pending migrations and set up `role`, once across processes; returns the
    names applied by this call. SchemaVersionError for a newer store."""
    known = [name for name, _ in MIGRATIONS]
    with conn.cursor() as cur:
        applied = _applied(cur)
        if applied is not None:
            _check_known(applied, known, where)
            if set(known) <= applied and _role_ready(cur, role):
                conn.rollback()
                return []  # the common case: nothing to do, and no lock taken
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = _applied(cur) or set()
        _check_known(applied, known, where)
        done = []
        for name, script in MIGRATIONS:
            if name in applied:
                continue
            for statement in _statements(script):
                cur.execute(statement)  # our own literal SQL, no parameters
            cur.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            done.append(name)
        _grant(cur, role)
    conn.commit()
    return done


def prepare(url: str, where: str, app_role: str, timeout_s: float, dim: int | None) -> None:
    """Migrate the database (once across processes) and, given `dim`, size its vectors."""
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout_s))) as conn:
            migrate(conn, where, app_role)
            if dim is not None:
                ensure_dim(conn, dim)
    except psycopg.Error as err:
        raise store_error(err, where, "migrate") from err


def _check_known(applied: set[str], known: list[str], where: str) -> None:
    unknown = applied - set(known)
    if unknown:
        raise SchemaVersionError(
            f"{where} has migrations this Engram does not know "
            f"({', '.join(sorted(unknown))}); upgrade Engram to open it"
        )


def ensure_dim(conn: psycopg.Connection, dim: int) -> None:
    """Give the vector column its dimension and an HNSW (cosine) index, once."""
    with conn.cursor() as cur:
        cur.execute(_TYPMOD)
        if cur.fetchone()[0] > 0:  # type: ignore[index]
            conn.rollback()  # set already (another dimension: check_embedder says so)
            return
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        cur.execute(_TYPMOD)
        current = cur.fetchone()[0]  # type: ignore[index]
        if current > 0:  # another process did it meanwhile
            conn.rollback()
            return
        cur.execute(
            sql.SQL("ALTER TABLE memories ALTER COLUMN embedding TYPE vector({})").format(
                sql.Literal(int(dim))
            )
        )
        cur.execute(
            "CREATE INDEX IF NOT EXISTS memories_embedding ON memories "
            "USING hnsw (embedding vector_cosine_ops)"
        )
    conn.commit()


_TYPMOD = (
    "SELECT atttypmod FROM pg_attribute "
    "WHERE attrelid = 'memories'::regclass AND attname = 'embedding'"
)
