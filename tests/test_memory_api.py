"""The public Memory verbs end to end: real SQLite under tmp_path, real MiniLM embeddings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from _engram_helpers import all_table_bytes, db_path, integrity, table_counts
from engram import (
    Memory,
    MemoryState,
    MemoryType,
    Message,
    NotFoundError,
    ValidationError,
    VersionEvent,
)

FACTS = [
    "My dog is a golden retriever called Biscuit.",
    "I work as a backend engineer at a bank in Frankfurt.",
    "My favourite food is spicy Thai green curry.",
    "I am allergic to peanuts and shellfish.",
    "My sister Maria lives in Lisbon and works as a nurse.",
    "I play the cello in a community orchestra on Thursdays.",
    "We are planning a hiking trip to the Dolomites in August.",
    "I drive an old blue Volvo station wagon.",
]


def _add_facts(memory: Memory, user_id: str = "alice") -> dict[str, str]:
    items = memory.add(FACTS, user_id=user_id)
    return {item.memory: item.id for item in items}


# -- add and provenance ----------------------------------------------------------------------------


def test_add_string_returns_stored_item_with_provenance(memory: Memory) -> None:
    before = datetime.now(UTC)
    [item] = memory.add("I prefer window seats on planes.", user_id="alice", session_id="s1")
    after = datetime.now(UTC)

    assert item.memory == "I prefer window seats on planes."
    assert item.type == MemoryType.TURN
    assert item.state is MemoryState.ACTIVE
    assert item.version == 1
    assert item.metadata == {}
    prov = item.provenance
    assert prov.owner == "user:alice"
    assert prov.user_id == "alice"
    assert prov.agent_id is None
    assert prov.session_id == "s1"
    assert prov.turn_index == 0
    assert prov.role == "user"
    assert prov.source == "api"
    assert prov.source_id is None
    assert prov.timestamp is None
    assert before - timedelta(seconds=1) <= item.created_at <= after + timedelta(seconds=1)
    assert item.created_at.tzinfo is not None
    assert memory.get(item.id, user_id="alice") == item


def test_add_one_dict_message(memory: Memory) -> None:
    [item] = memory.add(
        {"role": "assistant", "content": "Noted: you prefer aisle seats.", "name": "Bot"},
        agent_id="travel-bot",
    )
    assert item.memory == "Noted: you prefer aisle seats."
    assert item.provenance.role == "assistant"
    assert item.provenance.name == "Bot"
    assert item.provenance.owner == "agent:travel-bot"
    assert item.provenance.agent_id == "travel-bot"
    assert item.provenance.user_id is None


def test_add_message_object_with_timestamp_and_source_id(memory: Memory) -> None:
    when = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
    msg = Message(role="user", content="My flight lands at 9pm.", source_id="D1:3", timestamp=when)
    [item] = memory.add(msg, user_id="alice", memory_type="event", source="import:test")
    assert item.type == MemoryType.EVENT
    assert item.provenance.source_id == "D1:3"
    assert item.provenance.timestamp == when
    assert item.provenance.source == "import:test"


def test_add_list_of_messages_keeps_order_and_per_message_provenance(memory: Memory) -> None:
    fallback = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    own = "2024-05-01T12:00:00+02:00"  # stored as UTC
    items = memory.add(
        [
            {
                "role": "user",
                "content": "I just adopted a cat.",
                "name": "Alice",
                "source_id": "t1",
            },
            {
                "role": "assistant",
                "content": "Congratulations! What is its name?",
                "source_id": "t2",
            },
            {"content": "Her name is Mochi.", "name": "Alice", "timestamp": own, "source_id": "t3"},
        ],
        user_id="alice",
        session_id="chat-7",
        timestamp=fallback,
        metadata={"channel": "web"},
    )
    assert [i.memory for i in items] == [
        "I just adopted a cat.",
        "Congratulations! What is its name?",
        "Her name is Mochi.",
    ]
    assert [i.provenance.turn_index for i in items] == [0, 1, 2]
    assert [i.provenance.source_id for i in items] == ["t1", "t2", "t3"]
    assert [i.provenance.role for i in items] == ["user", "assistant", "user"]
    assert [i.provenance.name for i in items] == ["Alice", None, "Alice"]
    assert items[0].provenance.timestamp == fallback
    assert items[1].provenance.timestamp == fallback
    assert items[2].provenance.timestamp == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert all(i.provenance.session_id == "chat-7" for i in items)
    assert all(i.metadata == {"channel": "web"} for i in items)
    assert len({i.id for i in items}) == 3
    # what get() reads back from the database is what add() returned
    for item in items:
        assert memory.get(item.id) == item


def test_speaker_name_is_searchable(memory: Memory) -> None:
    memory.add(FACTS, user_id="alice")
    [said] = memory.add({"content": "I will bring the snacks.", "name": "Zebulon"}, user_id="alice")
    hits = memory.search("Zebulon", user_id="alice", pipeline="bm25")
    assert [h.id for h in hits] == [said.id]
    # the speaker stays part of the indexed text after an update
    memory.update(said.id, "I will bring the drinks instead.")
    hits = memory.search("Zebulon drinks", user_id="alice", pipeline="bm25")
    assert hits[0].id == said.id
    assert hits[0].memory == "I will bring the drinks instead."


def test_add_with_metadata_and_type(memory: Memory) -> None:
    meta = {"topic": "food", "priority": 3, "tags": ["a", "b"], "nested": {"x": 1.5}, "ok": True}
    [item] = memory.add(
        "I dislike coriander.", user_id="alice", metadata=meta, memory_type=MemoryType.PREFERENCE
    )
    assert item.metadata == meta
    assert item.type == MemoryType.PREFERENCE
    assert memory.get(item.id).metadata == meta


def test_add_batch_validates_everything_before_writing(memory: Memory) -> None:
    from engram.memory import AddRequest

    memory.add("already here", user_id="alice")
    before = table_counts(db_path(memory.home))
    with pytest.raises(ValidationError, match="request 2: .*message content is empty"):
        memory.add_batch(
            [
                AddRequest("fine for alice", user_id="alice"),
                AddRequest(["fine for bob", "also fine"], user_id="bob"),
                AddRequest("   ", user_id="carol"),
            ]
        )
    assert table_counts(db_path(memory.home)) == before
    assert memory.owners() == ["user:alice"]


def test_add_batch_returns_one_list_per_request(memory: Memory) -> None:
    from engram.memory import AddRequest

    done: list[int] = []
    out = memory.add_batch(
        [
            AddRequest(["a1", "a2"], user_id="alice", session_id="s1"),
            AddRequest("b1", user_id="bob", metadata={"x": 1}),
            AddRequest(["a3"], user_id="alice", memory_type="fact"),
            AddRequest({"content": "a1 again", "source_id": "dup"}, user_id="alice"),
            AddRequest({"content": "a1 again", "source_id": "dup"}, user_id="alice"),
        ],
        chunk_size=2,
        progress=done.append,
    )
    assert [[i.memory for i in items] for items in out] == [
        ["a1", "a2"],
        ["b1"],
        ["a3"],
        ["a1 again"],
        ["a1 again"],
    ]
    assert out[3][0].id == out[4][0].id
    assert out[1][0].provenance.owner == "user:bob" and out[1][0].metadata == {"x": 1}
    assert out[2][0].type == MemoryType.FACT
    assert [i.provenance.turn_index for i in out[0]] == [0, 1]
    assert done and done[-1] == 6 and done == sorted(done)
    assert len(memory.get_all(user_id="alice").items) == 4


# -- search ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What is my dog's name?", FACTS[0]),
        ("Where do I work?", FACTS[1]),
        ("What food allergies do I have?", FACTS[3]),
        ("Which musical instrument do I play?", FACTS[5]),
        ("Where does my sister live?", FACTS[4]),
        ("What car do I drive?", FACTS[7]),
    ],
)
def test_search_returns_the_relevant_memory_first(
    memory: Memory, query: str, expected: str
) -> None:
    ids = _add_facts(memory)
    hits = memory.search(query, user_id="alice")
    assert hits, "search returned nothing"
    assert hits[0].id == ids[expected], [h.memory for h in hits[:3]]
    assert hits[0].memory == expected
    assert hits[0].provenance.owner == "user:alice"


def test_search_k_and_score_order(memory: Memory) -> None:
    _add_facts(memory)
    assert len(memory.search("hobbies", user_id="alice", k=3)) == 3
    assert len(memory.search("hobbies", user_id="alice", k=1)) == 1
    everything = memory.search("hobbies", user_id="alice", k=100)
    assert len(everything) == len(FACTS)
    scores = [h.score for h in everything]
    assert scores == sorted(scores, reverse=True)
    # the default k comes from the config
    assert memory.config.search.default_k == 10
    assert len(memory.search("hobbies", user_id="alice")) == len(FACTS)


def test_search_default_k_from_config(tmp_path, embedder) -> None:
    with Memory(home=tmp_path, embedder=embedder, search={"default_k": 3}) as mem:
        mem.add(FACTS, user_id="alice")
        assert len(mem.search("anything at all", user_id="alice")) == 3


@pytest.fixture
def tagged(memory: Memory) -> dict[str, str]:
    rows = [
        ("Dentist appointment on Monday.", {"kind": "health", "priority": 1, "done": False}),
        ("Renew the car insurance.", {"kind": "admin", "priority": 3, "done": True}),
        ("Book a physiotherapy session.", {"kind": "health", "priority": 5, "done": False}),
        ("Pay the electricity bill.", {"kind": "admin", "priority": 4}),
        ("Call grandma on her birthday.", {"kind": "family", "priority": 2, "done": True}),
    ]
    ids = {}
    for text, meta in rows:
        [item] = memory.add(text, user_id="alice", metadata=meta, memory_type="note")
        ids[text.split()[0]] = item.id
    return ids


def _search_ids(memory: Memory, **kwargs) -> set[str]:
    return {h.id for h in memory.search("things to do", user_id="alice", k=50, **kwargs)}


def _list_ids(memory: Memory, **kwargs) -> set[str]:
    return {i.id for i in memory.get_all(user_id="alice", **kwargs).items}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"kind": "health"}, {"Dentist", "Book"}),
        ({"kind": {"$eq": "admin"}}, {"Renew", "Pay"}),
        ({"kind": {"$ne": "health"}}, {"Renew", "Pay", "Call"}),
        ({"kind": {"$in": ["family", "admin"]}}, {"Renew", "Pay", "Call"}),
        ({"priority": {"$gt": 3}}, {"Book", "Pay"}),
        ({"priority": {"$gte": 3}}, {"Renew", "Book", "Pay"}),
        ({"priority": {"$lt": 2}}, {"Dentist"}),
        ({"priority": {"$lte": 2}}, {"Dentist", "Call"}),
        ({"priority": {"$gt": 1, "$lt": 5}}, {"Renew", "Pay", "Call"}),
        ({"kind": "health", "priority": {"$gte": 2}}, {"Book"}),
        ({"done": True}, {"Renew", "Call"}),
        ({"done": None}, {"Pay"}),
        ({"done": {"$ne": None}}, {"Dentist", "Renew", "Book", "Call"}),
        ({"kind": "nothing-like-this"}, set()),
    ],
)
def test_metadata_filters(memory: Memory, tagged: dict[str, str], filters, expected) -> None:
    want = {tagged[name] for name in expected}
    assert _search_ids(memory, filters=filters) == want
    assert _list_ids(memory, filters=filters) == want
    for pipeline in ("bm25", "dense"):
        hits = memory.search(
            "appointment insurance session bill birthday",
            user_id="alice",
            k=50,
            filters=filters,
            pipeline=pipeline,
        )
        assert {h.id for h in hits} <= want


def test_type_filters(memory: Memory) -> None:
    [fact] = memory.add(
        "The office wifi password is on the fridge.", user_id="alice", memory_type="fact"
    )
    [pref] = memory.add("I prefer tea over coffee.", user_id="alice", memory_type="preference")
    [turn] = memory.add("Can you remind me about tea later?", user_id="alice")
    assert _search_ids(memory, types="fact") == {fact.id}
    assert _search_ids(memory, types=["fact", MemoryType.PREFERENCE]) == {fact.id, pref.id}
    assert _search_ids(memory, types=[MemoryType.TURN]) == {turn.id}
    assert _list_ids(memory, types="preference") == {pref.id}
    assert _search_ids(memory, types="summary") == set()


def test_since_until_time_ranges(memory: Memory) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    ids = []
    for day in range(5):
        [item] = memory.add(
            f"Diary entry for day {day}: went running.",
            user_id="alice",
            timestamp=base + timedelta(days=day),
        )
        ids.append(item.id)
    assert _search_ids(memory, since="2024-01-03") == set(ids[2:])
    assert _search_ids(memory, until=base + timedelta(days=1)) == set(ids[:2])
    assert _search_ids(
        memory, since="2024-01-02T00:00:00Z", until="2024-01-04T00:00:00+00:00"
    ) == set(ids[1:4])
    # an aware bound in another zone is converted: 2024-01-03T01:00+02:00 is 2024-01-02T23:00Z
    east = timezone(timedelta(hours=2))
    assert _search_ids(memory, since=datetime(2024, 1, 3, 1, 0, tzinfo=east)) == set(ids[2:])
    assert _list_ids(memory, since="2024-01-04") == set(ids[3:])
    assert _search_ids(memory, since="2030-01-01") == set()


def test_time_range_without_explicit_timestamp_uses_created_at(memory: Memory) -> None:
    start = datetime.now(UTC) - timedelta(seconds=5)
    [item] = memory.add("Something that just happened.", user_id="alice")
    assert _search_ids(memory, since=start) == {item.id}
    assert _search_ids(memory, until=start) == set()


def test_session_filter(memory: Memory) -> None:
    a = memory.add(
        ["We talked about the garden.", "Tomatoes need sun."], user_id="alice", session_id="s-a"
    )
    b = memory.add(
        ["We talked about the garage.", "The car needs tyres."], user_id="alice", session_id="s-b"
    )
    assert {h.id for h in memory.search("garden", user_id="alice", session_id="s-a")} == {
        i.id for i in a
    }
    assert {i.id for i in memory.get_all(user_id="alice", session_id="s-b").items} == {
        i.id for i in b
    }
    assert memory.search("garden", user_id="alice", session_id="nope") == []


# -- get / get_all ---------------------------------------------------------------------------------


def test_get_all_cursor_pagination_has_no_duplicates_and_no_gaps(memory: Memory) -> None:
    added = [memory.add(f"Numbered memory {i:02d}", user_id="alice")[0].id for i in range(25)]
    seen: list[str] = []
    sizes = []
    cursor = None
    for _ in range(10):
        page = memory.get_all(user_id="alice", limit=10, cursor=cursor)
        seen += [i.id for i in page.items]
        sizes.append(len(page.items))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sizes == [10, 10, 5]
    assert seen == added  # insertion order, every id once
    assert len(set(seen)) == 25


def test_get_all_exact_multiple_of_limit_ends_cleanly(memory: Memory) -> None:
    memory.add([f"Item {i}" for i in range(20)], user_id="alice")
    first = memory.get_all(user_id="alice", limit=10)
    second = memory.get_all(user_id="alice", limit=10, cursor=first.next_cursor)
    assert len(first.items) == 10 and first.next_cursor is not None
    assert len(second.items) == 10
    assert second.next_cursor is None


def test_get_all_pagination_with_filter_and_archived(memory: Memory) -> None:
    items = [
        memory.add(f"Entry {i}", user_id="alice", metadata={"even": i % 2 == 0})[0]
        for i in range(12)
    ]
    memory.delete(items[0].id, user_id="alice")
    evens = [i.id for i in items[2::2]]
    page1 = memory.get_all(user_id="alice", limit=3, filters={"even": True})
    page2 = memory.get_all(
        user_id="alice", limit=3, filters={"even": True}, cursor=page1.next_cursor
    )
    assert [i.id for i in page1.items + page2.items] == evens
    assert page2.next_cursor is None
    with_archived = memory.get_all(user_id="alice", include_archived=True)
    assert [i.id for i in with_archived.items] == [i.id for i in items]
    assert with_archived.items[0].state is MemoryState.ARCHIVED


def test_iter_all_streams_everything(memory: Memory) -> None:
    ids = [i.id for i in memory.add([f"Line {i}" for i in range(7)], user_id="alice")]
    assert [i.id for i in memory.iter_all(user_id="alice")] == ids
    assert list(memory.iter_all(user_id="nobody")) == []


def test_get_without_scope_locates_the_owner(memory: Memory) -> None:
    [item] = memory.add("Found by id alone.", agent_id="bot")
    assert memory.get(item.id).provenance.owner == "agent:bot"
    with pytest.raises(NotFoundError, match="no memory"):
        memory.get("00000000-0000-0000-0000-000000000000")


# -- update and history ----------------------------------------------------------------------------


def test_update_writes_a_new_version_and_reembeds(memory: Memory) -> None:
    [distractor] = memory.add("Paris is lovely in the spring.", user_id="alice")
    [item] = memory.add("I live in Paris, near the Seine.", user_id="alice")
    memory.add(["I collect vinyl records.", "My brother plays rugby."], user_id="alice")

    updated = memory.update(
        item.id, "I moved to Tokyo, close to Shibuya station.", user_id="alice", reason="user moved"
    )
    assert updated.id == item.id
    assert updated.version == 2
    assert updated.memory == "I moved to Tokyo, close to Shibuya station."
    assert updated.updated_at >= item.updated_at
    assert updated.created_at == item.created_at
    assert memory.get(item.id) == updated

    # every pipeline finds the new text first ...
    for pipeline in ("bm25", "dense", "hybrid", "rrf"):
        hits = memory.search("Tokyo Shibuya", user_id="alice", pipeline=pipeline)
        assert hits and hits[0].id == item.id, pipeline
        assert hits[0].memory == updated.memory
    # ... and the old text no longer matches it
    assert item.id not in {h.id for h in memory.search("Seine", user_id="alice", pipeline="bm25")}
    dense = memory.search("I live in Paris, near the Seine.", user_id="alice", pipeline="dense")
    assert dense[0].id == distractor.id
    # the stored vector is the new text's vector
    fresh = memory.search(
        "I moved to Tokyo, close to Shibuya station.", user_id="alice", pipeline="dense", k=1
    )
    assert fresh[0].id == item.id and fresh[0].score > 0.999


def test_update_metadata_only_keeps_text(memory: Memory) -> None:
    [item] = memory.add("Gym membership renews in March.", user_id="alice", metadata={"a": 1})
    updated = memory.update(item.id, metadata={"a": 2, "b": "x"}, user_id="alice")
    assert updated.memory == item.memory
    assert updated.metadata == {"a": 2, "b": "x"}
    assert updated.version == 2
    assert _list_ids(memory, filters={"a": 2}) == {item.id}
    hist = memory.history(item.id)
    assert [v.metadata for v in hist] == [{"a": 1}, {"a": 2, "b": "x"}]


def test_history_records_add_update_delete_restore_with_reasons(memory: Memory) -> None:
    [item] = memory.add("I am vegetarian.", user_id="alice")
    memory.update(item.id, "I am vegan.", reason="diet changed", user_id="alice")
    memory.delete(item.id, reason="user asked to forget", user_id="alice")
    restored = memory.restore(item.id, reason="user changed their mind", user_id="alice")
    assert restored.state is MemoryState.ACTIVE
    assert restored.version == 4

    hist = memory.history(item.id, user_id="alice")
    assert [v.version for v in hist] == [1, 2, 3, 4]
    assert [v.event for v in hist] == [
        VersionEvent.ADD,
        VersionEvent.UPDATE,
        VersionEvent.DELETE,
        VersionEvent.RESTORE,
    ]
    assert [v.memory for v in hist] == [
        "I am vegetarian.",
        "I am vegan.",
        "I am vegan.",
        "I am vegan.",
    ]
    assert [v.reason for v in hist] == [
        None,
        "diet changed",
        "user asked to forget",
        "user changed their mind",
    ]
    assert hist[0].source == "api"
    assert [v.at for v in hist] == sorted(v.at for v in hist)


# -- delete / restore ------------------------------------------------------------------------------


def test_soft_delete_archives_and_restore_brings_back(memory: Memory) -> None:
    ids = _add_facts(memory)
    target = ids[FACTS[0]]
    assert memory.search("dog Biscuit", user_id="alice")[0].id == target

    memory.delete(target, user_id="alice", reason="obsolete")
    for pipeline in ("bm25", "dense", "hybrid", "rrf"):
        hits = memory.search(
            "dog Biscuit golden retriever", user_id="alice", k=50, pipeline=pipeline
        )
        assert target not in {h.id for h in hits}, pipeline
    archived = memory.get(target, user_id="alice")
    assert archived.state is MemoryState.ARCHIVED
    assert archived.memory == FACTS[0]
    assert target not in _list_ids(memory)
    assert target in _list_ids(memory, include_archived=True)
    assert memory.history(target)[-1].event is VersionEvent.DELETE
    assert memory.stats(user_id="alice").archived == 1

    memory.restore(target, user_id="alice")
    assert memory.search("dog Biscuit", user_id="alice")[0].id == target
    assert memory.get(target).state is MemoryState.ACTIVE


def test_updating_an_archived_memory_keeps_it_out_of_search(memory: Memory) -> None:
    ids = _add_facts(memory)
    target = ids[FACTS[2]]
    memory.search("curry", user_id="alice")  # warm the vector index cache
    memory.delete(target, user_id="alice")
    memory.update(target, "My favourite food is sushi with wasabi.", user_id="alice")
    assert memory.get(target).state is MemoryState.ARCHIVED
    for pipeline in ("bm25", "dense", "hybrid", "rrf"):
        hits = memory.search(
            "favourite food sushi wasabi", user_id="alice", k=50, pipeline=pipeline
        )
        assert target not in {h.id for h in hits}, pipeline


def test_hard_delete_erases_every_trace(memory: Memory) -> None:
    memory.add(FACTS, user_id="alice")
    secret = "My passport number is zqxjvplorn 4471."
    [item] = memory.add(secret, user_id="alice", metadata={"kind": "zqxjvplorn-meta"})
    memory.update(item.id, secret + " It expires in 2031.", user_id="alice", reason="zqxjvplorn")
    memory.search("passport zqxjvplorn", user_id="alice")

    memory.delete(item.id, hard=True, user_id="alice")

    with pytest.raises(NotFoundError):
        memory.get(item.id)
    with pytest.raises(NotFoundError):
        memory.history(item.id, user_id="alice")
    with pytest.raises(NotFoundError):
        memory.restore(item.id, user_id="alice")
    for pipeline in ("bm25", "dense", "hybrid"):
        hits = memory.search("passport zqxjvplorn", user_id="alice", k=50, pipeline=pipeline)
        assert item.id not in {h.id for h in hits}
    assert item.id not in _list_ids(memory, include_archived=True)
    assert memory.stats(user_id="alice").active == len(FACTS)

    # no table of the SQLite file holds the text any more (FTS5 shadow tables included)
    dump = all_table_bytes(db_path(memory.home))
    assert "memories_fts_data" in dump and "memories_fts_content" in dump
    leaking = sorted(table for table, data in dump.items() if b"zqxjvplorn" in data)
    assert leaking == [], f"erased text still present in tables {leaking}"
    assert item.id.encode() not in b"".join(dump.values())


def test_hard_delete_leaves_no_bytes_in_the_database_file(tmp_path, embedder) -> None:
    mem = Memory(home=tmp_path, embedder=embedder)
    mem.add(
        [f"Filler memory {i} about gardening and tomatoes." for i in range(30)], user_id="alice"
    )
    [item] = mem.add("My bank PIN is qpwmxelrtz.", user_id="alice")
    mem.add([f"More filler {i}." for i in range(5)], user_id="alice")
    mem.delete(item.id, hard=True, user_id="alice")
    mem.close()  # last connection closed: WAL checkpointed into the main file
    files = [p for p in tmp_path.iterdir() if p.name.startswith("engram.db")]
    raw = b"".join(p.read_bytes() for p in files)
    assert b"qpwmxelrtz" not in raw, "erased text is still readable in the database file"


def test_delete_all_soft_then_hard(memory: Memory) -> None:
    alice = memory.add(FACTS, user_id="alice")
    [bob] = memory.add("Bob's memory about his dog.", user_id="bob")
    assert memory.delete_all(user_id="alice") == len(FACTS)
    assert memory.search("dog", user_id="alice") == []
    assert memory.get_all(user_id="alice").items == []
    page = memory.get_all(user_id="alice", include_archived=True)
    assert {i.id for i in page.items} == {i.id for i in alice}
    assert all(i.state is MemoryState.ARCHIVED for i in page.items)
    assert memory.delete_all(user_id="alice") == 0  # nothing active left
    assert [v.reason for v in memory.history(alice[0].id)] == [None, "delete_all"]

    assert memory.delete_all(user_id="alice", hard=True) == len(FACTS)
    assert memory.get_all(user_id="alice", include_archived=True).items == []
    for item in alice:
        with pytest.raises(NotFoundError):
            memory.get(item.id)
    dump = b"".join(all_table_bytes(db_path(memory.home)).values())
    assert b"golden retriever called Biscuit" not in dump
    assert memory.get(bob.id).state is MemoryState.ACTIVE
    assert memory.search("dog", user_id="bob")[0].id == bob.id


def test_delete_all_by_session(memory: Memory) -> None:
    s1 = memory.add(["one", "two"], user_id="alice", session_id="s1")
    s2 = memory.add(["three"], user_id="alice", session_id="s2")
    assert memory.delete_all(user_id="alice", session_id="s1") == 2
    assert _list_ids(memory) == {s2[0].id}
    assert all(memory.get(i.id).state is MemoryState.ARCHIVED for i in s1)
    assert memory.delete_all(user_id="nobody") == 0


# -- idempotency, stats, owners --------------------------------------------------------------------


def test_re_adding_a_source_id_returns_the_existing_memory(memory: Memory) -> None:
    [first] = memory.add(
        {"content": "Session 1, turn 1: hello", "source_id": "D1:1"}, user_id="alice"
    )
    counts = table_counts(db_path(memory.home))
    [again] = memory.add(
        {"content": "Session 1, turn 1: hello", "source_id": "D1:1"}, user_id="alice"
    )
    assert again == first
    assert table_counts(db_path(memory.home)) == counts

    batch = memory.add(
        [
            {"content": "Session 1, turn 1: hello", "source_id": "D1:1"},
            {"content": "Session 1, turn 2: hi there", "source_id": "D1:2"},
            {"content": "Session 1, turn 2: hi there", "source_id": "D1:2"},
        ],
        user_id="alice",
    )
    assert batch[0].id == first.id
    assert batch[1].id == batch[2].id != first.id
    assert len(memory.get_all(user_id="alice").items) == 2
    assert [v.event for v in memory.history(first.id)] == [VersionEvent.ADD]


def test_stats(memory: Memory) -> None:
    memory.add(
        ["a fact", "another fact"],
        user_id="alice",
        memory_type="fact",
        session_id="s1",
        timestamp="2024-01-01T00:00:00Z",
    )
    memory.add(
        "a preference",
        user_id="alice",
        memory_type="preference",
        session_id="s2",
        timestamp="2024-02-01T00:00:00Z",
    )
    [gone] = memory.add("a turn", user_id="alice", timestamp="2024-03-01T00:00:00Z")
    memory.delete(gone.id)
    stats = memory.stats(user_id="alice")
    assert stats.owner == "user:alice"
    assert stats.active == 3
    assert stats.archived == 1
    assert stats.by_type == {"fact": 2, "preference": 1}
    assert stats.sessions == 2
    assert stats.first_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert stats.last_at == datetime(2024, 3, 1, tzinfo=UTC)
    with pytest.raises(NotFoundError, match="user:nobody"):
        memory.stats(user_id="nobody")


def test_owners(memory: Memory) -> None:
    assert memory.owners() == []
    memory.add("x", user_id="bob")
    memory.add("y", agent_id="planner")
    memory.add("z", user_id="alice", agent_id="planner")
    assert memory.owners() == ["agent:planner", "user:alice", "user:bob"]


def test_search_counts_accesses(memory: Memory) -> None:
    ids = _add_facts(memory)
    target = ids[FACTS[5]]
    hits = memory.search("cello orchestra", user_id="alice", k=1)
    assert hits[0].id == target
    assert memory.access is not None
    memory.access.flush()
    item = memory.get(target)
    assert item.access_count == 1
    assert item.last_accessed_at is not None
    assert memory.get(ids[FACTS[0]]).access_count == 0


def test_data_survives_reopen(tmp_path, embedder) -> None:
    with Memory(home=tmp_path, embedder=embedder) as mem:
        ids = _add_facts(mem)
    assert integrity(db_path(tmp_path)) == "ok"
    with Memory(home=tmp_path, embedder=embedder) as mem:
        assert (
            mem.search("Which musical instrument do I play?", user_id="alice")[0].id
            == ids[FACTS[5]]
        )
        assert len(mem.get_all(user_id="alice").items) == len(FACTS)


def test_registered_memory_types_are_accepted_everywhere(memory: Memory) -> None:
    from engram import ValidationError, register_memory_type

    with pytest.raises(ValidationError, match="unknown memory type 'recipe'"):
        memory.add("pancakes: flour, eggs, milk", user_id="alice", memory_type="recipe")
    register_memory_type("recipe")
    item = memory.add("pancakes: flour, eggs, milk", user_id="alice", memory_type="recipe")[0]
    assert item.type == "recipe"
    assert [h.id for h in memory.search("eggs", user_id="alice", types="recipe")] == [item.id]
    with pytest.raises(ValueError, match="identifier"):
        register_memory_type("no spaces allowed")


def test_custom_types_stay_readable_where_they_are_not_registered(
    memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engram import register_memory_type
    from engram.types import MEMORY_TYPES

    register_memory_type("journal")
    [item] = memory.add("dear diary, the lake froze", user_id="alice", memory_type="journal")
    monkeypatch.delitem(MEMORY_TYPES, "journal")  # like a process that never registered it
    assert memory.get(item.id).type == "journal"
    assert [i.type for i in memory.get_all(user_id="alice").items] == ["journal"]
    assert memory.search("frozen lake", user_id="alice")[0].type == "journal"
    assert memory.stats(user_id="alice").by_type == {"journal": 1}
    with pytest.raises(ValidationError, match="unknown memory type 'journal'"):
        memory.add("more", user_id="alice", memory_type="journal")


# -- erasure of whole owners, cube cache -----------------------------------------------------------


def test_erasing_every_memory_of_an_owner_erases_the_owner(memory: Memory) -> None:
    memory.add(["one", "two"], user_id="alice")
    memory.add("three", user_id="bob")
    assert memory.delete_all(user_id="alice", hard=True) == 2
    assert memory.owners() == ["user:bob"]
    with pytest.raises(NotFoundError, match="no memories for user:alice"):
        memory.stats(user_id="alice")
    dump = b"".join(all_table_bytes(db_path(memory.home)).values())
    assert b"alice" not in dump
    [again] = memory.add("a fresh start", user_id="alice")
    assert [i.id for i in memory.get_all(user_id="alice").items] == [again.id]
    assert memory.search("fresh start", user_id="alice")[0].id == again.id


def test_an_owner_erased_by_another_memory_object_is_seen_at_once(tmp_path, embedder) -> None:
    with (
        Memory(home=tmp_path, embedder=embedder) as a,
        Memory(home=tmp_path, embedder=embedder) as b,
    ):
        a.add("before", user_id="alice")
        assert b.delete_all(user_id="alice", hard=True) == 1
        [after] = a.add("after", user_id="alice")
        assert [i.id for i in b.get_all(user_id="alice").items] == [after.id]
        assert [i.id for i in a.get_all(user_id="alice").items] == [after.id]


def test_an_add_racing_an_owner_erasure_lands_in_a_new_cube(
    tmp_path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Memory(home=tmp_path, embedder=embedder) as mem:
        mem.add("before", user_id="alice")
        stale = mem.store.cube_id("user:alice")
        mem.delete_all(user_id="alice", hard=True)
        real = mem.store.cube_id
        calls: list[str] = []

        def stale_once(owner: str, create: bool = False) -> int | None:
            calls.append(owner)
            return stale if len(calls) == 1 else real(owner, create)

        monkeypatch.setattr(mem.store, "cube_id", stale_once)
        [item] = mem.add("after", user_id="alice")
        assert item.provenance.owner == "user:alice"
        assert [i.id for i in mem.get_all(user_id="alice").items] == [item.id]


def test_cube_cache_is_bounded(memory: Memory) -> None:
    assert memory._cubes.capacity == 1024
    memory._cubes.capacity = 3
    for i in range(8):
        memory.add(f"note {i}", user_id=f"user{i}")
    assert len(memory._cubes) == 3
    assert memory.get_all(user_id="user0").items[0].memory == "note 0"  # evicted, still there


def test_access_counts_of_an_erased_memory_never_reach_another(memory: Memory) -> None:
    [_, target] = memory.add(["alpha apples", "beta bananas"], user_id="alice")
    assert memory.search("bananas", user_id="alice", k=1)[0].id == target.id
    memory.delete(target.id, hard=True)
    [new] = memory.add("gamma grapes", user_id="alice")
    assert memory.access is not None
    memory.access.flush()
    assert memory.get(new.id).access_count == 0


def test_a_lazy_embedder_loads_on_first_embed_and_is_checked_then(tmp_path, embedder) -> None:
    from _engram_helpers import HashEmbedder
    from engram import EmbedderMismatchError

    with Memory(home=tmp_path, embedder=embedder) as first:
        [item] = first.add("hello there", user_id="alice")
    built: list[str] = []

    def wrong_model() -> HashEmbedder:
        built.append("wrong")
        return HashEmbedder(dim=16)

    with Memory(home=tmp_path, embedder=wrong_model) as lazy:
        assert lazy.get(item.id).memory == "hello there"
        assert lazy.stats(user_id="alice").active == 1
        lazy.delete(item.id)
        lazy.restore(item.id)
        assert built == []
        with pytest.raises(EmbedderMismatchError, match="hash-bow-16"):
            lazy.add("more", user_id="alice")
        assert built == ["wrong"]
    with Memory(home=tmp_path, embedder=lambda: embedder) as lazy:
        assert lazy.search("hello", user_id="alice")[0].id == item.id
