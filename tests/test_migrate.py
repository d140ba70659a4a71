"""`engram migrate`: a SQLite store (the packaged LoCoMo-format sample, extraction jobs,
feedback, retention, histories, idempotency keys, tier provenance) copied into a real
PostgreSQL database reads back identically: searches, histories, jobs and counts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engram import Memory
from engram.embed import Embedder
from engram.errors import ConfigError, EmbedderMismatchError, StoreError, ValidationError
from engram.importers import import_file
from engram.store.migrate import TABLES, TargetNotEmptyError, migrate
from engram.store.migrate_keys import KeyConflictError
from engram.store.postgres.keys import PostgresKeyStore
from engram.store.sqlite_keys import SQLiteKeyStore
from store_contract._pg import fresh_database, started_server

SAMPLE = Path(str(resources.files("engram") / "data" / "sample_conversation.json"))
OWNER = "maya-tomas"
QUERIES = [
    "What is the name of Tomas's dog?",
    "Where did Maya travel?",
    "What instrument is Maya learning?",
    "bicycle chain",
]
runner = CliRunner()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[Any]:
    with started_server() as server:
        yield server


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A SQLite store with something in every table; returns its home."""
    home = tmp_path_factory.mktemp("sqlite-home")
    m = Memory(home=home, embedder=embedder)
    try:
        import_file(m, SAMPLE)
        assert all(j.state.value == "done" for j in m.run_jobs())  # derived memories
        first = m.get_all(user_id=OWNER, limit=3).items
        m.update(first[0].id, "Maya moved to Porto in 2024", reason="corrected", user_id=OWNER)
        m.delete(first[1].id, reason="wrong", user_id=OWNER)
        m.pin(first[2].id, reason="keep", user_id=OWNER)
        hit = m.search(QUERIES[0], user_id=OWNER, k=3)[1]
        m.feedback(QUERIES[0], cited=[hit.id], user_id=OWNER)
        m.set_retention_policy(user_id=OWNER, memory_type="turn", max_active=500)
        m.set_retention_policy(user_id="carl", max_active=10)  # a cube without memories
        bob = m.add(["bob likes jazz", "bob plays the piano"], user_id="bob", session_id="b1")
        m.delete(bob[0].id, hard=True, user_id="bob")  # erased: no trace may travel
        m.store.claim_idempotency("user:bob", "req-1", "f" * 64, 3600.0, 60.0)
        m.store.finish_idempotency("user:bob", "req-1", 201, '{"items": []}')
        m.store.record_artifact("activation", "user:bob", "block-1", [(bob[1].id, 1)])
        m.store.record_artifact("parametric", "user:gone", "v1", [("0" * 32, 2)])
    finally:
        m.close()
    return home


def _sqlite_counts(home: Path) -> dict[str, int]:
    conn = sqlite3.connect(home / "engram.db")
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        conn.close()


def _everything(m: Memory) -> dict[str, Any]:
    """What a user can read of every owner, key-free."""
    seen: dict[str, Any] = {
        "owners": m.owners(),
        "carl": m.retention_policy(user_id="carl").model_dump(),
    }
    for owner in ("maya-tomas", "bob"):
        items = m.get_all(user_id=owner, limit=1000, include_archived=True).items
        seen[owner] = {
            "items": [i.model_dump(mode="json") for i in items],
            "histories": {
                i.id: [v.model_dump(mode="json") for v in m.history(i.id, user_id=owner)]
                for i in items
            },
            "stats": m.stats(user_id=owner).model_dump(mode="json"),
            "jobs": sorted(
                (
                    j.extractor,
                    j.session_id or "",
                    j.state.value,
                    j.attempts,
                    json.dumps(j.result, sort_keys=True),
                )
                for j in m.jobs(user_id=owner)
            ),
            "policy": m.retention_policy(user_id=owner, memory_type="turn").model_dump(),
            "retention": [
                m.retention(i.id, user_id=owner).model_dump(
                    mode="json", exclude={"retrievability", "at"}
                )
                for i in items
            ],
        }
    return seen


def _searches(m: Memory) -> list[list[tuple[str, float]]]:
    return [[(h.id, round(h.score, 5)) for h in m.search(q, user_id=OWNER, k=8)] for q in QUERIES]


