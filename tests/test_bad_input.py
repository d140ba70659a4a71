"""Bad input at the public boundary: a precise ValidationError (or NotFoundError), nothing written.

Each case checks the row counts of every data table before and after the failing call.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from _engram_helpers import db_path, table_counts
from engram import (
    AddRequest,
    EngramError,
    Memory,
    Message,
    NotFoundError,
    ValidationError,
)

LIMITS = {"max_text_chars": 100, "max_query_chars": 50, "max_batch": 5, "max_metadata_bytes": 200}


@pytest.fixture
def mem(tmp_path, embedder) -> Iterator[Memory]:
    """A memory with small limits and one existing memory for alice."""
    m = Memory(home=tmp_path, embedder=embedder, limits=LIMITS)
    m.add(
        ["The sunset over the ocean was orange.", "I parked the car on level 3."],
        user_id="alice",
        metadata={"kind": "note", "n": 1},
    )
    try:
        yield m
    finally:
        m.close()


@contextmanager
def unchanged(m: Memory) -> Iterator[None]:
    before = table_counts(db_path(m.home))
    snapshot = [i.model_dump() for i in m.get_all(user_id="alice", include_archived=True).items]
    yield
    assert table_counts(db_path(m.home)) == before
    after = [i.model_dump() for i in m.get_all(user_id="alice", include_archived=True).items]
    assert after == snapshot


def _rejects(m: Memory, call: Callable[[], Any], match: str, err: type = ValidationError) -> None:
    with unchanged(m), pytest.raises(err, match=match) as info:
        call()
    assert isinstance(info.value, EngramError)


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- add: texts and messages -----------------------------------------------------------------------

ADD_CASES = [
    pytest.param("", "message content is empty", id="empty"),
    pytest.param("   \n\t  ", "message content is empty", id="whitespace"),
    pytest.param("x" * 101, "101 characters; the limit is 100", id="oversized"),
    pytest.param(b"caf\xc3", "not valid UTF-8", id="invalid-utf8-bytes"),
    pytest.param(b"\xff\xfe\xfd", "not valid UTF-8", id="invalid-utf8-bytes-2"),
    pytest.param("abc\ud800def", "lone surrogate", id="lone-surrogate"),
    pytest.param("before\x00after", "NUL character", id="nul"),
    pytest.param(
        123, "messages must be a string, a message dict or a list of them, got int", id="int"
    ),
    pytest.param(None, "got NoneType", id="none"),
    pytest.param(4.5, "got float", id="float"),
    pytest.param([], "messages is an empty list", id="empty-list"),
    pytest.param(["ok"] * 6, "6 messages in one add; the limit is 5", id="too-many"),
    pytest.param({"content": 5}, "message content must be a string, got int", id="int-content"),
    pytest.param({"content": None}, "must be a string, got NoneType", id="none-content"),
    pytest.param({"content": ["a"]}, "must be a string, got list", id="list-content"),
    pytest.param({"role": "user"}, "message has no 'content'", id="no-content"),
    pytest.param({"content": "hi", "mood": "happy"}, "message is invalid: mood", id="extra-key"),
    pytest.param({"content": "hi", "role": 7}, "message is invalid: role", id="bad-role"),
    pytest.param(
        {"content": "hi", "timestamp": "last tuesday"},
        "message timestamp 'last tuesday' is not an ISO-8601",
        id="bad-message-timestamp",
    ),
    pytest.param(
        {"content": "hi", "timestamp": 12},
        "message timestamp must be an ISO-8601 string or a datetime, not the number 12",
        id="numeric-message-timestamp",
    ),
    pytest.param(["fine", ""], "message 1 content is empty", id="second-empty"),
    pytest.param(
        ["fine", "also fine", 7], "message 2 must be a string or a dict, got int", id="third-int"
    ),
    pytest.param([Message(content="   ")], "message content is empty", id="blank-Message"),
    pytest.param(
        [{"content": "ok"}, {"content": "y" * 101}],
        "message 1 content has 101",
        id="second-oversized",
    ),
]


@pytest.mark.parametrize(("messages", "match"), ADD_CASES)
def test_add_rejects_bad_messages(mem: Memory, messages: Any, match: str) -> None:
    _rejects(mem, lambda: mem.add(messages, user_id="alice"), match)


def test_text_at_the_limit_is_accepted(mem: Memory) -> None:
    [item] = mem.add("x" * 100, user_id="alice")
    assert len(item.memory) == 100


def test_valid_utf8_bytes_are_decoded(mem: Memory) -> None:
    [item] = mem.add("café ☕".encode(), user_id="alice")
    assert item.memory == "café ☕"


# -- add: metadata, type, time, owner, ids ---------------------------------------------------------


class _Opaque:
    pass


ADD_KWARG_CASES = [
    pytest.param({"metadata": "tag=1"}, "metadata must be a JSON object, got str", id="meta-str"),
    pytest.param({"metadata": ["a"]}, "metadata must be a JSON object, got list", id="meta-list"),
    pytest.param(
        {"metadata": {"a": _Opaque()}}, "metadata is not JSON-serialisable", id="meta-object"
    ),
    pytest.param({"metadata": {"a": {1, 2}}}, "metadata is not JSON-serialisable", id="meta-set"),
    pytest.param(
        {"metadata": {"a": float("nan")}}, "metadata is not JSON-serialisable", id="meta-nan"
    ),
    pytest.param({"metadata": {1: "a"}}, "metadata keys must be strings", id="meta-int-key"),
    pytest.param({"metadata": {"blob": "z" * 300}}, "the limit is 200", id="meta-too-big"),
    pytest.param({"metadata": {"a": "bad\ud800"}}, "metadata", id="meta-lone-surrogate"),
    pytest.param({"metadata": {"bad\udfff": 1}}, "metadata", id="meta-key-lone-surrogate"),
    pytest.param(
        {"memory_type": "thought"},
        "unknown memory type 'thought'; use one of turn",
        id="unknown-type",
    ),
    pytest.param({"memory_type": ""}, "unknown memory type", id="empty-type"),
    pytest.param(
        {"timestamp": "yesterday"}, "timestamp 'yesterday' is not an ISO-8601", id="ts-garbage"
    ),
    pytest.param({"timestamp": "2024-13-45"}, "is not an ISO-8601", id="ts-impossible-date"),
    pytest.param(
        {"timestamp": 1700000000}, "timestamp must be an ISO-8601 string or a datetime", id="ts-int"
    ),
    pytest.param({"timestamp": "0001-01-01T00:00:00+05:00"}, "timestamp", id="ts-underflows-utc"),
    pytest.param({"timestamp": "9999-12-31T23:59:59-05:00"}, "timestamp", id="ts-overflows-utc"),
    pytest.param({"session_id": ""}, "session_id must be a non-empty string", id="empty-session"),
    pytest.param({"session_id": "s\n1"}, "session_id must be", id="control-char-session"),
    pytest.param({"source": ""}, "source must be a non-empty string", id="empty-source"),
    pytest.param({"source": 5}, "source must be", id="int-source"),
]


@pytest.mark.parametrize(("kwargs", "match"), ADD_KWARG_CASES)
def test_add_rejects_bad_arguments(mem: Memory, kwargs: dict[str, Any], match: str) -> None:
    _rejects(mem, lambda: mem.add("A perfectly fine memory.", user_id="alice", **kwargs), match)


OWNER_CASES = [
    pytest.param({}, "give user_id or agent_id", id="missing-owner"),
    pytest.param({"session_id": "s1"}, "give user_id or agent_id", id="session-only"),
    pytest.param({"user_id": ""}, "user_id must be a non-empty string", id="empty-user"),
    pytest.param({"user_id": "   "}, "user_id must be", id="blank-user"),
    pytest.param({"user_id": "al\x00ice"}, "user_id must be", id="nul-user"),
    pytest.param({"user_id": "a" * 129}, "at most 128 printable characters", id="long-user"),
    pytest.param({"user_id": 42}, "user_id must be", id="int-user"),
    pytest.param({"agent_id": ["x"]}, "agent_id must be", id="list-agent"),
    pytest.param({"user_id": "al\ud800ice"}, "user_id", id="lone-surrogate-user"),
]


@pytest.mark.parametrize(("kwargs", "match"), OWNER_CASES)
def test_add_rejects_bad_owner(mem: Memory, kwargs: dict[str, Any], match: str) -> None:
    _rejects(mem, lambda: mem.add("Some text.", **kwargs), match)


@pytest.mark.parametrize(
    ("message", "match"),
    [
        pytest.param({"content": "hi", "name": "Al\ud800"}, "name", id="lone-surrogate-name"),
        pytest.param({"content": "hi", "role": "us\udc00er"}, "role", id="lone-surrogate-role"),
        pytest.param(
            {"content": "hi", "source_id": "D\ud8001"}, "source_id", id="lone-surrogate-source-id"
        ),
    ],
)
def test_add_rejects_unencodable_message_fields(mem: Memory, message: dict, match: str) -> None:
    _rejects(mem, lambda: mem.add(message, user_id="alice"), match)


def test_user_id_of_exactly_128_chars_is_accepted(mem: Memory) -> None:
    [item] = mem.add("ok", user_id="u" * 128)
    assert item.provenance.owner == "user:" + "u" * 128


def test_weird_metadata_keys_round_trip(mem: Memory) -> None:
    meta = {
        "": 1,
        "with space": 2,
        "dots.in.key": 3,
        "ключ": 4,
        'quote"key': 5,
        "$in": 6,
        "emoji 🎉": "value ☃",
    }
    [item] = mem.add("Odd keys.", user_id="alice", metadata=meta)
    assert mem.get(item.id).metadata == meta
    # a dotted key is one key, not a JSON path into nested objects
    assert [i.id for i in mem.get_all(user_id="alice", filters={"dots.in.key": 3}).items] == [
        item.id
    ]
    for key in ("with space", "ключ", 'quote"key', "", "$in", "a'b", "x" * 129):
        _rejects(
            mem, lambda k=key: mem.get_all(user_id="alice", filters={k: 1}), "metadata filter key"
        )


# -- search ----------------------------------------------------------------------------------------

SEARCH_CASES = [
    pytest.param({"query": ""}, "query is empty", id="empty-query"),
    pytest.param({"query": " \t\n"}, "query is empty", id="blank-query"),
    pytest.param({"query": None}, "query must be a string, got NoneType", id="none-query"),
    pytest.param({"query": 42}, "query must be a string, got int", id="int-query"),
    pytest.param({"query": "sun\x00set"}, "query contains a NUL character", id="nul-query"),
    pytest.param({"query": "sun\udc80set"}, "query is not valid UTF-8", id="surrogate-query"),
    pytest.param({"query": b"\xff"}, "query is not valid UTF-8", id="bad-bytes-query"),
    pytest.param({"query": "q" * 51}, "query has 51 characters; the limit is 50", id="long-query"),
    pytest.param({"k": 0}, "k must be an integer from 1 to 1000", id="k0"),
    pytest.param({"k": -1}, "k must be an integer from 1 to 1000", id="k-negative"),
    pytest.param({"k": 1001}, "k must be an integer from 1 to 1000", id="k-too-big"),
    pytest.param({"k": True}, "k must be an integer", id="k-bool"),
    pytest.param({"k": 2.0}, "k must be an integer", id="k-float"),
    pytest.param({"k": "3"}, "k must be an integer", id="k-str"),
    pytest.param({"filters": "kind=note"}, "filters must be a dict", id="filters-str"),
    pytest.param(
        {"filters": {"kind": {"$regex": "n.*"}}},
        "unknown metadata filter operator '\\$regex'; use one of \\$eq",
        id="op-regex",
    ),
    pytest.param(
        {"filters": {"kind": {"$nin": ["a"]}}}, "unknown metadata filter operator", id="op-nin"
    ),
    pytest.param(
        {"filters": {"kind": {"eq": "note"}}},
        "unknown metadata filter operator 'eq'",
        id="op-no-dollar",
    ),
    pytest.param({"filters": {"kind": {}}}, "kind", id="op-empty-dict"),
    pytest.param(
        {"filters": {"kind": {"$in": []}}}, "kind.\\$in needs a non-empty list", id="in-empty"
    ),
    pytest.param(
        {"filters": {"kind": {"$in": "note"}}}, "needs a non-empty list", id="in-not-list"
    ),
    pytest.param({"filters": {"kind": {"$in": [["a"]]}}}, "values must be scalars", id="in-nested"),
    pytest.param({"filters": {"n": {"$gt": [1]}}}, "n.\\$gt value must be a scalar", id="gt-list"),
    pytest.param(
        {"filters": {"kind": ["note"]}}, "kind.\\$eq value must be a scalar", id="eq-list"
    ),
    pytest.param({"filters": {"bad key!": 1}}, "metadata filter key 'bad key!'", id="bad-key"),
    pytest.param(
        {"filters": {"a;DROP TABLE memories": 1}}, "metadata filter key", id="injection-key"
    ),
    pytest.param({"types": "thought"}, "unknown memory type 'thought'", id="bad-type"),
    pytest.param({"types": ["fact", "bogus"]}, "unknown memory type 'bogus'", id="bad-type-list"),
    pytest.param({"since": "soon"}, "since 'soon' is not an ISO-8601", id="bad-since"),
    pytest.param({"until": 5}, "until must be an ISO-8601 string or a datetime", id="bad-until"),
    pytest.param(
        {"since": "2024-02-01", "until": "2024-01-01"},
        "since is later than until",
        id="since-after-until",
    ),
    pytest.param({"since": "0001-01-01T00:00:00+05:00"}, "since", id="since-underflows-utc"),
    pytest.param({"until": "9999-12-31T23:59:59-05:00"}, "until", id="until-overflows-utc"),
    pytest.param({"session_id": ""}, "session_id must be", id="bad-session"),
    pytest.param({"user_id": None}, "give user_id or agent_id", id="no-owner"),
    pytest.param({"user_id": "a\x7fb"}, "user_id must be", id="del-char-owner"),
]


@pytest.mark.parametrize(("kwargs", "match"), SEARCH_CASES)
def test_search_rejects_bad_input(mem: Memory, kwargs: dict[str, Any], match: str) -> None:
    args = {"query": "sunset", "user_id": "alice", **kwargs}
    query = args.pop("query")
    _rejects(mem, lambda: mem.search(query, **args), match)


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({"kind": {"$regex": "x"}}, id="unknown-op"),
        pytest.param({"bad key!": 1}, id="bad-key"),
        pytest.param({"kind": {}}, id="empty-op"),
    ],
)
def test_bad_filters_are_refused_even_for_an_owner_without_memories(mem: Memory, filters) -> None:
    """Validation must not depend on whether the owner happens to have a cube yet."""
    _rejects(
        mem, lambda: mem.search("sunset", user_id="newcomer", filters=filters), "metadata filter"
    )
    _rejects(mem, lambda: mem.get_all(user_id="newcomer", filters=filters), "metadata filter")


def test_unknown_pipeline_is_refused(mem: Memory) -> None:
    _rejects(
        mem,
        lambda: mem.search("sunset", user_id="alice", pipeline="magic"),
        "unknown retrieval pipeline 'magic'; known: adaptive, bm25, dense",
    )


FTS_QUERIES = [
    '"sunset',
    'sunset"',
    '"sunset ocean"',
    "NEAR(sunset ocean",
    "NEAR(sunset, ocean, 2)",
    "sunset AND OR NOT ocean",
    "AND OR NOT sunset",
    "sunset*",
    "^sunset",
    "body:sunset",
    "cube:sunset",
    "col: sunset",
    "(sunset",
    "sunset))",
    "((sunset) AND (",
    "sunset's",
    "'sunset'",
    "sunset -ocean",
    "sunset + ocean",
    "{sunset}",
    "sunset; DROP TABLE memories; --",
    "SUNSET",
    "sunsets",
]


@pytest.mark.parametrize("query", FTS_QUERIES)
@pytest.mark.parametrize("pipeline", ["bm25", "hybrid"])
def test_fts_operator_queries_are_plain_words(mem: Memory, query: str, pipeline: str) -> None:
    with unchanged(mem):
        hits = mem.search(query, user_id="alice", pipeline=pipeline)
    assert hits, query
    assert hits[0].memory == "The sunset over the ocean was orange.", query


@pytest.mark.parametrize("query", ['"', "*", "^", "(", ")", "'", "NOT", "AND OR", ":", '""""', "-"])
def test_queries_without_words_do_not_raise(mem: Memory, query: str) -> None:
    with unchanged(mem):
        assert mem.search(query, user_id="alice", pipeline="bm25") == []
        hits = mem.search(query, user_id="alice", pipeline="hybrid")
    assert {h.provenance.owner for h in hits} <= {"user:alice"}
    assert len(hits) <= 2


