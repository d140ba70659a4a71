"""API keys in `engram migrate`: every key of the source's key store (revoked ones too,
with their ids, token hashes, times and read grants) into the target's, so the same
tokens authenticate against the new store. Planned before anything is written (a key id
the target holds with other data refuses the whole migration), then copied and read back.

Where keys are: a PostgreSQL store's in its database, a SQLite store's in the `keys.db`
beside its file (for a home, `$ENGRAM_HOME/keys.db` beside `engram.db`: what `open_keys`
opens)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engram.errors import ValidationError
from engram.store.keys import ApiKey, KeyStore


class KeyConflictError(ValidationError):
    """The target holds a key id with another token, owner, scope or grants."""


@dataclass
class KeyCopy:
    """What the copy did: key ids copied, and those the target held already, identical."""

    source: str
    target: str
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "from": self.source,
            "to": self.target,
            "copied": len(self.copied),
            "skipped": len(self.skipped),
        }


def key_store(url: str, *, create: bool) -> KeyStore | None:
    """The key store of a migration's side: the database's own tables for PostgreSQL, the
    `keys.db` beside the file for SQLite (a home's keys.db for its engram.db). None for a
    SQLite source without one (`create=False`: nothing is written beside a source)."""
    if url.startswith(("postgresql://", "postgres://")):
        from engram.store.postgres.keys import PostgresKeyStore

        return PostgresKeyStore(url)
    path = Path(url.removeprefix("sqlite:///")).expanduser().parent / "keys.db"
    if not create and not path.is_file():
        return None
    from engram.store.sqlite_keys import SQLiteKeyStore

    return SQLiteKeyStore(path)


def plan(source: KeyStore, target: KeyStore) -> tuple[list[tuple[ApiKey, str]], list[str]]:
    """The keys to copy with their hashes, and the ids held identically; KeyConflictError
    for an id held with other data."""
    wanted = source.hashes()
    held = target.hashes()
    held_keys = {key.id: key for key in target.list()}
    copy: list[tuple[ApiKey, str]] = []
    skipped: list[str] = []
    for key in source.list():
        if key.id not in held:
            copy.append((key, wanted[key.id]))
        elif held[key.id] == wanted[key.id] and held_keys[key.id] == key:
            skipped.append(key.id)
        else:
            raise KeyConflictError(
                f"{target.where} holds API key {key.id} with another token or owner than "
                f"{source.where}; nothing was copied"
            )
    return copy, skipped


def copy_keys(
    source: KeyStore, target: KeyStore, planned: tuple[list[tuple[ApiKey, str]], list[str]]
) -> KeyCopy:
    """Write the planned keys and check each reads back as it was."""
    copy, skipped = planned
    report = KeyCopy(source.where, target.where, skipped=list(skipped))
    for key, token_sha256 in copy:
        target.insert(key, token_sha256)
    held = {key.id: key for key in target.list()}
    hashes = target.hashes()
    for key, token_sha256 in copy:
        if held.get(key.id) != key or hashes.get(key.id) != token_sha256:
            raise KeyConflictError(f"API key {key.id} did not read back from {target.where}")
        report.copied.append(key.id)
    return report
