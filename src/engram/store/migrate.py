"""Copy a whole store into a PostgreSQL database (`engram migrate`): every owner's memories
with their version chains and embeddings, feedback, reranker weights, retention state and
policies, jobs, idempotency keys and tier artifact provenance.

Each owner is read into one backend-neutral `OwnerDump` (store keys replaced by memory ids,
times as naive-UTC ISO text, JSON with sorted keys, vectors as float16 bytes), written in
one target transaction, read back and compared table by table (row count and SHA-256).
Keys are the target's own; memory ids, versions and times are kept. An owner the target
holds already with identical data is skipped, so a migration can be run again (or resumed
after a crash) and does nothing twice. A target holding other data is refused unless
`merge`; an owner held with different data is always refused (nothing is overwritten).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engram.errors import ConfigError, EmbedderMismatchError, StoreError, ValidationError
from engram.timeutil import iso

if TYPE_CHECKING:
    from engram.bundle.merge import OwnerMerge
    from engram.store.keys import KeyStore
    from engram.store.migrate_artifacts import ArtifactCopy
    from engram.store.migrate_keys import KeyCopy

# The neutral row layout of each table; `memory_id` stands where a store has a key.
TABLES: dict[str, tuple[str, ...]] = {
    name: tuple(columns.split())
    for name, columns in {
        "cubes": "created_at",
        "memories": "id type state text index_text metadata user_id agent_id session_id "
        "source_id turn_index role name occurred_at source version created_at updated_at "
        "access_count last_accessed_at strength last_recalled_at recall_count pinned "
        "expires_at tier embedding",
        "versions": "memory_id version event text metadata reason source at",
        "feedback_queries": "ordinal query vector at",
        "feedback": "query_ordinal memory_id label",
        "rerankers": "weights events updated_at",
        "retention_policies": "type policy updated_at",
        "jobs": "session_key extractor input_hash payload state attempts max_attempts "
        "not_before lease_until error result created_at updated_at",
        "idempotency_keys": "key fingerprint state status response started_at expires_at",
        "tier_artifacts": "tier artifact memory_id memory_version created_at",
    }.items()
}

Row = tuple[Any, ...]


def ts(value: str | datetime | None) -> str | None:
    """A stored time as naive-UTC ISO text with microseconds (SQLite's own format)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return iso(value)


def to_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def js(value: Any) -> str | None:
    """JSON (text from SQLite, decoded from jsonb) as canonical text: sorted keys."""
    if value is None:
        return None
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def payload_out(payload: Any, ids_by_key: dict[int, str]) -> str:
    """A job payload with store keys replaced by memory ids (keys of erased memories go)."""
    data = json.loads(payload) if isinstance(payload, str | bytes) else dict(payload)
    if "keys" in data:
        data["memory_ids"] = [ids_by_key[k] for k in data.pop("keys") if k in ids_by_key]
    return js(data) or "{}"


def payload_in(payload: str, keys_by_id: dict[str, int]) -> dict[str, Any]:
    """A neutral job payload with the target's keys (in key order, as queued)."""
    data: dict[str, Any] = json.loads(payload)
    if "memory_ids" in data:
        data["keys"] = sorted(keys_by_id[i] for i in data.pop("memory_ids"))
    return data


@dataclass
class OwnerDump:
    """Everything a store holds for one owner, in the neutral row layout of TABLES."""

    owner: str
    tables: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t in TABLES})

    @property
    def empty(self) -> bool:
        return not any(self.tables.values())

    def digests(self) -> dict[str, tuple[int, str]]:
        """Per table: (rows, SHA-256 of the rows in order)."""
        return {name: (len(rows), _digest(rows)) for name, rows in self.tables.items()}


