"""Reader for conversations in the LoCoMo format (Maharana et al., ACL 2024).

Accepts any file with the same shape: a list of samples with `sample_id`, `conversation`
(`speaker_a`, `speaker_b`, `session_<n>` lists of turns with `speaker`, `dia_id`, `text` or
`clean_text`, optional `blip_caption`; `session_<n>_date_time`) and optional `qa`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engram.errors import ValidationError

_SESSION_KEY = re.compile(r"^session_(\d+)$")
_LOCOMO_TIME = re.compile(
    r"^\s*(\d{1,2}):(\d{2})\s*([ap]\.?m\.?)\s+on\s+(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})\s*$",
    re.IGNORECASE,
)
_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_EVIDENCE_SPLIT = re.compile(r"[;,\s]+")


@dataclass(frozen=True)
class Turn:
    dia_id: str
    speaker: str
    text: str


@dataclass(frozen=True)
class Session:
    index: int
    date_text: str | None
    date: datetime | None
    turns: list[Turn]


@dataclass(frozen=True)
class Question:
    question: str
    answer: str | None
    category: int | None
    evidence: list[str]  # resolvable dia_ids only


@dataclass(frozen=True)
class Conversation:
    sample_id: str
    speakers: tuple[str, str]
    sessions: list[Session]
    questions: list[Question] = field(default_factory=list)

    @property
    def turns(self) -> list[tuple[Session, Turn]]:
        return [(s, t) for s in self.sessions for t in s.turns]


def parse_session_time(text: str | None) -> datetime | None:
    """'1:56 pm on 8 May, 2023' -> datetime; ISO-8601 also accepted; else None."""
    if not text:
        return None
    match = _LOCOMO_TIME.match(text)
    if match:
        hour, minute, ampm, day, month, year = match.groups()
        month_no = _MONTHS.get(month.lower())
        if month_no is None:
            return None
        h = int(hour) % 12 + (12 if ampm.lower().startswith("p") else 0)
        try:
            return datetime(int(year), month_no, int(day), h, int(minute))
        except ValueError:
            return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def turn_text(turn: dict[str, Any]) -> str:
    """The turn as the paper's RAG saw it: text, plus '[shares <caption>]' for images."""
    text = turn.get("text", turn.get("clean_text"))
    if not isinstance(text, str):
        raise ValidationError(f"turn {turn.get('dia_id')!r} has no text")
    caption = turn.get("blip_caption")
    return f"{text} [shares {caption}]" if isinstance(caption, str) and caption else text


def _session_keys(conv: dict[str, Any], sample_id: str) -> list[tuple[int, str]]:
    """(number, key) of every `session_<n>` list, by number; `session_01` counts as 1."""
    found: dict[int, str] = {}
    for key in conv:
        match = _SESSION_KEY.match(key)
        if match is None:
            continue
        n = int(match.group(1))
        if n in found:
            raise ValidationError(f"{sample_id}: {found[n]} and {key} are the same session")
        found[n] = key
    return sorted(found.items())


def _sessions(conv: dict[str, Any], sample_id: str) -> list[Session]:
    sessions = []
    for n, key in _session_keys(conv, sample_id):
        raw = conv[key]
        if not isinstance(raw, list):
            raise ValidationError(f"{sample_id}: {key} is not a list of turns")
        date_text = conv.get(f"{key}_date_time")
        if date_text is not None and not isinstance(date_text, str):
            raise ValidationError(f"{sample_id}: {key}_date_time must be a string")
        turns = []
        for j, turn in enumerate(raw):
            if not isinstance(turn, dict) or "dia_id" not in turn or "speaker" not in turn:
                raise ValidationError(
                    f"{sample_id}: {key} turn {j} needs 'speaker', 'dia_id' and 'text'"
                )
            turns.append(Turn(str(turn["dia_id"]), str(turn["speaker"]), turn_text(turn)))
        sessions.append(Session(n, date_text, parse_session_time(date_text), turns))
    return sessions


def clean_evidence(evidence: Any, known: set[str]) -> list[str]:
    """Split evidence strings on ';', ',' and whitespace; keep ids that resolve."""
    if not isinstance(evidence, list):
        return []
    ids: list[str] = []
    for item in evidence:
        for token in _EVIDENCE_SPLIT.split(str(item)):
            if token in known and token not in ids:
                ids.append(token)
    return ids


def parse_conversation(sample: Any, position: int) -> Conversation:
    if not isinstance(sample, dict) or not isinstance(sample.get("conversation"), dict):
        raise ValidationError(f"sample {position} has no 'conversation' object")
    sample_id = str(sample.get("sample_id", f"conv-{position}"))
    conv = sample["conversation"]
    sessions = _sessions(conv, sample_id)
    if not sessions:
        raise ValidationError(f"{sample_id}: no session_<n> lists found")
    known = {t.dia_id for s in sessions for t in s.turns}
    qa = sample.get("qa") or []
    if not isinstance(qa, list):
        raise ValidationError(f"{sample_id}: 'qa' must be a list of questions")
    questions = [
        Question(
            question=str(q["question"]),
            answer=None if q.get("answer") is None else str(q["answer"]),
            category=_category(q.get("category")),
            evidence=clean_evidence(q.get("evidence"), known),
        )
        for q in qa
        if isinstance(q, dict) and isinstance(q.get("question"), str)
    ]
    speakers = (str(conv.get("speaker_a", "")), str(conv.get("speaker_b", "")))
    return Conversation(sample_id, speakers, sessions, questions)


def _category(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_locomo(path: Path | str) -> list[Conversation]:
    """Parse a LoCoMo-format JSON file; raise ValidationError naming the file and what is
    wrong (the line for bad JSON, the sample and session for a bad sample)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError as err:
        raise ValidationError(f"cannot read {path} as JSON: nested too deeply") from err
    except json.JSONDecodeError as err:
        raise ValidationError(
            f"{path}:{err.lineno}: cannot read {path} as JSON: {err.msg} (column {err.colno})"
        ) from err
    except (OSError, ValueError) as err:  # ValueError: bad UTF-8, huge integers
        raise ValidationError(f"cannot read {path} as JSON: {err}") from err
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise ValidationError(f"{path}: expected a list of LoCoMo samples")
    try:
        return [parse_conversation(sample, i) for i, sample in enumerate(data)]
    except ValidationError as err:
        raise ValidationError(f"{path}: {err}") from err


def _is_sample(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("conversation"), dict)


def looks_like_locomo(path: Path) -> bool:
    """Sniff the first non-blank line: JSON lines when it is a whole JSON value by itself
    (unless that value is a LoCoMo sample or a list of them); a LoCoMo document otherwise."""
    with path.open("rb") as fh:
        first = next((line for line in fh if line.strip()), b"")
    try:
        head = first.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False  # the JSON-lines reader says which line is not UTF-8
    if not head.startswith(("[", "{")):
        return False
    try:
        value = json.loads(head)
    except (ValueError, RecursionError):
        return True  # the first line is not a whole value: a document over several lines
    if isinstance(value, list):
        return bool(value) and all(_is_sample(sample) for sample in value)
    return _is_sample(value)
