"""Importers: LoCoMo-format JSON and JSON lines, validated before anything is written."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from _engram_helpers import db_path, table_counts
from engram import Memory, MemoryState, ValidationError
from engram.importers import import_file, plan_import
from engram.importers.locomo import clean_evidence, parse_session_time, read_locomo

SAMPLE = Path(str(resources.files("engram") / "data" / "sample_conversation.json"))


def test_session_time_formats() -> None:
    assert parse_session_time("1:56 pm on 8 May, 2023").isoformat() == "2023-05-08T13:56:00"
    assert parse_session_time("12:09 am on 13 September, 2023").hour == 0
    assert parse_session_time("12:30 pm on 1 Jan, 2024").hour == 12
    assert parse_session_time("2023-05-08T10:00:00").day == 8
    assert parse_session_time("sometime in spring") is None
    assert parse_session_time("1:56 pm on 31 February, 2023") is None


def test_evidence_cleaning_splits_and_drops_unknown_ids() -> None:
    known = {"D1:3", "D8:6", "D9:17", "D4:4"}
    assert clean_evidence(["D8:6; D9:17", "D9:1 D4:4", "D:11:26", "D", "D1:3"], known) == [
        "D8:6",
        "D9:17",
        "D4:4",
        "D1:3",
    ]
    assert clean_evidence("D1:3", known) == []


def test_sample_parses_with_captions_and_dates() -> None:
    (conv,) = read_locomo(SAMPLE)
    assert conv.sample_id == "maya-tomas"
    assert [s.index for s in conv.sessions] == [1, 2, 3]
    assert all(s.date is not None for s in conv.sessions)
    texts = {t.dia_id: t.text for _, t in conv.turns}
    assert texts["D2:5"].endswith("[shares a photo of a grey greyhound lying on a blue sofa]")
    assert all(q.evidence for q in conv.questions)


def test_locomo_import_provenance_and_idempotence(memory: Memory) -> None:
    first = import_file(memory, SAMPLE)
    assert (first.format, first.owners, first.rows, first.stored) == ("locomo", 1, 39, 39)
    hits = memory.search("What is the name of Tomas's dog?", user_id="maya-tomas", k=3)
    top = hits[0].provenance
    assert top.source_id == "D2:5"
    assert top.session_id == "session_2"
    assert top.name == "Tomas"
    assert top.timestamp is not None and top.timestamp.isoformat() == "2023-06-03T19:10:00+00:00"
    assert hits[0].metadata["session_date"] == "7:10 pm on 3 June, 2023"
    import_file(memory, SAMPLE)  # again: nothing new
    assert memory.stats(user_id="maya-tomas").active == 39


def test_locomo_clean_text_and_missing_optional_parts(tmp_path: Path, memory: Memory) -> None:
    doc = [
        {
            "sample_id": "x1",
            "conversation": {
                "speaker_a": "A",
                "speaker_b": "B",
                "session_1": [{"speaker": "A", "dia_id": "D1:1", "clean_text": "hello there"}],
            },
        }
    ]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    report = import_file(memory, path, "locomo", user_id="team")
    assert report.stored == 1
    item = memory.get_all(user_id="team:x1").items[0]
    assert item.memory == "hello there" and item.provenance.timestamp is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read"),
        ("[]", "expected a list"),
        ('[{"sample_id": "a"}]', "no 'conversation'"),
        ('[{"conversation": {"session_1": [{"text": "x"}]}}]', "needs 'speaker'"),
        ('[{"conversation": {"speaker_a": "A"}}]', "no session_<n>"),
    ],
)
def test_bad_locomo_files_are_refused_whole(
    tmp_path: Path, memory: Memory, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValidationError, match=message):
        import_file(memory, path, "locomo")
    assert memory.owners() == []


def test_jsonl_all_line_shapes(tmp_path: Path, memory: Memory) -> None:
    lines = [
        {
            "messages": [
                {"role": "user", "content": "I love hiking in the Alps"},
                {"role": "assistant", "content": "Which trail?"},
            ],
            "user_id": "alice",
            "session_id": "s1",
            "timestamp": "2024-01-02T10:00:00",
        },
        {"content": "Bob prefers tea", "user_id": "bob", "source_id": "b-1"},
        {"content": "owner comes from the command line"},
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    report = import_file(memory, path, user_id="carol")
    assert (report.format, report.rows, report.owners) == ("jsonl", 4, 3)
    alice = memory.get_all(user_id="alice").items
    assert [i.provenance.role for i in alice] == ["user", "assistant"]
    assert alice[0].provenance.timestamp.year == 2024
    assert memory.get_all(user_id="bob").items[0].provenance.source_id == "b-1"
    assert memory.get_all(user_id="carol").items[0].memory.startswith("owner comes")


def test_export_lines_reimport_elsewhere(tmp_path: Path, memory: Memory, embedder) -> None:
    import_file(memory, SAMPLE)
    memory.add(
        "a fact with metadata", user_id="maya-tomas", memory_type="fact", metadata={"topic": "x"}
    )
    path = tmp_path / "export.jsonl"
    with path.open("w") as fh:
        for item in memory.iter_all(user_id="maya-tomas"):
            fh.write(item.model_dump_json() + "\n")
    with Memory(home=tmp_path / "other", embedder=embedder) as other:
        report = import_file(other, path)
        assert report.stored == 40
        fact = other.get_all(user_id="maya-tomas", types="fact").items
        assert [f.metadata for f in fact] == [{"topic": "x"}]
        hit = other.search("greyhound", user_id="maya-tomas", k=1)[0]
        assert hit.provenance.source_id == "D2:5"


def test_bad_jsonl_line_names_the_line_and_writes_nothing(tmp_path: Path, memory: Memory) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"content": "fine", "user_id": "a"}\n{"content": "", "user_id": "a"}\n')
    before = table_counts(db_path(memory.config.home))
    with pytest.raises(ValidationError, match=r"bad.jsonl:2: message content is empty"):
        import_file(memory, path)
    assert table_counts(db_path(memory.config.home)) == before
    path.write_text('{"content": "fine", "user_id": "a"}\nnot json\n')
    with pytest.raises(ValidationError, match=r"bad.jsonl:2"):
        plan_import(path)
    path.write_bytes(b'{"content": "caf\xe9", "user_id": "a"}\n')
    with pytest.raises(ValidationError, match="UTF-8"):
        plan_import(path)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is not a file"):
        plan_import(tmp_path / "nope.json")
    path = tmp_path / "x.jsonl"
    path.write_text('{"content": "x", "user_id": "a"}\n')
    with pytest.raises(ValidationError, match="unknown import format"):
        plan_import(path, "csv")  # type: ignore[arg-type]


def test_progress_reports_every_row(memory: Memory) -> None:
    seen: list[tuple[int, int]] = []
    import_file(memory, SAMPLE, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (39, 39)
    assert all(total == 39 for _, total in seen)


# -- export round trips ----------------------------------------------------------------------------


def _export(memory: Memory, path: Path, **owner: str) -> None:
    with path.open("w") as fh:
        for item in memory.iter_all(**owner, include_archived=True):
            fh.write(item.model_dump_json() + "\n")


def test_export_round_trip_keeps_state_and_is_idempotent(
    tmp_path: Path, memory: Memory, embedder
) -> None:
    kept, gone = memory.add(["a note without a source id", "an archived note"], user_id="ann")
    memory.add({"content": "a turn with a source id", "source_id": "t-1"}, user_id="ann")
    memory.delete(gone.id, reason="outdated")
    path = tmp_path / "export.jsonl"
    _export(memory, path, user_id="ann")

    again = import_file(memory, path)  # into the same store: everything is already there
    assert (again.rows, again.stored, again.skipped) == (3, 0, 3)
    assert len(memory.get_all(user_id="ann", include_archived=True).items) == 3

    with Memory(home=tmp_path / "other", embedder=embedder) as other:
        first = import_file(other, path)
        assert (first.stored, first.skipped, first.archived) == (3, 0, 1)
        items = other.get_all(user_id="ann", include_archived=True).items
        states = {i.memory: i.state for i in items}
        assert states == {
            "a note without a source id": MemoryState.ACTIVE,
            "an archived note": MemoryState.ARCHIVED,
            "a turn with a source id": MemoryState.ACTIVE,
        }
        assert [h.memory for h in other.search("archived note", user_id="ann")] != [
            "an archived note"
        ]
        second = import_file(other, path)
        assert (second.stored, second.skipped, second.archived) == (0, 3, 0)
        assert len(other.get_all(user_id="ann", include_archived=True).items) == 3


def test_report_counts_only_new_memories(tmp_path: Path, memory: Memory) -> None:
    path = tmp_path / "chats.jsonl"
    lines = [
        {"content": "one", "source_id": "s1", "user_id": "a"},
        {"content": "two", "source_id": "s2", "user_id": "a"},
        {"content": "two again", "source_id": "s2", "user_id": "a"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines[:1]) + "\n")
    assert import_file(memory, path).stored == 1
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    report = import_file(memory, path)
    assert (report.rows, report.stored, report.skipped) == (3, 1, 2)
    assert len(memory.get_all(user_id="a").items) == 2


# -- malformed files are ValidationErrors that say where -------------------------------------------


def _locomo(conversation: dict, **extra) -> str:
    return json.dumps([{"sample_id": "s9", "conversation": conversation, **extra}])


TURN = {"speaker": "A", "dia_id": "D1:1", "text": "hello"}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(
            _locomo({"session_1": [TURN], "session_1_date_time": 5}),
            "s9: session_1_date_time must be a string",
            id="date-int",
        ),
        pytest.param(
            _locomo({"session_1": [TURN], "session_01": [TURN]}),
            "s9: session_1 and session_01 are the same session",
            id="same-session-twice",
        ),
        pytest.param(_locomo({"session_1": [TURN]}, qa=5), "s9: 'qa' must be a list", id="qa-int"),
        pytest.param('[{"conversation": {"session_1": ' + "[" * 5000, "cannot read", id="deep"),
        pytest.param(
            _locomo({"session_1": [TURN]}).replace('"hello"', "1" + "0" * 5000),
            "cannot read",
            id="huge-int",
        ),
        pytest.param(
            _locomo({"session_1": [TURN], "session_2": [{**TURN, "dia_id": "D2:1", "text": " "}]}),
            r"x.json: s9 session_2: message content is empty",
            id="names-sample-and-session",
        ),
    ],
)
def test_bad_locomo_files_say_where(tmp_path: Path, memory: Memory, content: str, match) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ValidationError, match=match):
        import_file(memory, path, "locomo")
    assert memory.owners() == []


def test_locomo_session_keys_with_leading_zeros_are_read(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(_locomo({"session_01": [TURN], "session_01_date_time": "2024-01-02"}))
    (conv,) = read_locomo(path)
    assert [(s.index, s.date_text) for s in conv.sessions] == [(1, "2024-01-02")]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        pytest.param(
            '{"memory": "x", "provenance": "p"}', "'provenance' must be an object", id="prov"
        ),
        pytest.param(
            '{"memory": "x", "provenance": {"user_id": "a"}, "state": "gone"}',
            "'state' must be active or archived",
            id="state",
        ),
        pytest.param('{"content": ' + "9" * 5000 + "}", "digits", id="huge-int"),
        pytest.param('{"content": ' + "[" * 5000, "bad.jsonl:2", id="deep"),
        pytest.param(
            '{"content": "x", "metadata": ' + '{"a":' * 100 + "1" + "}" * 101,
            "bad.jsonl:2: .*nested more than 32",
            id="deep-metadata",
        ),
    ],
)
def test_bad_jsonl_lines_say_which(tmp_path: Path, memory: Memory, line: str, match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"content": "fine", "user_id": "a"}\n' + line + "\n")
    with pytest.raises(ValidationError, match=match):
        import_file(memory, path, user_id="a")
    assert memory.owners() == []
