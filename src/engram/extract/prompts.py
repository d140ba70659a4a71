"""The LLM path's prompts, the JSON schema of each answer, and its validation. An answer
that is not valid is shown back to the model with what was wrong (a bounded number of
times) and then rejected: nothing of it is ever applied."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as SchemaError

from engram.extract.base import ExtractionError
from engram.llm.base import ChatMessage, ChatModel
from engram.types import MemoryItem

log = logging.getLogger(__name__)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Candidate(_Answer):
    type: Literal["fact", "preference", "event"]
    text: str = Field(min_length=3, max_length=1000)
    date: dt.date | None = None
    turns: list[int] = Field(default_factory=list, max_length=100)


class Extraction(_Answer):
    memories: list[Candidate] = Field(max_length=100)


class Decision(_Answer):
    action: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    target: int | None = None
    text: str | None = Field(default=None, min_length=3, max_length=1000)
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _target_when_needed(self) -> Decision:
        if self.action in ("UPDATE", "DELETE") and self.target is None:
            raise ValueError(f"{self.action} needs the number of the memory it changes")
        if self.action == "UPDATE" and self.text is None:
            raise ValueError("UPDATE needs the memory's new text")
        return self


EXTRACT_SYSTEM = """You distil a conversation into durable memories about the people in it.
Write each memory as one short, self-contained sentence that names the person.
Types: "fact" (something true about a person or their world), "preference" (a like,
dislike or wish), "event" (something that happened or will happen; give its calendar date
as YYYY-MM-DD in "date" when the turns allow it, resolving words like "yesterday" against
the date of the turn). Skip greetings and small talk. "turns" lists the numbers of the
turns a memory comes from.
Answer with one JSON object and nothing else:
{"memories": [{"type": "fact", "text": "...", "date": null, "turns": [1]}]}"""

DECIDE_SYSTEM = """You keep a memory store consistent. Given a NEW memory and the most
similar EXISTING memories (numbered), choose one action:
ADD: the new memory says something none of them says.
UPDATE: it refines or corrects existing memory "target"; "text" is the merged new text.
DELETE: it contradicts existing memory "target", which is no longer true (the new memory
is added and the old one archived).
NONE: an existing memory already says it.
Answer with one JSON object and nothing else:
{"action": "ADD", "target": null, "text": null, "reason": "..."}"""


def extraction_messages(turns: list[MemoryItem]) -> list[ChatMessage]:
    lines = []
    for i, turn in enumerate(turns, 1):
        when = turn.provenance.timestamp
        stamp = f"({when:%Y-%m-%d}) " if when else ""
        who = turn.provenance.name or turn.provenance.role or "someone"
        lines.append(f"[{i}] {stamp}{who}: {turn.memory}")
    return [
        {"role": "system", "content": EXTRACT_SYSTEM},
        {"role": "user", "content": "Conversation:\n" + "\n".join(lines)},
    ]


def decision_messages(candidate: Candidate, neighbours: list[MemoryItem]) -> list[ChatMessage]:
    shown = "\n".join(f"[{i}] ({m.type}) {m.memory}" for i, m in enumerate(neighbours, 1))
    return [
        {"role": "system", "content": DECIDE_SYSTEM},
        {
            "role": "user",
            "content": f"NEW ({candidate.type}): {candidate.text}\nEXISTING:\n{shown}",
        },
    ]


def check_extraction(answer: Extraction, turns: int) -> Extraction:
    for m in answer.memories:
        bad = [t for t in m.turns if not 1 <= t <= turns]
        if bad:
            raise ValueError(f"turns {bad} do not exist; the turns are numbered 1 to {turns}")
    return answer


def check_decision(answer: Decision, neighbours: int) -> Decision:
    if answer.target is not None and answer.action in ("UPDATE", "DELETE"):
        if not 1 <= answer.target <= neighbours:
            raise ValueError(
                f"target {answer.target} does not exist; existing memories are numbered "
                f"1 to {neighbours}"
            )
    return answer


A = TypeVar("A", bound=_Answer)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.I)


def parse_json(text: str) -> Any:
    """The JSON object in an answer (code fences and text around the braces ignored)."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the answer holds no JSON object")
    return json.loads(body[start : end + 1])


def ask(
    llm: ChatModel,
    messages: list[ChatMessage],
    schema: type[A],
    check: Callable[[A, int], A],
    limit: int,
    retries: int,
    what: str,
) -> A:
    """The model's answer as a valid `schema` that passes `check(answer, limit)`; re-asks
    up to `retries` times, showing what was wrong, then raises ExtractionError."""
    conversation = list(messages)
    problem = ""
    for attempt in range(retries + 1):
        answer = llm.complete(conversation, json_answer=True)
        try:
            return check(schema.model_validate(parse_json(answer)), limit)
        except (ValueError, SchemaError) as err:  # json.JSONDecodeError is a ValueError
            problem = _short(err)
            log.warning(
                "LLM %s answer rejected (attempt %d of %d): %s; answer began %r",
                what,
                attempt + 1,
                retries + 1,
                problem,
                answer[:120],
            )
            conversation += [
                {"role": "assistant", "content": answer},
                {
                    "role": "user",
                    "content": f"That answer is invalid: {problem}. "
                    "Answer again with only the JSON object.",
                },
            ]
    raise ExtractionError(
        f"the LLM's {what} answer was rejected {retries + 1} times; last problem: {problem}"
    )


def _short(err: Exception) -> str:
    if isinstance(err, SchemaError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in err.errors()[:5]
        )
    return str(err)
