"""An owner's `OwnerDump` (engram.store.migrate) as one JSON-lines file per table: one
object per row, keyed by the neutral column names; bytes (vectors) as base64."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from engram.bundle.errors import BundleError
from engram.store.migrate import TABLES, OwnerDump, Row

BYTES = {("memories", "embedding"), ("feedback_queries", "vector")}


def table_file(root: Path, table: str) -> Path:
    return root / f"{table}.jsonl"


def _cell(table: str, column: str, value: Any) -> Any:
    if (table, column) in BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def write_tables(dump: OwnerDump, dest: Path) -> list[Path]:
    """Every table of `dump` under `dest` (an empty table is an empty file)."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for table, columns in TABLES.items():
        lines = [
            json.dumps(
                {c: _cell(table, c, v) for c, v in zip(columns, row, strict=True)},
                ensure_ascii=False,
                sort_keys=True,
            )
            + "\n"
            for row in dump.tables[table]
        ]
        path = table_file(dest, table)
        path.write_text("".join(lines), encoding="utf-8")
        written.append(path)
    return written


def _row(table: str, data: Any, where: str) -> Row:
    columns = TABLES[table]
    if not isinstance(data, dict) or set(data) != set(columns):
        raise BundleError(f"{where}: a row does not have exactly the columns {list(columns)}")
    try:
        return tuple(
            base64.b64decode(data[c], validate=True) if (table, c) in BYTES else data[c]
            for c in columns
        )
    except (binascii.Error, TypeError) as err:
        raise BundleError(f"{where}: a vector is not valid base64 ({err})") from err


def read_tables(src: Path, owner: str) -> OwnerDump:
    """The dump `write_tables` wrote under `src`."""
    dump = OwnerDump(owner)
    for table in TABLES:
        path = table_file(src, table)
        where = f"{src.name}/{path.name}"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise BundleError(f"cannot read {where}: {err}") from err
        try:
            dump.tables[table] = [_row(table, json.loads(line), where) for line in lines]
        except json.JSONDecodeError as err:
            raise BundleError(f"{where} is not JSON lines: {err}") from err
    return dump