def test_sqlite_to_postgres_reads_back_identically(
    source: Path, pg_server: Any, embedder: Embedder, tmp_path: Path
) -> None:
    url = fresh_database(pg_server)
    # searches record access counts (flushed on close): search, close, then read the rest
    local = Memory(home=source, embedder=embedder)
    try:
        hits = _searches(local)
    finally:
        local.close()
    local = Memory(home=source, embedder=embedder)
    try:
        before = _everything(local)
    finally:
        local.close()
    counts = _sqlite_counts(source)
    keys = SQLiteKeyStore(source / "keys.db")  # the home's keys travel with its store
    token, key = keys.create("maya-tomas", "read", reads=["bob"])
    keys.revoke(keys.create("carl")[1].id)
    keys.close()

    result = runner.invoke(
        _app(), ["--json", "migrate", "--from", f"sqlite:///{source}/engram.db", "--to", url]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    done = lines[-1]
    assert done["event"] == "done" and done["verified"] is True
    assert sorted(done["copied"]) == ["user:bob", "user:carl", "user:gone", "user:maya-tomas"]
    assert {t: v["rows"] for t, v in done["tables"].items()} == counts
    assert counts["feedback"] >= 1 and counts["jobs"] >= 8 and counts["tier_artifacts"] == 2
    assert (done["api_keys"]["copied"], done["api_keys"]["skipped"]) == (2, 0)
    moved = PostgresKeyStore(url)
    try:  # the same token works against the new store; the revoked one stays revoked
        assert moved.authenticate(token) == key and len(moved.list(include_revoked=False)) == 1
    finally:
        moved.close()

    held = (SQLiteKeyStore(source / "keys.db"), PostgresKeyStore(url))
    try:  # idempotent: nothing twice
        again = migrate(f"sqlite:///{source}/engram.db", url, keys=held)
    finally:
        for store in held:
            store.close()
    assert again.copied == [] and len(again.skipped) == 4
    assert again.tables == done["tables"]
    assert again.keys is not None and (len(again.keys.copied), len(again.keys.skipped)) == (0, 2)

    remote = Memory(home=tmp_path, embedder=embedder, database_url=url)
    try:
        got = _everything(remote)
        assert got == before, _diff(got, before)[:10]
        assert _searches(remote) == hits
    finally:
        remote.close()


def _app() -> Any:
    from engram.cli import app

    return app


def test_a_non_empty_target_is_refused_unless_merging(
    source: Path, pg_server: Any, embedder: Embedder, tmp_path: Path
) -> None:
    url = fresh_database(pg_server)
    other = Memory(home=tmp_path, embedder=embedder, database_url=url)
    try:
        other.add("carol keeps bees", user_id="carol")
    finally:
        other.close()
    src = f"sqlite:///{source}/engram.db"
    with pytest.raises(TargetNotEmptyError, match=r"not empty: it holds 1 owner.*user:carol"):
        migrate(src, url)
    merged = migrate(src, url, merge=True)
    assert len(merged.copied) == 4
    check = Memory(home=tmp_path, embedder=embedder, database_url=url)
    try:
        assert check.owners() == ["user:bob", "user:carl", "user:carol", "user:maya-tomas"]
        check.add("maya has a new note", user_id=OWNER)  # the target's own keys go on
    finally:
        check.close()
    with pytest.raises(TargetNotEmptyError, match="user:maya-tomas with data that differs"):
        migrate(src, url, merge=True)  # an owner is never overwritten or mixed


def test_a_key_the_target_holds_otherwise_refuses_the_migration(
    source: Path, pg_server: Any, tmp_path: Path
) -> None:
    url = fresh_database(pg_server)
    held = SQLiteKeyStore(tmp_path / "keys.db")
    _, key = held.create("maya-tomas")
    target = PostgresKeyStore(url)
    target.insert(key, "a hash of another token")  # the same id, another token
    try:
        with pytest.raises(KeyConflictError, match=f"API key {key.id} with another token"):
            migrate(f"sqlite:///{source}/engram.db", url, keys=(held, target))
        assert [k.id for k in target.list()] == [key.id]
    finally:
        held.close()
        target.close()
    check = migrate(f"sqlite:///{source}/engram.db", url)  # nothing of the owners was written
    assert len(check.copied) == 4 and check.skipped == []


def test_bad_urls_and_unreachable_databases_are_named(
    source: Path, pg_server: Any, tmp_path: Path
) -> None:
    src = f"sqlite:///{source}/engram.db"
    with pytest.raises(ConfigError, match=r"--to must be a sqlite:/// or postgresql:// URL"):
        migrate(src, f"mysql://{tmp_path}/copy.db")
    with pytest.raises(ConfigError, match=r"--from must be a sqlite:/// or postgresql:// URL"):
        migrate("mysql://db/engram", fresh_database(pg_server))
    with pytest.raises(ValidationError, match="no SQLite store at"):
        migrate(f"sqlite:///{tmp_path}/absent.db", fresh_database(pg_server))
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(StoreError, match="cannot reach") as caught:
        migrate(src, "postgresql://engram:hunter2@127.0.0.1:1/engram")
    assert "hunter2" not in str(caught.value)
    result = runner.invoke(_app(), ["--json", "migrate", "--from", src, "--to", "redis://x"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["message"].startswith("--to must be")


def test_sqlite_to_sqlite_reads_back_identically(
    source: Path, embedder: Embedder, tmp_path: Path
) -> None:
    local = Memory(home=source, embedder=embedder)
    try:
        before = _everything(local)
    finally:
        local.close()
    target = tmp_path / "copy"
    report = migrate(f"sqlite:///{source}/engram.db", f"sqlite:///{target}/engram.db")
    assert sorted(report.copied) == ["user:bob", "user:carl", "user:gone", "user:maya-tomas"]
    assert {t: v["rows"] for t, v in report.tables.items()} == _sqlite_counts(source)
    again = migrate(f"sqlite:///{source}/engram.db", f"sqlite:///{target}/engram.db")
    assert again.copied == [] and len(again.skipped) == 4
    result = runner.invoke(  # the CLI moves the keys beside the file too
        _app(),
        [
            "--json",
            "migrate",
            "--from",
            f"sqlite:///{source}/engram.db",
            "--to",
            f"sqlite:///{target}/engram.db",
        ],
    )
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout.splitlines()[-1])
    assert done["api_keys"] is None or done["api_keys"]["to"].endswith(f"{target}/keys.db")
    assert (done["api_keys"] is None) == (not (source / "keys.db").exists())
    copy = Memory(home=target, embedder=embedder)
    try:
        assert _everything(copy) == before
        copy.add("maya has a new note", user_id=OWNER)  # the target's own keys go on
    finally:
        copy.close()


def test_another_embedder_in_the_target_is_refused(source: Path, pg_server: Any) -> None:
    url = fresh_database(pg_server)
    from engram.store.postgres.store import PostgresStore

    store = PostgresStore(url, 8)
    store.check_embedder("tiny-test-embedder", 8)
    store.close()
    with pytest.raises(EmbedderMismatchError, match="tiny-test-embedder"):
        migrate(f"sqlite:///{source}/engram.db", url)


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += _diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
