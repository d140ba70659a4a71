"""The table of operations: every memory verb, its parameters, and where each surface
puts them. Descriptions are written once here and shown by REST (OpenAPI), MCP (tool
schemas) and the CLI (--help)."""

from __future__ import annotations

from typing import Any

from engram.errors import ValidationError
from engram.ops.spec import REQUIRED, Operation, Param, Surface

API = frozenset({Surface.PYTHON, Surface.REST, Surface.MCP})
SURFACES = frozenset({Surface.REST, Surface.MCP, Surface.CLI})  # not Python: see compose

USER = Param(
    "user_id",
    str | None,
    "Owner: a user id (keys bound to an owner may omit it).",
    default=None,
    flags=("--user", "-u"),
)
AGENT = Param(
    "agent_id",
    str | None,
    "Owner when no user_id is given; with a user_id, narrows to this agent.",
    default=None,
    flags=("--agent", "-a"),
)
SESSION = Param("session_id", str | None, "Session id.", default=None, flags=("--session", "-s"))
MEMORY_ID = Param(
    "memory_id", str, "Memory id (the CLI takes a unique prefix).", kind="id", argument=True
)
REASON = Param("reason", str | None, "Why (kept in history).", default=None)
TYPES = Param(
    "types",
    list[str] | None,
    "Only these memory types.",
    default=None,
    flags=("--type",),
    query="type",
)
SINCE = Param("since", str | None, "Only memories from this ISO time on.", None, kind="time")
UNTIL = Param("until", str | None, "Only memories up to this ISO time.", None, kind="time")
FILTERS = Param(
    "filters",
    dict[str, Any] | None,
    'Metadata conditions, e.g. {"topic": "travel", "n": {"$gte": 3}} (CLI: key=value).',
    default=None,
    kind="meta",
    flags=("--where",),
)
METADATA = Param(
    "metadata",
    dict[str, Any] | None,
    "Your JSON metadata (CLI: key=value, repeatable).",
    default=None,
    kind="meta",
    flags=("--meta",),
)
CUBES = Param(
    "cubes",
    list[str] | None,
    'Read only these of the owner\'s cube and the cubes it mounts, e.g. ["agent:team"] '
    "(default: all of them; a key reads a mounted cube only when granted it).",
    default=None,
    kind="cubes",
    flags=("--cube",),
)
CUBE = Param(
    "cube",
    str,
    "A cube, by its owner: user:NAME or agent:NAME.",
    kind="cube",
    argument=True,
)
QUERY = Param("query", str, "What to look for.", argument=True, limits="max limits.max_query_chars")


def _message(values: dict[str, Any]) -> dict[str, Any]:
    """text, role and name (REST, MCP, CLI) or messages (REST, Python) become `messages`."""
    text, messages = values.pop("text", None), values.pop("messages", None)
    role, name = values.pop("role", "user"), values.pop("name", None)
    if (text is None) == (messages is None):
        raise ValidationError("give exactly one of text or messages")
    if text is not None:
        messages = {"role": role, "content": text, "name": name}
    elif role != "user" or name is not None:
        raise ValidationError("role and name go inside each message when messages are given")
    return {"messages": messages, **values}


ADD = Operation(
    name="add",
    method="add",
    summary="Add memories",
    doc="Remember `text` (one message said by `role`, optionally by speaker `name`) or "
    "`messages` (a conversation, one memory per message). Returns what was stored, with "
    "ids. A retry with the same idempotency key stores nothing new.",
    write=True,
    target="owner",
    provenance=True,
    http=("POST", "/memories"),
    status=201,
    tool="add_memory",
    command="add",
    envelope="items",
    compose=_message,
    params=(
        Param(
            "text",
            str | None,
            "One message's text (CLI: '-' reads stdin).",
            default=None,
            argument=True,
            cli_default=REQUIRED,
            surfaces=SURFACES,
            limits="max limits.max_text_chars",
        ),
        Param(
            "messages",
            list[dict[str, Any]] | None,
            "A conversation: {role, content, name?, timestamp?, source_id?} each.",
            default=None,
            surfaces=frozenset({Surface.PYTHON, Surface.REST}),
        ),
        Param(
            "role",
            str,
            "Message role: user, assistant, system, tool ...",
            "user",
            surfaces=SURFACES,
        ),
        Param("name", str | None, "Speaker name.", None, surfaces=SURFACES),
        USER,
        AGENT,
        SESSION,
        METADATA,
        Param("timestamp", str | None, "When it happened (ISO-8601).", None, kind="time"),
        Param(
            "memory_type",
            str,
            "Memory type: turn, fact, preference, summary ...",
            default="turn",
            wire="type",
            flags=("--type",),
        ),
        Param(
            "ttl",
            float | None,
            "Seconds until gc archives it (not with expires_at).",
            None,
            limits="> 0",
        ),
        Param(
            "expires_at",
            str | None,
            "When gc archives it (ISO-8601; not with ttl).",
            None,
            kind="time",
        ),
        Param(
            "idempotency_key",
            str | None,
            "A retry with the same key returns the first result instead of writing again "
            "(REST: the Idempotency-Key header).",
            default=None,
        ),
    ),
)

