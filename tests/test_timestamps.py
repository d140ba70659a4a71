"""One rule for times on every surface: ISO-8601 strings and datetimes are accepted, numbers
are refused with a precise message (12 is not quietly 1970-01-01T00:00:12)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError as PydanticValidationError

from _engram_helpers import HashEmbedder
from _server_helpers import make_keys
from engram import Memory, ValidationError
from engram.config import ServerConfig
from engram.importers import import_file
from engram.server.app import create_app
from engram.store.sqlite_keys import SQLiteKeyStore
from engram.timeutil import parse_time
from engram.types import Message

NUMBER = r"timestamp must be an ISO-8601 string or a datetime, not the number 12"


@pytest.fixture
def mem(tmp_path: Path) -> Iterator[Memory]:
    with Memory(home=tmp_path / "home", embedder=HashEmbedder(64)) as memory:
        yield memory


@pytest.mark.parametrize("value", [12, 12.5, 1_700_000_000, True])
def test_the_one_parser_refuses_numbers(value: object) -> None:
    with pytest.raises(ValidationError, match="ambiguous"):
        parse_time(value, "timestamp")


def test_the_one_parser_accepts_iso_strings_and_datetimes() -> None:
    assert parse_time("2023-05-08T13:56:00", "t") == datetime(2023, 5, 8, 13, 56)
    assert parse_time("2023-05-08T13:56:00Z", "t") == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    aware = datetime(2023, 5, 8, 15, 56, tzinfo=timezone(timedelta(hours=2)))
    assert parse_time(aware, "t") is aware
    assert parse_time(None, "t") is None
    with pytest.raises(ValidationError, match="not an ISO-8601"):
        parse_time("12", "t")


def test_python_api_refuses_a_numeric_message_timestamp(mem: Memory) -> None:
    with pytest.raises(ValidationError, match=f"message {NUMBER}"):
        mem.add([{"content": "hello", "timestamp": 12}], user_id="alice")
    with pytest.raises(ValidationError, match=NUMBER):
        mem.add("hello", user_id="alice", timestamp=12)  # type: ignore[arg-type]
    with pytest.raises(PydanticValidationError, match="not the number 12"):
        Message(content="hello", timestamp=12)  # type: ignore[arg-type]
    assert mem.owners() == []


def test_python_api_keeps_iso_strings_and_datetimes(mem: Memory) -> None:
    when = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    [a] = mem.add([{"content": "iso", "timestamp": "2023-05-08T13:56:00Z"}], user_id="alice")
    [b] = mem.add([Message(content="datetime", timestamp=when)], user_id="alice")
    assert a.provenance.timestamp == b.provenance.timestamp == when


def test_import_refuses_a_numeric_timestamp_and_names_the_line(tmp_path: Path, mem: Memory) -> None:
    path = tmp_path / "chats.jsonl"
    lines = [
        {"content": "fine", "user_id": "a", "timestamp": "2023-05-08T13:56:00"},
        {"messages": [{"content": "when?", "timestamp": 12}], "user_id": "a"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ValidationError, match=f"chats.jsonl:2: message {NUMBER}"):
        import_file(mem, path)
    path.write_text(json.dumps({"content": "x", "user_id": "a", "timestamp": 12}) + "\n")
    with pytest.raises(ValidationError, match=f"chats.jsonl:1: message {NUMBER}"):
        import_file(mem, path)
    assert mem.owners() == []


def test_rest_refuses_numbers_and_accepts_iso(tmp_path: Path, mem: Memory) -> None:
    keys = make_keys(SQLiteKeyStore(tmp_path / "keys.db"))
    app = create_app(mem, SQLiteKeyStore(tmp_path / "keys.db"), ServerConfig(rate_limit_per_s=0))
    with TestClient(app) as client:
        for body in (
            {"text": "x", "timestamp": 12},
            {"messages": [{"content": "x", "timestamp": 12}]},
        ):
            response = client.post("/v1/memories", json=body, headers=keys.alice)
            assert response.status_code == 422, response.text
        ok = client.post(
            "/v1/memories",
            json={"messages": [{"content": "x", "timestamp": "2023-05-08T13:56:00"}]},
            headers=keys.alice,
        )
        assert ok.status_code in (200, 201), ok.text
        stamp = ok.json()["items"][0]["provenance"]["timestamp"]
        assert stamp.startswith("2023-05-08T13:56:00")