def test_unknown_owner_gets_empty_results(mem: Memory) -> None:
    with unchanged(mem):
        assert mem.search("sunset", user_id="stranger") == []
        page = mem.get_all(user_id="stranger")
        assert page.items == [] and page.next_cursor is None
        assert mem.delete_all(user_id="stranger") == 0
        assert list(mem.iter_all(agent_id="stranger")) == []
    assert "user:stranger" not in mem.owners()


# -- get_all ---------------------------------------------------------------------------------------

GET_ALL_CASES = [
    pytest.param({"limit": 0}, "limit must be an integer from 1 to 1000", id="limit0"),
    pytest.param({"limit": 1001}, "limit must be an integer from 1 to 1000", id="limit-big"),
    pytest.param({"limit": True}, "limit must be an integer", id="limit-bool"),
    pytest.param({"limit": "10"}, "limit must be an integer", id="limit-str"),
    pytest.param(
        {"cursor": "not a cursor!"},
        "cursor 'not a cursor!' is not one Engram issued",
        id="cursor-garbage",
    ),
    pytest.param({"cursor": 10}, "cursor must be a string", id="cursor-int"),
    pytest.param({"cursor": _cursor(b"x12")}, "is not one Engram issued", id="cursor-wrong-tag"),
    pytest.param({"cursor": _cursor(b"kabc")}, "is not one Engram issued", id="cursor-not-int"),
    pytest.param({"cursor": _cursor(b"\xff\xfe")}, "is not one Engram issued", id="cursor-binary"),
    pytest.param({"cursor": "ñ"}, "is not one Engram issued", id="cursor-non-ascii"),
    pytest.param(
        {"cursor": _cursor(b"k" + b"9" * 40)}, "is not one Engram issued", id="cursor-huge-int"
    ),
    pytest.param(
        {"filters": {"kind": {"$like": "%"}}}, "unknown metadata filter operator", id="bad-op"
    ),
    pytest.param({"types": "nope"}, "unknown memory type", id="bad-type"),
    pytest.param({"since": "2024-99-99"}, "not an ISO-8601", id="bad-since"),
]


