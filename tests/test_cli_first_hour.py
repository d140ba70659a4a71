"""What a new user meets in the first hour: ids typed back by prefix, errors in the CLI's
own words, 80-column output, one vocabulary across surfaces, a light `engram --help`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _engram_helpers import plain
from _server_helpers import make_keys
from engram import Memory, NotFoundError, ValidationError
from engram.cli import app
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.server.app import create_app
from engram.store.sqlite_keys import SQLiteKeyStore

runner = CliRunner()


def run(home: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--home", str(home), *args], input=input)


def ok_json(home: Path, *args: str):  # type: ignore[no-untyped-def]
    result = run(home, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "store"


def test_short_ids_from_list_can_be_typed_back(home: Path) -> None:
    mid = ok_json(home, "add", "I moved to Lisbon in May", "-u", "alice")[0]["id"]
    listed = run(home, "list", "-u", "alice").stdout
    short = mid[:8]
    assert short in listed
    assert ok_json(home, "show", short)["id"] == mid
    assert ok_json(home, "history", short)[0]["event"] == "add"
    assert ok_json(home, "delete", short) == {"id": mid, "deleted": "archived"}
    assert ok_json(home, "restore", short)["id"] == mid
    too_short = run(home, "show", mid[:3])
    assert too_short.exit_code == 1 and "4 or more characters" in plain(too_short.output)
    unknown = run(home, "show", "zzzzzzzz")
    assert unknown.exit_code == 1 and "no memory whose id starts with" in plain(unknown.output)


def test_an_ambiguous_prefix_is_refused_with_the_candidates(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = iter(
        [
            uuid.UUID("abcd0000-0000-4000-8000-000000000001"),
            uuid.UUID("abcd0000-0000-4000-8000-000000000002"),
        ]
    )
    monkeypatch.setattr("engram.store.sqlite.uuid.uuid4", lambda: next(made))
    ok_json(home, "add", "first", "-u", "alice")
    ok_json(home, "add", "second", "-u", "alice")
    both = run(home, "--json", "show", "abcd")
    assert both.exit_code == 2
    message = json.loads(both.stdout)["error"]["message"]
    assert "ambiguous" in message and "...0001" not in message
    assert "abcd0000-0000-4000-8000-000000000001" in message
    assert "abcd0000-0000-4000-8000-000000000002" in message
    assert ok_json(home, "show", "abcd0000-0000-4000-8000-000000000002")["memory"] == "second"


def test_resolve_id_in_the_python_api(memory: Memory) -> None:
    item = memory.add("Tomas runs marathons", user_id="tomas")[0]
    assert memory.resolve_id(item.id[:6]) == item.id
    assert memory.resolve_id(item.id) == item.id
    with pytest.raises(NotFoundError):
        memory.resolve_id("0000-no-such")
    with pytest.raises(ValidationError):
        memory.resolve_id("")


def test_errors_name_the_flags_the_user_typed(home: Path) -> None:
    result = run(home, "search", "where")
    assert result.exit_code == 2
    text = plain(result.output)
    assert "-u/--user" in text and "-a/--agent" in text and "user_id" not in text


def test_flags_show_no_value_in_help() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("engram")), "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0 and "--json" in done.stdout
    assert "<bool>" not in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines())


def test_help_imports_neither_numpy_nor_torch() -> None:
    """`engram --help` and the CLI's import stay light (the timing is a benchmark)."""
    probe = (
        "import sys, engram.cli as c; c.command(); "
        "print(sorted(m for m in ('numpy', 'torch', 'scipy', 'transformers', 'fastapi') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_version_is_one_number_everywhere(home: Path) -> None:
    import engram

    result = run(home, "--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"engram {engram.__version__}"


def test_search_and_list_read_at_80_columns(home: Path) -> None:
    long = (
        "I adopted a dog last week! A three-year-old greyhound called Biscuit from the "
        "shelter, and she sleeps twenty hours a day."
    )
    ok_json(home, "add", long, "-u", "maya-tomas-and-friends", "-s", "session_2")
    for args in (("search", "greyhound"), ("list",)):
        out = run(home, *args, "-u", "maya-tomas-and-friends").stdout
        lines = [line for line in out.splitlines() if line.strip()]
        assert all(len(line) <= 80 for line in lines)
        # a title, a header line and the text in two lines: not a word a line
        assert len(lines) <= 4, out
        assert long in plain(out)
    stats = run(home, "stats").stdout
    assert "user:maya-tomas-and-friends" in stats.replace("\n", "").replace(" ", "")
    assert "…" not in stats


def test_relevance_is_readable_and_the_score_ranks(memory: Memory) -> None:
    memory.add("I moved to Lisbon in May", user_id="alice")
    memory.add("My favourite food is grilled sardines", user_id="alice")
    hits = memory.search("where does alice live?", user_id="alice", k=2)
    assert [h.memory for h in hits][0] == "I moved to Lisbon in May"
    assert all(0.0 <= h.relevance <= 1.0 for h in hits)
    assert hits[0].relevance > hits[1].relevance
    alone = memory.add("Flight AB123 leaves at 9:40", user_id="bob")[0]
    only = memory.search("when is the flight?", user_id="bob")
    assert only[0].id == alone.id and only[0].relevance > 0.2


@pytest.fixture
def served(tmp_path: Path, embedder: Embedder) -> Iterator[tuple[Memory, TestClient, dict]]:
    with Memory(home=tmp_path, embedder=embedder) as memory:
        store = SQLiteKeyStore(tmp_path / "keys.db")
        keys = make_keys(store)
        app_ = create_app(memory, store, ServerConfig(rate_limit_per_s=0))
        with TestClient(app_, base_url="http://localhost") as client:
            yield memory, client, keys.alice


def test_one_vocabulary_across_surfaces(
    served: tuple[Memory, TestClient, dict], tmp_path: Path
) -> None:
    memory, client, alice = served
    added = client.post("/v1/memories", json={"messages": [{"content": "x"}]}, headers=alice)
    mid = added.json()["items"][0]["id"]
    client.patch(f"/v1/memories/{mid}", json={"text": "y"}, headers=alice)
    rest = client.delete(f"/v1/memories/{mid}", headers=alice).json()
    assert rest["deleted"] == "archived"
    sources = [v.source for v in memory.history(mid)]
    assert sources == ["rest", "rest", "rest"]
    hard = client.delete(f"/v1/memories/{mid}", params={"hard": "true"}, headers=alice).json()
    assert hard["deleted"] == "erased"
    cli_home = tmp_path / "cli"
    cli_id = ok_json(cli_home, "add", "z", "-u", "alice")[0]["id"]
    assert ok_json(cli_home, "delete", cli_id)["deleted"] == "archived"
    assert ok_json(cli_home, "history", cli_id)[-1]["source"] == "cli"
    assert ok_json(cli_home, "delete", cli_id, "--hard", "--yes")["deleted"] == "erased"


def test_lora_ask_before_training_says_what_to_run(home: Path) -> None:
    result = run(home, "lora", "ask", "Ada Quill lives in", "-u", "bob")
    assert result.exit_code == 1
    assert "engram lora train -u bob" in plain(result.output)


@pytest.mark.slow
def test_bench_cli_times_whole_processes(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["bench", "cli", "--runs", "1", "--no-serve", "--results", str(tmp_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["commands"]
    assert set(rows) == {
        "engram --help",
        "engram add TEXT -u maya-tomas",
        "engram search greyhound -u maya-tomas",
        "engram list -u maya-tomas",
    }
    for row in rows.values():
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["peak_mib"] > 5
    # --help loads no model: its process is a fraction of a search's
    assert (
        rows["engram --help"]["peak_mib"]
        < rows["engram search greyhound -u maya-tomas"]["peak_mib"]
    )
    assert list(tmp_path.glob("cli-*.json"))


@pytest.mark.slow
def test_kv_build_works_on_a_small_store(home: Path) -> None:
    """Two memories, `--top 3`, the default method, KIVI alone and snapkv+kivi: a short
    block's residual window is its positions tensor (safetensors refused shared memory)."""
    ok_json(home, "add", "Maya adopted a greyhound called Biscuit", "-u", "alice")
    ok_json(home, "add", "Tomas hurt his knee running", "-u", "alice")
    for method in (None, "kivi:bits=2", "snapkv:keep=0.5+kivi:bits=2"):
        args = ["kv", "build", "-u", "alice", "--top", "3"]
        built = ok_json(home, *args, *(["--method", method] if method else []))
        assert built["memories"] == 2, built