SEARCH = Operation(
    name="search",
    method="search",
    summary="Search memories",
    doc="The memories most relevant to `query`, best first, with score and provenance.",
    write=False,
    target="owner",
    http=("POST", "/search"),
    tool="search_memories",
    command="search",
    envelope="hits",
    params=(
        QUERY,
        USER,
        AGENT,
        SESSION,
        Param(
            "k",
            int | None,
            "How many hits (default search.default_k).",
            None,
            flags=("-k",),
            cli_default=5,
            limits="1 to search.max_k",
        ),
        FILTERS,
        TYPES,
        SINCE,
        UNTIL,
        Param("pipeline", str | None, "A registered retrieval pipeline.", None),
        CUBES,
    ),
)

FEEDBACK = Operation(
    name="feedback",
    method="feedback",
    summary="Report feedback on an answer",
    doc="After answering `query` from memories: the ids the answer cited or used, and the "
    "retrieved ones that were wrong. Recorded, and one step of the owner's reranker; all "
    "ids must be the owner's, else nothing is recorded.",
    write=True,
    target="owner",
    http=("POST", "/feedback"),
    tool="memory_feedback",
    command="feedback",
    params=(
        Param("query", str, "The query (question) the answer was for.", argument=True),
        Param("cited", list[str], "Ids of memories the answer cited.", (), kind="ids"),
        Param("used", list[str], "Ids of memories the answer used without citing.", (), kind="ids"),
        Param("wrong", list[str], "Ids of retrieved memories that were wrong.", (), kind="ids"),
        USER,
        AGENT,
    ),
)

LIST = Operation(
    name="list",
    method="get_all",
    summary="List memories",
    doc="A page of the owner's memories, oldest first; pass next_cursor back for the next.",
    write=False,
    target="owner",
    http=("GET", "/memories"),
    tool="list_memories",
    command="list",
    params=(
        USER,
        AGENT,
        SESSION,
        Param("limit", int, "Page size.", 100, cli_default=50, limits="1-1000"),
        Param("cursor", str | None, "next_cursor of the previous page.", None),
        FILTERS,
        TYPES,
        SINCE,
        UNTIL,
        Param("include_archived", bool, "Archived memories too.", False, flags=("--archived",)),
    ),
)

GET = Operation(
    name="get",
    method="get",
    summary="Get a memory",
    doc="One memory by id, archived ones too, with provenance and statistics.",
    write=False,
    target="memory",
    http=("GET", "/memories/{memory_id}"),
    tool="get_memory",
    command="show",
    params=(MEMORY_ID, USER, AGENT),
)

UPDATE = Operation(
    name="update",
    method="update",
    summary="Update a memory",
    doc="Correct a memory: new text and/or metadata become a new version; the old one "
    "stays in the history.",
    write=True,
    target="memory",
    provenance=True,
    http=("PATCH", "/memories/{memory_id}"),
    tool="update_memory",
    command="update",
    params=(
        MEMORY_ID,
        Param("text", str | None, "New text (re-embedded).", None, argument=True),
        METADATA,
        REASON,
        USER,
        AGENT,
    ),
)

DELETE = Operation(
    name="delete",
    method="delete",
    summary="Delete a memory",
    doc="Archive a memory (hidden from search, restorable); hard erases it, its history and "
    "every KV block and adapter built from it, for good.",
    write=True,
    target="memory",
    provenance=True,
    http=("DELETE", "/memories/{memory_id}"),
    tool="delete_memory",
    command="delete",
    params=(
        MEMORY_ID,
        Param("hard", bool, "Erase for good (GDPR) instead of archiving.", False),
        REASON,
        USER,
        AGENT,
    ),
)