@pytest.mark.parametrize(("kwargs", "match"), GET_ALL_CASES)
def test_get_all_rejects_bad_input(mem: Memory, kwargs: dict[str, Any], match: str) -> None:
    _rejects(mem, lambda: mem.get_all(user_id="alice", **kwargs), match)


# -- ids: get / update / delete / restore / history ------------------------------------------------


def _first_id(m: Memory) -> str:
    return m.get_all(user_id="alice").items[0].id


@pytest.mark.parametrize("verb", ["get", "history", "delete", "restore", "update"])
@pytest.mark.parametrize(
    ("memory_id", "err", "match"),
    [
        pytest.param("", ValidationError, "memory id must be a non-empty string", id="empty"),
        pytest.param(None, ValidationError, "memory id must be", id="none"),
        pytest.param(7, ValidationError, "memory id must be", id="int"),
        pytest.param("id\x00", ValidationError, "memory id must be", id="nul"),
        pytest.param(
            "0f0e0d0c-0000-4000-8000-000000000000", NotFoundError, "no memory", id="unknown"
        ),
        pytest.param("'; DROP TABLE memories; --", NotFoundError, "no memory", id="sql-ish"),
    ],
)
def test_id_verbs_reject_bad_or_unknown_ids(mem: Memory, verb: str, memory_id, err, match) -> None:
    method = getattr(mem, verb)
    args = (memory_id, "new text") if verb == "update" else (memory_id,)
    _rejects(mem, lambda: method(*args), match, err=err)
    _rejects(mem, lambda: method(*args, user_id="alice"), match, err=err)


