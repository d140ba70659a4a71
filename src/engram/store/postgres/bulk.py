"""Bulk loading a PostgreSQL store: an HNSW index maintained row by row costs about a
millisecond per insert, so a large load drops it first and builds it once afterwards
(pgvector's documented advice). Both need the tables' owner (the database URL's user),
not the application role."""

from __future__ import annotations

import psycopg
from psycopg import sql

from engram.store.postgres.conn import describe, store_error

VECTOR_INDEX = "memories_embedding"


def drop_vector_index(url: str) -> None:
    """Drop the HNSW index: searches of large cubes scan until it is built again."""
    try:
        with psycopg.connect(url) as conn:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(VECTOR_INDEX)))
    except psycopg.Error as err:
        raise store_error(err, describe(url), "drop the vector index of") from err


def build_vector_index(url: str, work_mem: str = "1GB", workers: int = 2) -> None:
    """(Re)build the HNSW cosine index on memories.embedding; `work_mem` is the build's
    maintenance_work_mem (a graph that fits builds several times faster)."""
    try:
        with psycopg.connect(url) as conn:
            conn.execute(
                "SELECT set_config('maintenance_work_mem', %s, true), "
                "set_config('max_parallel_maintenance_workers', %s, true)",
                (work_mem, str(workers)),
            )
            conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON memories USING hnsw "
                    "(embedding vector_cosine_ops)"
                ).format(sql.Identifier(VECTOR_INDEX))
            )
    except psycopg.Error as err:
        raise store_error(err, describe(url), "build the vector index of") from err