RESTORE = Operation(
    name="restore",
    method="restore",
    summary="Restore a memory",
    doc="Bring an archived memory back (a 'restore' version is recorded).",
    write=True,
    target="memory",
    provenance=True,
    http=("POST", "/memories/{memory_id}/restore"),
    tool="restore_memory",
    command="restore",
    body_optional=True,
    params=(MEMORY_ID, REASON, USER, AGENT),
)

HISTORY = Operation(
    name="history",
    method="history",
    summary="Memory history",
    doc="Every version of a memory, oldest first: text, event, reason, time.",
    write=False,
    target="memory",
    http=("GET", "/memories/{memory_id}/history"),
    tool="memory_history",
    command="history",
    envelope="versions",
    params=(MEMORY_ID, USER, AGENT),
)

TIERS = Operation(
    name="tiers",
    method="tiers",
    summary="Memory tiers",
    doc="Which tiers hold a memory: its text, and every KV block and adapter version built "
    "from it (current: built from its present version; the scheduler's moves are in its "
    "history).",
    write=False,
    target="memory",
    http=("GET", "/memories/{memory_id}/tiers"),
    tool="memory_tiers",
    command="where",
    envelope="tiers",
    params=(MEMORY_ID, USER, AGENT),
)

ANSWER = Operation(
    name="answer",
    method="answer",
    summary="Answer a question from memories",
    doc="Answer `question` from the owner's memories with a language model. Routes: text "
    "(retrieve, put the memories into the prompt), kv (the same memories, read from a "
    "stored KV block: built on a miss, reused on a hit), lora (the owner's adapter, no "
    "retrieval), auto (a router picks). Returns the answer, the memories used with "
    "provenance, the route and why, and timings.",
    write=False,
    target="owner",
    http=("POST", "/answer"),
    tool="answer_question",
    command="ask",
    params=(
        Param(
            "question",
            str,
            "The question to answer.",
            argument=True,
            limits="max limits.max_query_chars",
        ),
        USER,
        AGENT,
        Param("route", str, "auto, text, kv or lora.", "auto"),
        Param(
            "k",
            int | None,
            "Memories in the prompt (default answer.k).",
            None,
            flags=("-k",),
            limits="1 to search.max_k",
        ),
        Param(
            "max_tokens",
            int | None,
            "Longest answer in tokens (default answer.max_tokens).",
            None,
            limits="1 to 4096",
        ),
        Param(
            "model",
            str | None,
            "The answering model (default answer.model): a registered "
            "name, a checkpoint directory or engram-lm.",
            None,
            surfaces=frozenset({Surface.PYTHON, Surface.CLI}),
        ),
        CUBES,
    ),
)

MOUNT = Operation(
    name="mount",
    method="mount",
    summary="Mount a cube",
    doc="Mount another owner's cube read-only beside the owner's own: its search and answer "
    "read it too, each hit naming its cube. A key reads a mounted cube only when granted "
    "it (engram keys create --read). Mounting again changes nothing.",
    write=True,
    target="owner",
    http=("POST", "/mounts"),
    status=201,
    tool="mount_cube",
    command="mount",
    params=(CUBE, USER, AGENT),
)

UNMOUNT = Operation(
    name="unmount",
    method="unmount",
    summary="Unmount a cube",
    doc="Stop reading a mounted cube; returns the mount removed.",
    write=True,
    target="owner",
    http=("DELETE", "/mounts/{cube}"),
    tool="unmount_cube",
    command="unmount",
    params=(CUBE, USER, AGENT),
)

MOUNTS = Operation(
    name="mounts",
    method="mounts",
    summary="List mounts",
    doc="The cubes an owner mounts, in the order mounted.",
    write=False,
    target="owner",
    http=("GET", "/mounts"),
    tool="list_mounts",
    command="mounts",
    envelope="mounts",
    params=(USER, AGENT),
)

OPERATIONS: tuple[Operation, ...] = (
    ADD,
    SEARCH,
    FEEDBACK,
    LIST,
    GET,
    UPDATE,
    DELETE,
    RESTORE,
    HISTORY,
    TIERS,
    ANSWER,
    MOUNT,
    UNMOUNT,
    MOUNTS,
)
BY_NAME = {op.name: op for op in OPERATIONS}

__all__ = ["BY_NAME", "OPERATIONS", "REQUIRED"]