UPDATE_CASES = [
    pytest.param((), {}, "update needs new text, new metadata or both", id="nothing"),
    pytest.param(("",), {}, "memory text is empty", id="empty-text"),
    pytest.param(("z" * 101,), {}, "101 characters; the limit is 100", id="oversized"),
    pytest.param(("a\x00",), {}, "NUL", id="nul"),
    pytest.param(("\ud800",), {}, "lone surrogate", id="surrogate"),
    pytest.param((b"\xc3\x28",), {}, "not valid UTF-8", id="bad-bytes"),
    pytest.param((42,), {}, "memory text must be a string, got int", id="int-text"),
    pytest.param((), {"metadata": "x"}, "metadata must be a JSON object", id="bad-metadata"),
    pytest.param((), {"metadata": {"a": object()}}, "not JSON-serialisable", id="unserialisable"),
    pytest.param(("ok",), {"reason": ""}, "reason is empty", id="empty-reason"),
    pytest.param(("ok",), {"reason": 5}, "reason must be a string", id="int-reason"),
    pytest.param(("ok",), {"user_id": ""}, "user_id must be", id="bad-owner"),
]


@pytest.mark.parametrize(("args", "kwargs", "match"), UPDATE_CASES)
def test_update_rejects_bad_input(mem: Memory, args: tuple, kwargs: dict, match: str) -> None:
    target = _first_id(mem)
    _rejects(mem, lambda: mem.update(target, *args, **kwargs), match)