def _digest(rows: Iterable[Row]) -> str:
    h = hashlib.sha256()
    for row in rows:
        cells = [c.hex() if isinstance(c, bytes) else c for c in row]
        h.update(json.dumps(cells, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


class StoreReader(Protocol):
    where: str

    def embedder(self) -> tuple[str, int] | None: ...

    def owners(self) -> list[str]: ...

    def dump(self, owner: str) -> OwnerDump: ...

    def close(self) -> None: ...


class StoreWriter(StoreReader, Protocol):
    def set_embedder(self, name: str, dim: int) -> None: ...

    def load(self, dump: OwnerDump) -> None: ...

    def merge(self, dump: OwnerDump) -> OwnerMerge: ...


# -- the SQLite side (read only) ------------------------------------------------------


class SQLiteReader:
    """Reads a SQLite store file (migrated to this Engram's schema first, as any command
    opening it would) through one read-only connection."""

    def __init__(self, path: Path) -> None:
        from engram.store.sqlite import SQLiteStore

        self.where = f"sqlite:///{path}"
        if not path.is_file():
            raise ValidationError(f"--from {self.where}: no SQLite store at {path}")
        SQLiteStore(path, None).close()  # brings an older file's schema up to date
        try:
            self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            self.conn.execute("SELECT 1 FROM meta LIMIT 1")
        except sqlite3.Error as err:
            raise StoreError(f"cannot read the SQLite store {path}: {err}") from err

    def _rows(self, query: str, params: tuple[Any, ...] = ()) -> list[Row]:
        try:
            return [tuple(r) for r in self.conn.execute(query, params).fetchall()]
        except sqlite3.Error as err:
            raise StoreError(f"cannot read {self.where}: {err}") from err

    def embedder(self) -> tuple[str, int] | None:
        query = "SELECT key, value FROM meta WHERE key LIKE 'embedder.%'"
        rows: dict[str, str] = dict(self._rows(query))
        return None if not rows else (rows["embedder.name"], int(rows["embedder.dim"]))

    def owners(self) -> list[str]:
        rows = self._rows(
            "SELECT owner FROM cubes UNION SELECT owner FROM idempotency_keys "
            "UNION SELECT owner FROM tier_artifacts"
        )
        return sorted(r[0] for r in rows)

    def dump(self, owner: str) -> OwnerDump:
        """One owner, read in one transaction (a consistent view)."""
        self.conn.execute("BEGIN")
        try:
            return self._dump(owner)
        finally:
            self.conn.execute("COMMIT")

    def _dump(self, owner: str) -> OwnerDump:
        out = OwnerDump(owner)
        t = out.tables
        t["idempotency_keys"] = [
            (r[0], r[1], r[2], r[3], r[4], ts(r[5]), ts(r[6]))
            for r in self._rows(
                "SELECT key, fingerprint, state, status, response, started_at, expires_at "
                "FROM idempotency_keys WHERE owner = ? ORDER BY key",
                (owner,),
            )
        ]
        t["tier_artifacts"] = [
            (r[0], r[1], r[2], r[3], ts(r[4]))
            for r in self._rows(
                "SELECT tier, artifact, memory_id, memory_version, created_at FROM "
                "tier_artifacts WHERE owner = ? ORDER BY tier, artifact, memory_id",
                (owner,),
            )
        ]
        cube = self._rows("SELECT id, created_at FROM cubes WHERE owner = ?", (owner,))
        if not cube:
            return out
        cid = cube[0][0]
        t["cubes"] = [(ts(cube[0][1]),)]
        rows = self._rows(
            "SELECT m.key, m.id, m.type, m.state, m.text, f.body, m.metadata, m.user_id, "
            "m.agent_id, m.session_id, m.source_id, m.turn_index, m.role, m.name, "
            "m.occurred_at, m.source, m.version, m.created_at, m.updated_at, m.access_count, "
            "m.last_accessed_at, m.strength, m.last_recalled_at, m.recall_count, m.pinned, "
            "m.expires_at, m.tier, m.embedding FROM memories m "
            "JOIN memories_fts f ON f.rowid = m.key WHERE m.cube_id = ? ORDER BY m.key",
            (cid,),
        )
        ids = {r[0]: r[1] for r in rows}
        t["memories"] = [
            (*r[1:6], js(r[6]), *r[7:14], ts(r[14]), r[15], r[16], ts(r[17]), ts(r[18]),
             r[19], ts(r[20]), r[21], ts(r[22]), r[23], bool(r[24]), ts(r[25]), r[26],
             bytes(r[27]))
            for r in rows
        ]  # fmt: skip
        t["versions"] = [
            (ids[r[0]], r[1], r[2], r[3], js(r[4]), r[5], r[6], ts(r[7]))
            for r in self._rows(
                "SELECT v.memory_key, v.version, v.event, v.text, v.metadata, v.reason, "
                "v.source, v.at FROM versions v JOIN memories m ON m.key = v.memory_key "
                "WHERE m.cube_id = ? ORDER BY v.memory_key, v.version",
                (cid,),
            )
        ]
        queries = self._rows(
            "SELECT id, query, vector, at FROM feedback_queries WHERE cube_id = ? ORDER BY id",
            (cid,),
        )
        ordinal = {q[0]: n for n, q in enumerate(queries)}
        t["feedback_queries"] = [(ordinal[q[0]], q[1], bytes(q[2]), ts(q[3])) for q in queries]
        t["feedback"] = [
            (ordinal[r[0]], ids[r[1]], r[2])
            for r in self._rows(
                "SELECT f.query_id, f.memory_key, f.label FROM feedback f JOIN "
                "feedback_queries q ON q.id = f.query_id WHERE q.cube_id = ? "
                "ORDER BY f.query_id, f.memory_key",
                (cid,),
            )
        ]
        t["rerankers"] = [
            (js(r[0]), r[1], ts(r[2]))
            for r in self._rows(
                "SELECT weights, events, updated_at FROM rerankers WHERE cube_id = ?", (cid,)
            )
        ]
        t["retention_policies"] = [
            (r[0], js(r[1]), ts(r[2]))
            for r in self._rows(
                "SELECT type, policy, updated_at FROM retention_policies WHERE cube_id = ? "
                "ORDER BY type",
                (cid,),
            )
        ]
        t["jobs"] = [
            (r[0], r[1], r[2], payload_out(r[3], ids), r[4], r[5], r[6], ts(r[7]), ts(r[8]),
             r[9], js(r[10]), ts(r[11]), ts(r[12]))
            for r in self._rows(
                "SELECT session_key, extractor, input_hash, payload, state, attempts, "
                "max_attempts, not_before, lease_until, error, result, created_at, updated_at "
                "FROM jobs WHERE cube_id = ? ORDER BY id",
                (cid,),
            )
        ]  # fmt: skip
        return out

    def close(self) -> None:
        self.conn.close()


# -- opening both sides ---------------------------------------------------------------


def _postgres(url: str) -> StoreWriter:
    from engram.extras import require_extra

    require_extra("postgres", "migrating to PostgreSQL")
    from engram.store.postgres.transfer import PostgresTransfer

    return PostgresTransfer(url)


def open_reader(url: str) -> StoreReader:
    """The store `--from` names: a SQLite file or a PostgreSQL database."""
    if url.startswith("sqlite:///"):
        return SQLiteReader(Path(url.removeprefix("sqlite:///")).expanduser())
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url)
    raise ConfigError(f"--from must be a sqlite:/// or postgresql:// URL, got {_shown(url)}")


def open_writer(url: str) -> StoreWriter:
    """The store `--to` names: a PostgreSQL database or a SQLite file (created if absent)."""
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url)
    if url.startswith("sqlite:///"):
        from engram.store.sqlite_transfer import SQLiteTransfer

        return SQLiteTransfer(Path(url.removeprefix("sqlite:///")).expanduser())
    raise ConfigError(f"--to must be a sqlite:/// or postgresql:// URL, got {_shown(url)}")


