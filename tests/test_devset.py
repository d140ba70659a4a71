"""The generated development set: deterministic, readable as LoCoMo, every question's
evidence real, temporal answers matching the session dates, corrections asking for the
latest statement, and `engram bench locomo` scoring it."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engram.bench.devset import generate
from engram.bench.devset.generate import dumps
from engram.bench.devset.vocab import MONTHS, WEEKDAYS
from engram.cli import app
from engram.importers.locomo import read_locomo

NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


@pytest.fixture(scope="module")
def samples() -> list[dict[str, Any]]:
    return generate(seed=3, conversations=2)


def _turns(sample: dict[str, Any]) -> dict[str, tuple[int, int, str, str]]:
    """dia_id -> (session, turn, text, session date text)."""
    conv = sample["conversation"]
    out = {}
    for key, turns in conv.items():
        match = re.fullmatch(r"session_(\d+)", key)
        if match:
            for i, turn in enumerate(turns):
                out[turn["dia_id"]] = (int(match.group(1)), i, turn["text"],
                                       conv[f"{key}_date_time"])
    return out


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert dumps(generate(7, 2)) == dumps(generate(7, 2))
    assert dumps(generate(7, 2)) != dumps(generate(8, 2))


def test_reads_as_locomo_with_every_category_and_real_evidence(
    tmp_path: Path, samples: list[dict[str, Any]]
) -> None:
    path = tmp_path / "devset.json"
    path.write_text(dumps(samples))
    conversations = read_locomo(path)
    assert len(conversations) == 2
    for conv, sample in zip(conversations, samples, strict=True):
        assert 15 <= len(conv.sessions) <= 25
        assert all(s.date is not None and len(s.turns) >= 15 for s in conv.sessions)
        assert 100 <= len(conv.questions) <= 200
        assert {q.category for q in conv.questions} == {1, 2, 3, 4}
        for q, raw in zip(conv.questions, sample["qa"], strict=True):
            assert q.evidence == raw["evidence"], q.question  # every id resolves
        multi = [q for q in conv.questions if q.category == 1]
        assert all(len({e.split(":")[0] for e in q.evidence}) == 2 for q in multi)


def test_answers_are_in_their_evidence_and_questions_paraphrase(
    samples: list[dict[str, Any]],
) -> None:
    for sample in samples:
        turns = _turns(sample)
        for q in sample["qa"]:
            if q["category"] in (1, 4):
                assert q["answer"].lower() in turns[q["evidence"][-1]][2].lower(), q
    # the question is not the evidence's words again: most questions share few of them
    words = re.compile(r"[a-z]{4,}")
    overlap = []
    for sample in samples:
        turns = _turns(sample)
        for q in sample["qa"]:
            asked = set(words.findall(q["question"].lower()))
            said = set(words.findall(" ".join(turns[e][2] for e in q["evidence"]).lower()))
            overlap.append(len(asked & said) / max(len(asked), 1))
    assert sum(overlap) / len(overlap) < 0.35


def _resolve(phrase: str, session_day: date) -> date:
    if phrase in ("this morning", "earlier today"):
        return session_day
    if phrase == "yesterday":
        return session_day - timedelta(days=1)
    if phrase == "a week ago":
        return session_day - timedelta(days=7)
    if phrase.endswith(" days ago"):
        return session_day - timedelta(days=NUMBERS[phrase.split()[0]])
    weekday = WEEKDAYS.index(phrase.removeprefix("last ").capitalize())
    back = (session_day.weekday() - weekday) % 7 or 7
    return session_day - timedelta(days=back)


def test_temporal_answers_follow_the_session_date(samples: list[dict[str, Any]]) -> None:
    checked = 0
    for sample in samples:
        turns = _turns(sample)
        for q in sample["qa"]:
            if q["category"] != 2:
                continue
            [evidence] = q["evidence"]
            _, _, text, when = turns[evidence]
            assert q["when"].lower() in text.lower()
            day, month, year = re.search(r"on (\d+) (\w+), (\d{4})", when).groups()  # type: ignore[union-attr]
            session_day = date(int(year), MONTHS.index(month) + 1, int(day))
            expected = _resolve(q["when"], session_day)
            assert q["answer"] == f"{expected.day} {MONTHS[expected.month - 1]} {expected.year}"
            checked += 1
    assert checked > 20


def test_corrections_ask_for_the_latest_statement(samples: list[dict[str, Any]]) -> None:
    corrected = 0
    for sample in samples:
        turns = _turns(sample)
        for q in sample["qa"]:
            for old in q.get("superseded", []):
                [new] = q["evidence"]
                assert turns[old][:2] < turns[new][:2]  # earlier session
                assert q["answer"].lower() not in turns[old][2].lower()
                corrected += 1
    assert corrected >= 4


def test_cli_writes_a_set_that_bench_locomo_scores(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "devset.json"
    made = runner.invoke(app, ["bench", "devset", "--out", str(path), "--conversations", "1",
                               "--seed", "5"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["conversations"] == 1
    data = json.loads(path.read_text())
    # a tiny slice keeps the run short: the first session and its questions
    conv = data[0]["conversation"]
    keep = {"session_1"}
    for key in [k for k in conv if k.startswith("session_")]:
        if key.removesuffix("_date_time") not in keep:
            del conv[key]
    ids = {t["dia_id"] for k in keep for t in conv[k]}
    data[0]["qa"] = [q for q in data[0]["qa"] if set(q["evidence"]) <= ids]
    path.write_text(json.dumps(data))
    result = runner.invoke(app, ["bench", "locomo", "--data", str(path), "--convs", "0",
                                 "--k", "5,10", "--results", str(tmp_path / "res"), "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.output.strip().splitlines()[-1])
    assert scored["questions"] > 0
    for system in ("default", "bm25", "dense"):
        assert 0.0 <= scored["systems"][system]["recall"]["10"] <= 100.0
