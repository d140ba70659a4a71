"""Which Store a config names: one registry of URL schemes, read both by config validation
(`check_url`) and by construction (`open_store`). Backends import lazily, so a SQLite
user never imports psycopg."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from engram.errors import ConfigError
from engram.extras import require_extra

if TYPE_CHECKING:
    from engram.config import EngramConfig
    from engram.store.base import Store


def _open_sqlite(config: EngramConfig, dim: int | None) -> Store:
    from engram.store.sqlite import SQLiteStore

    return SQLiteStore(
        config.sqlite_path,
        dim,
        synchronous=config.sqlite.synchronous,
        busy_timeout_s=config.sqlite.busy_timeout_s,
    )


def _open_postgres(config: EngramConfig, dim: int | None) -> Store:
    require_extra("postgres", "the PostgreSQL store")
    from engram.store.postgres.store import PostgresStore

    assert config.database_url is not None  # chosen by its scheme
    pg = config.postgres
    return PostgresStore(
        config.database_url,
        dim,
        app_role=pg.app_role,
        min_size=pg.pool_min_size,
        max_size=pg.pool_max_size,
        timeout_s=pg.connect_timeout_s,
        exact_search_max=pg.exact_search_max,
        search_candidates=pg.search_candidates,
        hnsw_ef_search=pg.hnsw_ef_search,
    )


# URL scheme -> how to open it; no database_url at all is SQLite under $ENGRAM_HOME
SCHEMES: dict[str, Callable[[EngramConfig, int | None], Store]] = {
    "sqlite:///": _open_sqlite,
    "postgresql://": _open_postgres,
}
ALIASES = {"postgres://": "postgresql://"}  # libpq accepts both spellings


def check_url(url: str) -> str:
    """`url` when its scheme is known; ConfigError naming the accepted ones otherwise."""
    if not url.startswith((*SCHEMES, *ALIASES)):
        got = f" (got {url.split('://', 1)[0]}://...)" if "://" in url else ""
        raise ConfigError(
            f"database_url must start with {' or '.join(SCHEMES)} (or {', '.join(ALIASES)}){got}"
        )
    return url


def open_store(config: EngramConfig, dim: int | None) -> Store:
    """The store named by `database_url` (SQLite by default); `dim=None`: as recorded."""
    url = config.database_url
    if not url:
        return _open_sqlite(config, dim)
    check_url(url)
    scheme = next(s for s in (*SCHEMES, *ALIASES) if url.startswith(s))
    return SCHEMES[ALIASES.get(scheme, scheme)](config, dim)