def _shown(url: str) -> str:
    return f"{url.split('://', 1)[0]}://..." if "://" in url else repr(url)


# -- the migration --------------------------------------------------------------------


@dataclass
class MigrationReport:
    """What a migration did: owners copied and skipped, and per table the rows and a
    digest of the source that the target matched after the copy."""

    source: str
    target: str
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # held already, identical
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: KeyCopy | None = None  # API keys, when the migration moved them
    artifacts: ArtifactCopy | None = None  # KV blocks and adapters, when it moved them

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "owners": len(self.copied) + len(self.skipped),
            "copied": self.copied,
            "skipped": self.skipped,
            "tables": self.tables,
            "verified": True,
            "api_keys": None if self.keys is None else self.keys.as_dict(),
            "artifacts": None if self.artifacts is None else self.artifacts.as_dict(),
        }


class TargetNotEmptyError(ValidationError):
    """The target holds data the source does not: refused unless merging."""

    code = "target_not_empty"


def _check_embedders(reader: StoreReader, writer: StoreWriter) -> None:
    source, target = reader.embedder(), writer.embedder()
    if source is None:
        return
    if target is None:
        writer.set_embedder(*source)
    elif target != source:
        raise EmbedderMismatchError(
            f"{writer.where} holds vectors of embedder {target[0]!r} ({target[1]}-d) but "
            f"{reader.where} of {source[0]!r} ({source[1]}-d); migrate into another database"
        )


