"""engram.store.factory: which store a config names, one list of schemes, psycopg imported
only for a PostgreSQL URL, and a missing extra named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _store_backends import DIM

from engram.config import load_config
from engram.errors import ConfigError, MissingExtraError
from engram.store.factory import open_store
from engram.store.sqlite import SQLiteStore


def test_importing_the_factory_does_not_import_psycopg() -> None:
    code = (
        "import sys; import engram.store.factory, engram.config; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'psycopg', 'psycopg_pool', 'pgvector'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_url_or_a_sqlite_url_opens_sqlite(tmp_path: Path) -> None:
    store = open_store(load_config(home=tmp_path), DIM)
    try:
        assert isinstance(store, SQLiteStore) and store.path == tmp_path / "engram.db"
    finally:
        store.close()
    target = tmp_path / "other.db"
    store = open_store(load_config(database_url=f"sqlite:///{target}"), DIM)
    try:
        assert isinstance(store, SQLiteStore) and store.path == target
    finally:
        store.close()


@pytest.mark.parametrize("url", ["mysql://localhost/engram", "sqlite://relative.db", "engram"])
def test_an_unknown_scheme_names_the_accepted_ones(url: str) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:/// or postgresql:// \(or postgres://\)"):
        load_config(database_url=url)


def test_a_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import engram.extras

    real = engram.extras.find_spec
    monkeypatch.setattr(
        engram.extras, "find_spec", lambda name: None if name == "psycopg" else real(name)
    )
    config = load_config(database_url="postgresql://nobody@localhost/engram")
    with pytest.raises(MissingExtraError, match=r"pip install 'engram-os\[postgres\]'"):
        open_store(config, DIM)


def test_both_postgres_spellings_open_the_postgres_store(pg_url: str) -> None:
    from engram.store.postgres.store import PostgresStore

    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(load_config(database_url=url), DIM)
        try:
            assert isinstance(store, PostgresStore)
        finally:
            store.close()


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    pytest.importorskip("psycopg")
    from engram.errors import StoreError
    from engram.store.postgres.store import PostgresStore

    with pytest.raises(StoreError, match="cannot") as caught:
        PostgresStore("postgresql://engram:hunter2@127.0.0.1:1/engram", DIM, timeout_s=1)
    assert "hunter2" not in str(caught.value) and "engram@127.0.0.1" in str(caught.value)
