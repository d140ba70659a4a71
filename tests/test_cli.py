"""The engram CLI, driven in-process with typer's runner against a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engram.cli import app, normalize_argv

runner = CliRunner()


def run(home: Path, *args: str, input: str | None = None):
    return runner.invoke(app, ["--home", str(home), *args], input=input)


def ok_json(home: Path, *args: str):
    result = run(home, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "store"


def test_add_search_show_history_delete_restore(home: Path) -> None:
    stored = ok_json(
        home,
        "add",
        "I moved to Lisbon in May",
        "-u",
        "alice",
        "-s",
        "s1",
        "--timestamp",
        "2023-05-08T13:56:00",
        "--meta",
        "stars=5",
    )
    mid = stored[0]["id"]
    assert stored[0]["metadata"] == {"stars": 5}
    ok_json(home, "add", "Bob lives in Tokyo", "-u", "bob")
    hits = ok_json(home, "search", "where does alice live", "-u", "alice", "-k", "3")
    assert [h["id"] for h in hits] == [mid]
    assert hits[0]["provenance"]["session_id"] == "s1"
    shown = ok_json(home, "show", mid)
    assert shown["memory"] == "I moved to Lisbon in May"
    assert run(home, "delete", mid, "--reason", "moved again").exit_code == 0
    assert ok_json(home, "search", "Lisbon", "-u", "alice") == []
    assert ok_json(home, "restore", mid)["state"] == "active"
    events = [v["event"] for v in ok_json(home, "history", mid)]
    assert events == ["add", "delete", "restore"]
    human = run(home, "search", "Lisbon", "-u", "alice")
    assert "Lisbon" in human.stdout and "s1" in human.stdout


def test_hard_delete_asks_and_erases(home: Path) -> None:
    mid = ok_json(home, "add", "secret", "-u", "alice")[0]["id"]
    refused = run(home, "delete", mid, "--hard", input="n\n")
    assert refused.exit_code == 1
    assert ok_json(home, "show", mid)["memory"] == "secret"
    assert run(home, "delete", mid, "--hard", "--yes").exit_code == 0
    gone = run(home, "--json", "show", mid)
    assert gone.exit_code == 1
    assert json.loads(gone.stdout)["error"]["code"] == "not_found"


def test_list_pages_with_cursor(home: Path) -> None:
    for i in range(7):
        ok_json(home, "add", f"note number {i}", "-u", "alice")
    first = ok_json(home, "list", "-u", "alice", "--limit", "5")
    second = ok_json(home, "list", "-u", "alice", "--limit", "5", "--cursor", first["next_cursor"])
    texts = [i["memory"] for i in first["items"] + second["items"]]
    assert texts == [f"note number {i}" for i in range(7)]
    assert second["next_cursor"] is None


def test_import_export_stats(home: Path, tmp_path: Path) -> None:
    from importlib import resources

    sample = str(resources.files("engram") / "data" / "sample_conversation.json")
    summary = ok_json(home, "import", sample)
    assert summary["rows"] == 39 and summary["owners"] == 1
    stats = ok_json(home, "stats")
    assert stats["owners"][0]["owner"] == "user:maya-tomas"
    assert stats["owners"][0]["sessions"] == 3
    out = tmp_path / "out.jsonl"
    assert run(home, "export", "-o", str(out)).exit_code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 39 and lines[0]["provenance"]["source_id"] == "D1:1"


def test_bad_input_exit_codes_and_messages(home: Path, tmp_path: Path) -> None:
    empty = run(home, "add", "   ", "-u", "alice")
    assert empty.exit_code == 2 and "empty" in empty.output
    no_owner = run(home, "--json", "add", "hello")
    assert no_owner.exit_code == 2
    assert json.loads(no_owner.stdout)["error"]["code"] == "invalid_input"
    bad_meta = run(home, "add", "x", "-u", "a", "--meta", "novalue")
    assert bad_meta.exit_code == 2 and "key=value" in bad_meta.output
    bad_k = run(home, "search", "x", "-u", "a", "-k", "0")
    assert bad_k.exit_code == 2
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text("nope\n")
    assert run(home, "import", str(bad_file)).exit_code == 2
    bad_cursor = run(home, "list", "-u", "a", "--cursor", "zzz")
    assert bad_cursor.exit_code == 2 and "cursor" in bad_cursor.output


def test_add_reads_stdin(home: Path) -> None:
    stored = ok_json_input(home, "from stdin\n", "add", "-", "-u", "alice")
    assert stored[0]["memory"] == "from stdin\n"


def ok_json_input(home: Path, text: str, *args: str):
    result = run(home, "--json", *args, input=text)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_flag_after_the_command_is_accepted() -> None:
    assert normalize_argv(["search", "q", "--json"]) == ["--json", "search", "q"]
    assert normalize_argv(["bench", "ingest", "--json"]) == ["bench", "ingest", "--json"]


def test_demo_runs_on_the_bundled_sample(home: Path) -> None:
    result = run(home, "demo")
    assert result.exit_code == 0, result.output
    assert "Imported 39 turns" in result.stdout
    assert "D2:5" in result.stdout  # the dog question finds the adoption turn


def test_bench_ingest_writes_json_and_doc(tmp_path: Path) -> None:
    doc = tmp_path / "bench.md"
    result = runner.invoke(
        app, ["bench", "ingest", "--results", str(tmp_path / "r"), "--doc", str(doc), "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["total"]["turns"] == 39 and payload["total"]["queries"] == 10
    assert payload["total"]["search_ms_p50"] > 0
    assert "<!-- bench:ingest -->" in doc.read_text()
    assert list((tmp_path / "r").glob("ingest-*.json"))


def test_bench_vectors_small(tmp_path: Path) -> None:
    doc = tmp_path / "bench.md"
    result = runner.invoke(
        app,
        [
            "bench",
            "vectors",
            "--sizes",
            "200",
            "--queries",
            "5",
            "-k",
            "10",
            "--results",
            str(tmp_path / "r"),
            "--doc",
            str(doc),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    numpy_row = next(r for r in rows if r["index"].startswith("numpy"))
    assert numpy_row["available"] and numpy_row["p50_ms"] > 0


# -- export safety, owner options ------------------------------------------------------------------


def test_export_replaces_the_file_only_when_complete(home: Path, tmp_path: Path) -> None:
    ok_json(home, "add", "kept safe", "-u", "alice")
    out = tmp_path / "backup.jsonl"
    out.write_text("previous backup\n")
    bad_owner = run(home, "export", "-u", "", "-o", str(out))
    assert bad_owner.exit_code == 2 and "-u/--user" in bad_owner.output
    assert out.read_text() == "previous backup\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.jsonl", "store"]
    assert run(home, "export", "-u", "alice", "-o", str(out), "--force").exit_code == 0
    assert json.loads(out.read_text())["memory"] == "kept safe"


def test_export_to_an_unwritable_place_is_a_clean_error(home: Path, tmp_path: Path) -> None:
    ok_json(home, "add", "x", "-u", "alice")
    result = run(home, "--json", "export", "-o", str(tmp_path / "no" / "such" / "dir.jsonl"))
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "output_error" and "cannot write" in error["message"]


def test_an_empty_owner_option_is_bad_input_not_all_owners(home: Path) -> None:
    ok_json(home, "add", "x", "-u", "alice")
    for command in ("stats", "export"):
        result = run(home, "--json", command, "-u", "")
        assert result.exit_code == 2, command
        assert json.loads(result.stdout)["error"]["code"] == "invalid_input"
    assert run(home, "--json", "stats", "-a", "").exit_code == 2


# -- argv, lazy model, demo hint, delete --hard ----------------------------------------------------


def test_bench_is_the_command_only_in_command_position() -> None:
    assert normalize_argv(["search", "bench", "-u", "alice", "--json"]) == [
        "--json",
        "search",
        "bench",
        "-u",
        "alice",
    ]
    assert normalize_argv(["--home", "bench", "list", "--json"]) == [
        "--json",
        "--home",
        "bench",
        "list",
    ]
    assert normalize_argv(["--home", "x", "bench", "ingest", "--json"]) == [
        "--home",
        "x",
        "bench",
        "ingest",
        "--json",
    ]


def test_search_for_the_word_bench_with_json_after(home: Path) -> None:
    ok_json(home, "add", "the workshop bench is oak", "-u", "alice")
    args = normalize_argv(["--home", str(home), "search", "bench", "-u", "alice", "--json"])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["memory"] == "the workshop bench is oak"


def test_commands_that_do_not_embed_never_load_the_model(home: Path, tmp_path: Path, monkeypatch):
    mid = ok_json(home, "add", "a memory", "-u", "alice")[0]["id"]
    other = ok_json(home, "add", "another", "-u", "alice")[0]["id"]
    import engram.cli.common

    def no_model(settings: str, recorded: str | None = None):
        raise AssertionError("the embedding model was loaded")

    monkeypatch.setattr(engram.cli.common, "_embedder", no_model)
    for args in (
        ["list", "-u", "alice"],
        ["show", mid],
        ["history", mid],
        ["stats"],
        ["export", "-o", str(tmp_path / "e.jsonl")],
        ["delete", mid],
        ["restore", mid],
        ["delete", other, "--hard", "--yes"],
    ):
        result = run(home, *args)
        assert result.exit_code == 0, (args, result.output)
    embeds = run(home, "search", "memory", "-u", "alice")
    assert isinstance(embeds.exception, AssertionError)  # search does load it


def test_hard_delete_of_an_unknown_id_fails_before_asking(home: Path) -> None:
    ok_json(home, "add", "x", "-u", "alice")
    result = run(home, "delete", "no-such-id", "--hard", input="y\n")
    assert result.exit_code == 1
    assert "Erase" not in result.output
    assert "no memory whose id starts with 'no-such-id'" in result.output


def test_demo_hint_is_a_command_that_works(home: Path) -> None:
    import shlex

    result = run(home, "demo")
    assert result.exit_code == 0, result.output
    hint = result.stdout.split("Try: ", 1)[1].split("   |   ")[0]
    argv = shlex.split(hint)
    assert argv[1] == "--home" and Path(argv[2]).resolve() == home.resolve()
    found = runner.invoke(app, ["--json", *argv[1:]])
    assert found.exit_code == 0, found.output
    assert "greyhound" in found.stdout


def test_feedback_command(home: Path) -> None:
    added = ok_json(home, "add", "Maya started learning the cello", "-u", "alice")
    memory_id = added[0]["id"]
    result = ok_json(home, "feedback", "which instrument?", "-u", "alice", "--cited", memory_id)
    assert result["recorded"] == 1 and result["owner"] == "user:alice"
    assert set(result["weights"]) == {"cited", "similar", "lexical", "wrong"}
    missing = run(home, "--json", "feedback", "q", "-u", "alice", "--cited", "m_nope")
    assert missing.exit_code == 1 and "m_nope" in missing.output
    empty = run(home, "--json", "feedback", "q", "-u", "alice")
    assert empty.exit_code == 2 and "at least one" in empty.output