@pytest.mark.parametrize("verb", ["update", "delete", "restore"])
@pytest.mark.parametrize(
    ("reason", "match"),
    [
        pytest.param("", "reason is empty", id="empty"),
        pytest.param("a\x00b", "reason contains a NUL character", id="nul"),
        pytest.param(12, "reason must be a string, got int", id="int"),
        pytest.param("r" * 101, "reason has 101 characters", id="oversized"),
    ],
)
def test_reasons_are_validated_like_any_text(mem: Memory, verb: str, reason, match) -> None:
    target = _first_id(mem)
    if verb == "restore":
        mem.delete(target, user_id="alice")
    calls = {
        "update": lambda: mem.update(target, metadata={"n": 2}, reason=reason),
        "delete": lambda: mem.delete(target, reason=reason),
        "restore": lambda: mem.restore(target, reason=reason),
    }
    _rejects(mem, calls[verb], match)
    # whatever happened, the history is still readable
    assert mem.history(target)[0].event.value == "add"


def test_bad_batch_writes_nothing_even_after_valid_messages(mem: Memory) -> None:
    with unchanged(mem), pytest.raises(ValidationError, match="message 3 content is empty"):
        mem.add(["one", "two", "three", "  "], user_id="alice")
    with unchanged(mem), pytest.raises(ValidationError):
        mem.add(["one", "two"], user_id="alice", memory_type="bogus")


