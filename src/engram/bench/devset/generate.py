"""Put it together: conversations in the LoCoMo format, the same bytes for the same seed."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from engram.bench.devset import people, render, vocab
from engram.bench.devset.people import Line, Plan
from engram.bench.devset.questions import question
from engram.bench.devset.render import REGISTERS, Register
from engram.bench.devset.vocab import Namer


def conversation(seed: int, index: int) -> dict[str, Any]:
    """One sample: 15-25 dated sessions of 15-25 turns (more when a session holds many
    facts) between two invented people, and a question per fact."""
    rng = random.Random(f"engram-devset:{seed}:{index}")
    namer = Namer(rng)
    dated = vocab.session_dates(rng, rng.randint(15, 25))
    plan = people.plan(rng, namer, len(dated), [day for day, _ in dated])
    first, second = rng.sample(sorted(REGISTERS), 2)
    styles = (REGISTERS[first], REGISTERS[second])
    conv: dict[str, Any] = {"speaker_a": plan.names[0], "speaker_b": plan.names[1]}
    ids: dict[int, str] = {}
    for number, (_, when) in enumerate(dated, start=1):
        turns = _session(rng, namer, plan, number - 1, styles, ids)
        conv[f"session_{number}_date_time"] = when
        conv[f"session_{number}"] = turns
    qa = [
        question(
            fact, plan.names, rng,
            [ids[id(line)] for line in fact.evidence],
            [ids[id(line)] for line in fact.superseded],
        )
        for fact in plan.facts
    ]
    rng.shuffle(qa)
    return {"sample_id": f"devset-s{seed}-{index}", "conversation": conv, "qa": qa}


def _session(rng: random.Random, namer: Namer, plan: Plan, session: int,
             styles: tuple[Register, Register], ids: dict[int, str]) -> list[dict[str, str]]:
    said: list[list[Line]] = [[], []]
    for line in plan.lines:
        if line.session == session:
            said[line.person].append(line)
    for lines in said:
        rng.shuffle(lines)
    count = max(rng.randint(15, 25), 2 * max(len(s) for s in said) + 3)
    first = rng.randrange(2)
    speaker_of = [(first + t) % 2 for t in range(count)]
    placed: dict[int, Line] = {}
    for person, lines in enumerate(said):
        free = [t for t in range(1, count - 1) if speaker_of[t] == person]
        for t, line in zip(sorted(rng.sample(free, len(lines))), lines, strict=True):
            placed[t] = line
    turns = []
    for t, person in enumerate(speaker_of):
        dia_id = f"D{session + 1}:{t + 1}"
        style = styles[person]
        if t in placed:
            line = placed[t]
            ids[id(line)] = dia_id
            text = render.statement(line.template, line.slots, style, rng, namer)
        else:
            position = "first" if t == 0 else "last" if t == count - 1 else "middle"
            text = render.filler(rng, namer, style, position)
        turns.append({"speaker": plan.names[person], "dia_id": dia_id, "text": text})
    return turns


def generate(seed: int = 0, conversations: int = 10) -> list[dict[str, Any]]:
    return [conversation(seed, i) for i in range(conversations)]


def dumps(samples: list[dict[str, Any]]) -> str:
    return json.dumps(samples, indent=1, ensure_ascii=True) + "\n"


def write(path: Path, seed: int = 0, conversations: int = 10) -> dict[str, Any]:
    """Write the file; return what it holds (conversations, sessions, turns, questions per
    category)."""
    samples = generate(seed, conversations)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(samples), encoding="utf-8")
    return summary(samples)


def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    sessions = [k for s in samples for k in s["conversation"] if _is_session(k)]
    turns = sum(len(s["conversation"][k]) for s in samples for k in s["conversation"]
                if _is_session(k))
    categories = Counter(q["category"] for s in samples for q in s["qa"])
    return {
        "conversations": len(samples),
        "sessions": len(sessions),
        "turns": turns,
        "questions": sum(categories.values()),
        "by_category": {str(c): n for c, n in sorted(categories.items())},
    }


def _is_session(key: str) -> bool:
    return key.startswith("session_") and not key.endswith("_date_time")