def mismatch(want: OwnerDump, got: OwnerDump) -> str | None:
    """The tables in which `got` differs from `want` (rows wanted vs read), or None."""
    mine, theirs = want.digests(), got.digests()
    wrong = [t for t in TABLES if mine[t] != theirs[t]]
    return ", ".join(f"{t} {mine[t][0]} rows vs {theirs[t][0]}" for t in wrong) or None


def _verify(owner: str, want: OwnerDump, got: OwnerDump, where: str) -> None:
    detail = mismatch(want, got)
    if detail is not None:
        raise StoreError(
            f"{where}: owner {owner!r} does not match the source after the copy ({detail}); "
            "its transaction was committed, inspect it"
        )


def migrate(
    source_url: str,
    target_url: str,
    *,
    merge: bool = False,
    progress: Callable[[str, str, OwnerDump], None] | None = None,
    keys: tuple[KeyStore, KeyStore] | None = None,
    artifacts: tuple[Path, Path] | None = None,
) -> MigrationReport:
    """Copy every owner of `source_url` into `target_url`, verifying each; see the module
    docstring for what is refused. `progress(owner, 'copied' | 'skipped', dump)`.
    `keys`: the source's and the target's API key stores, whose keys are copied too
    (engram.store.migrate_keys; planned before anything is written). `artifacts`: the
    source's and the target's artifacts directories: each owner's KV blocks and adapters
    are copied after its rows (engram.store.migrate_artifacts)."""
    from engram.store import migrate_keys

    reader = open_reader(source_url)
    try:
        writer = open_writer(target_url)
        try:
            planned = None if keys is None else migrate_keys.plan(*keys)
            files = None if artifacts is None else _artifact_copy(*artifacts)
            report = _migrate(reader, writer, merge, progress, files)
            if keys is not None and planned is not None:
                report.keys = migrate_keys.copy_keys(*keys, planned)
            return report
        finally:
            writer.close()
    finally:
        reader.close()


def _artifact_copy(source: Path, target: Path) -> ArtifactCopy:
    from engram.store.migrate_artifacts import ArtifactCopy

    source, target = Path(source).expanduser(), Path(target).expanduser()
    if not source.is_dir():
        raise ValidationError(f"no artifacts directory at {source}")
    if source.resolve() == target.resolve():
        raise ValidationError(
            f"--artifacts-to is the source's artifacts directory ({source}): the files are "
            "there already; give another directory, or leave it out"
        )
    return ArtifactCopy(source, target)


def _migrate(
    reader: StoreReader,
    writer: StoreWriter,
    merge: bool,
    progress: Callable[[str, str, OwnerDump], None] | None,
    files: ArtifactCopy | None = None,
) -> MigrationReport:
    report = MigrationReport(reader.where, writer.where, artifacts=files)
    owners = reader.owners()
    held = set(writer.owners())
    foreign = sorted(held - set(owners))
    if foreign and not merge:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise TargetNotEmptyError(
            f"{writer.where} is not empty: it holds {len(foreign)} owner(s) the source does "
            f"not ({shown}); migrate into an empty database, or pass --merge to add the "
            "source's owners to it"
        )
    conflicts = [
        owner
        for owner in sorted(held & set(owners))
        if writer.dump(owner).digests() != reader.dump(owner).digests()
    ]
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        raise TargetNotEmptyError(
            f"{writer.where} already holds owner(s) {shown} with data that differs from "
            f"{reader.where}; nothing was copied (an owner is never overwritten or mixed)"
        )
    _check_embedders(reader, writer)
    rows = dict.fromkeys(TABLES, 0)
    hashes = {t: hashlib.sha256() for t in TABLES}
    for owner in owners:  # one owner in memory at a time
        dump = reader.dump(owner)
        if owner in held:
            report.skipped.append(owner)
            step = "skipped"
        else:
            writer.load(dump)
            _verify(owner, dump, writer.dump(owner), writer.where)
            report.copied.append(owner)
            step = "copied"
        if files is not None:  # held owners too: a run again completes an interrupted copy
            from engram.store.migrate_artifacts import copy_owner_artifacts

            copy_owner_artifacts(dump, files)
        for table, (count, digest) in dump.digests().items():
            rows[table] += count
            hashes[table].update(f"{owner}\x00{digest}\n".encode())
        if progress is not None:
            progress(owner, step, dump)
    report.tables = {t: {"rows": rows[t], "sha256": hashes[t].hexdigest()} for t in TABLES}
    return report