def test_rejected_input_creates_no_cube(mem: Memory) -> None:
    owners = mem.owners()
    with pytest.raises(ValidationError):
        mem.add("", user_id="fresh-user")
    with pytest.raises(ValidationError):
        mem.add("fine", user_id="fresh-user", metadata={"x": object()})
    assert mem.owners() == owners


def test_timestamps_accept_iso_strings_and_datetimes(mem: Memory) -> None:
    [a] = mem.add("a", user_id="alice", timestamp="2024-01-02T03:04:05")
    [b] = mem.add("b", user_id="alice", timestamp=datetime(2024, 1, 2, 3, 4, 5))
    assert a.provenance.timestamp == b.provenance.timestamp


# -- values that used to escape as TypeError, OverflowError, RecursionError ... --------------------


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


BIG = 2**64
DEEP = _nested(5000)

ESCAPE_CASES = [
    pytest.param(
        lambda m: m.add("x", user_id="alice", metadata={"n": BIG}), "64-bit", id="meta-bigint"
    ),
    pytest.param(
        lambda m: m.add("x", user_id="alice", metadata={"n": -BIG}), "64-bit", id="meta-neg-big"
    ),
    pytest.param(
        lambda m: m.search("x", user_id="alice", filters={"n": BIG}), "64-bit", id="filter-bigint"
    ),
    pytest.param(
        lambda m: m.get_all(user_id="alice", filters={"n": {"$in": [1, BIG]}}),
        "64-bit",
        id="filter-in-bigint",
    ),
    pytest.param(
        lambda m: m.add("x", user_id="alice", metadata={"deep": DEEP}),
        "nested more than 32 levels",
        id="meta-deep",
    ),
    pytest.param(
        lambda m: m.update(_first_id(m), metadata={"deep": DEEP}),
        "nested more than 32 levels",
        id="update-meta-deep",
    ),
    pytest.param(
        lambda m: m.search("x", user_id="alice", filters={"k": {"$eq": DEEP}}),
        "nested more than 32 levels",
        id="filter-deep",
    ),
    pytest.param(lambda m: m.search("x", user_id="alice", types=123), "types", id="types-int"),
    pytest.param(
        lambda m: m.get_all(user_id="alice", types=4.5), "types must be", id="get-all-types-float"
    ),
    pytest.param(
        lambda m: m.search("x", user_id="alice", pipeline=["x"]), "pipeline", id="pipeline-list"
    ),
    pytest.param(
        lambda m: m.add_batch([AddRequest("x", user_id="alice")], chunk_size=1.5),
        "chunk_size",
        id="chunk-float",
    ),
    pytest.param(
        lambda m: m.add_batch([AddRequest("x", user_id="alice")], chunk_size="5"),
        "chunk_size",
        id="chunk-str",
    ),
    pytest.param(
        lambda m: m.add_batch([{"messages": "x", "user_id": "alice"}]),
        "must be an AddRequest, got dict",
        id="batch-of-dicts",
    ),
    pytest.param(lambda m: m.add_batch("x"), "list of AddRequest", id="batch-str"),
    pytest.param(
        lambda m: m.delete(_first_id(m), hard="false"), "hard must be True or False", id="hard-str"
    ),
    pytest.param(
        lambda m: m.delete_all(user_id="alice", hard=1), "hard must be True or False", id="hard-1"
    ),
    pytest.param(
        lambda m: m.get_all(user_id="alice", include_archived="yes"),
        "include_archived must be True or False",
        id="include-archived-str",
    ),
    pytest.param(
        lambda m: list(m.iter_all(user_id="alice", include_archived=None)),
        "include_archived",
        id="iter-all-none",
    ),
]


@pytest.mark.parametrize(("call", "match"), ESCAPE_CASES)
def test_odd_values_are_validation_errors(mem: Memory, call: Callable, match: str) -> None:
    _rejects(mem, lambda: call(mem), match)


def test_metadata_at_the_edges_is_accepted(memory: Memory) -> None:
    meta = {"big": 2**63 - 1, "small": -(2**63), "deep": _nested(30)}
    [item] = memory.add("edges", user_id="alice", metadata=meta)
    assert memory.get(item.id).metadata == meta
    hits = memory.get_all(user_id="alice", filters={"big": 2**63 - 1}).items
    assert [h.id for h in hits] == [item.id]
