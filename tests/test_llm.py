"""The LLM path against a small OpenAI-compatible server started here (scripted answers:
valid, malformed JSON, wrong schema, ids that do not exist, errors, timeouts) and against
a local transformers model. Plumbing and safety, not language quality."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engram import Memory
from engram.config import LLMConfig
from engram.embed import Embedder
from engram.errors import ConfigError
from engram.llm import build_llm
from engram.llm.base import LLMError
from engram.llm.openai import OpenAIChat
from engram.store.jobs import JobState
from engram.types import MemoryState, VersionEvent


class ScriptedLLM:
    """An OpenAI-compatible /chat/completions endpoint that answers from a script: each
    entry is the assistant's text, or (status, body), or ('sleep', seconds)."""

    def __init__(self) -> None:
        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def say(self, *answers: Any) -> None:
        with self.lock:
            self.script.extend(answers)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append({"path": self.path, **body})
                    entry = fake.script.pop(0) if fake.script else (500, "script exhausted")
                if isinstance(entry, tuple) and entry[0] == "sleep":
                    time.sleep(entry[1])
                    entry = "{}"
                if isinstance(entry, tuple):
                    status, payload = entry
                else:
                    status = 200
                    payload = json.dumps(
                        {"choices": [{"message": {"role": "assistant", "content": entry}}]}
                    )
                data = payload.encode() if isinstance(payload, str) else payload
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def llm_server() -> Iterator[tuple[ScriptedLLM, str]]:
    fake = ScriptedLLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _memory(home: Path, embedder: Embedder, url: str, **extract: Any) -> Memory:
    return Memory(
        home=home,
        embedder=embedder,
        llm={"provider": "openai", "model": "scripted", "base_url": url, "max_retries": 0},
        extract={"extractors": ["llm"], "backoff_s": 0.0, "answer_retries": 1, **extract},
    )


def _extraction(*memories: dict[str, Any]) -> str:
    return json.dumps({"memories": list(memories)})


def _decision(action: str, target: int | None = None, text: str | None = None) -> str:
    return json.dumps({"action": action, "target": target, "text": text, "reason": "scripted"})


BERLIN = [{"content": "I live in Berlin, near the canal.", "name": "Maya", "source_id": "D1:1"}]
LISBON = [{"content": "I moved to Lisbon last month!", "name": "Maya", "source_id": "D2:1"}]
TEA = [{"content": "I drink green tea every morning.", "name": "Maya", "source_id": "D3:1"}]


def _fact(text: str, turns: list[int] | None = None, mtype: str = "fact") -> dict[str, Any]:
    return {"type": mtype, "text": text, "date": None, "turns": turns or [1]}


def _seed_berlin(m: Memory, fake: ScriptedLLM) -> str:
    """Run the extraction of BERLIN; returns the id of the fact it added."""
    fake.say(_extraction(_fact("Maya lives in Berlin")))
    m.add(BERLIN, user_id="maya", session_id="s1", timestamp="2023-01-10T10:00:00")
    (job,) = m.run_jobs()
    assert job.state is JobState.DONE, job.error
    (fact,) = m.get_all(user_id="maya", types=["fact"]).items
    return fact.id


# -- the chat client ------------------------------------------------------------------


def test_chat_client_sends_json_mode_and_returns_text(llm_server: tuple[ScriptedLLM, str]) -> None:
    fake, url = llm_server
    fake.say("hello")
    chat = OpenAIChat("scripted", url, "k-123", max_retries=0)
    assert chat.complete([{"role": "user", "content": "hi"}], json_answer=True) == "hello"
    (request,) = fake.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["response_format"] == {"type": "json_object"} and request["temperature"] == 0
    chat.close()


def test_chat_client_retries_transient_errors_then_gives_up(
    llm_server: tuple[ScriptedLLM, str],
) -> None:
    fake, url = llm_server
    fake.say((503, "busy"), "ok")
    chat = OpenAIChat("scripted", url, max_retries=1)
    chat._endpoint.backoff_s = 0.0
    assert chat.complete([{"role": "user", "content": "hi"}]) == "ok"
    fake.say((500, "down"), (500, "down"))
    with pytest.raises(LLMError, match="chat endpoint failed: .*500"):
        chat.complete([{"role": "user", "content": "hi"}])
    fake.say((200, '{"choices": []}'))
    with pytest.raises(LLMError, match="unexpected body"):
        chat.complete([{"role": "user", "content": "hi"}])
    fake.say((400, "bad request"))  # not transient: no retry
    with pytest.raises(LLMError, match="400"):
        chat.complete([{"role": "user", "content": "hi"}])
    assert len(fake.requests) == 6


def test_chat_client_times_out(llm_server: tuple[ScriptedLLM, str]) -> None:
    fake, url = llm_server
    fake.say(("sleep", 1.0))
    chat = OpenAIChat("scripted", url, timeout_s=0.2, max_retries=0)
    with pytest.raises(LLMError, match="chat endpoint failed"):
        chat.complete([{"role": "user", "content": "hi"}])


def test_llm_registry_and_config() -> None:
    assert build_llm(LLMConfig()) is None
    with pytest.raises(ConfigError, match="unknown llm provider"):
        build_llm(LLMConfig(provider="nope"))
    with pytest.raises(ConfigError, match="llm.model and llm.base_url"):
        build_llm(LLMConfig(provider="openai"))


# -- decisions ------------------------------------------------------------------------


def test_add_keeps_provenance_to_the_source_turns(
    tmp_path: Path, embedder: Embedder, llm_server: tuple[ScriptedLLM, str]
) -> None:
    fake, url = llm_server
    with _memory(tmp_path, embedder, url) as m:
        fake.say(
            _extraction(
                _fact("Maya moved to Lisbon", [1], "event") | {"date": "2023-04-15"},
            )
        )
        m.add(LISBON, user_id="maya", session_id="s2", timestamp="2023-05-08T10:00:00")
        (job,) = m.run_jobs()
        assert job.state is JobState.DONE and job.result["added"] == 1
        (event,) = m.get_all(user_id="maya", types=["event"]).items
        assert event.memory == "Maya moved to Lisbon"
        assert event.metadata["source_ids"] == ["D2:1"] and event.metadata["model"] == "scripted"
        assert event.provenance.source == "extract:llm" and event.provenance.session_id == "s2"
        assert event.provenance.timestamp is not None
        assert event.provenance.timestamp.date().isoformat() == "2023-04-15"
        prompt = fake.requests[0]["messages"][1]["content"]
        assert "[1] (2023-05-08) Maya: I moved to Lisbon last month!" in prompt


def test_update_writes_a_new_version_and_keeps_the_old(
    tmp_path: Path, embedder: Embedder, llm_server: tuple[ScriptedLLM, str]
) -> None:
    fake, url = llm_server
    with _memory(tmp_path, embedder, url) as m:
        berlin = _seed_berlin(m, fake)
        fake.say(
            _extraction(_fact("Maya lives in Lisbon now")),
            _decision("UPDATE", 1, "Maya lives in Lisbon (she moved from Berlin)"),
        )
        m.add(LISBON, user_id="maya", session_id="s2")
        (job,) = m.run_jobs()
        assert job.state is JobState.DONE and job.result["updated"] == 1
        decision_prompt = fake.requests[-1]["messages"][1]["content"]
        assert "[1] (fact) Maya lives in Berlin" in decision_prompt
        current = m.get(berlin)
        assert current.memory == "Maya lives in Lisbon (she moved from Berlin)"
        assert current.metadata["source_ids"] == ["D1:1", "D2:1"]
        history = m.history(berlin)
        assert [v.event for v in history] == [VersionEvent.ADD, VersionEvent.UPDATE]
        assert history[0].memory == "Maya lives in Berlin"  # the old fact is kept
        assert history[1].source == "extract:llm" and "scripted" in history[1].reason
        assert "D2:1" in history[1].reason
        assert len(m.get_all(user_id="maya", types=["fact"]).items) == 1


def test_delete_archives_the_contradicted_memory_with_reason_and_source(
    tmp_path: Path, embedder: Embedder, llm_server: tuple[ScriptedLLM, str]
) -> None:
    fake, url = llm_server
    with _memory(tmp_path, embedder, url) as m:
        berlin = _seed_berlin(m, fake)
        fake.say(_extraction(_fact("Maya lives in Lisbon")), _decision("DELETE", 1))
        m.add(LISBON, user_id="maya", session_id="s2")
        (job,) = m.run_jobs()
        assert job.result["added"] == 1 and job.result["archived"] == 1
        old = m.get(berlin)
        assert old.state is MemoryState.ARCHIVED and old.memory == "Maya lives in Berlin"
        last = m.history(berlin)[-1]
        assert last.event is VersionEvent.DELETE and last.source == "extract:llm"
        assert "contradicted by 'Maya lives in Lisbon'" in last.reason and "D2:1" in last.reason
        (active,) = m.get_all(user_id="maya", types=["fact"]).items
        assert active.memory == "Maya lives in Lisbon"
        m.restore(berlin)  # nothing is lost
        assert m.get(berlin).state is MemoryState.ACTIVE


def test_none_changes_nothing(
    tmp_path: Path, embedder: Embedder, llm_server: tuple[ScriptedLLM, str]
) -> None:
    fake, url = llm_server
    with _memory(tmp_path, embedder, url) as m:
        berlin = _seed_berlin(m, fake)
        fake.say(_extraction(_fact("Maya's home is Berlin")), _decision("NONE"))
        m.add([{**BERLIN[0], "source_id": "D1:2"}], user_id="maya", session_id="s1")
        (job,) = m.run_jobs()
        assert job.state is JobState.DONE and "already known" in job.result["note"]
        assert [f.id for f in m.get_all(user_id="maya", types=["fact"]).items] == [berlin]
        assert len(m.history(berlin)) == 1


# -- malformed answers ----------------------------------------------------------------


def test_a_malformed_answer_is_retried_with_the_problem_shown(
    tmp_path: Path, embedder: Embedder, llm_server: tuple[ScriptedLLM, str]
) -> None:
    fake, url = llm_server
    with _memory(tmp_path, embedder, url) as m:
        fake.say(
            '{"memories": [{"type": "fact", "text": "Maya drinks',
            _extraction(_fact("Maya drinks green tea")),
        )
        m.add(TEA, user_id="maya", session_id="s3")
        (job,) = m.run_jobs()
        assert job.state is JobState.DONE and job.result["added"] == 1
        retry = fake.requests[1]["messages"]
        assert retry[-2]["role"] == "assistant" and "That answer is invalid" in retry[-1]["content"]


@pytest.mark.parametrize(
    "bad, problem",
    [
        pytest.param("not json at all", "no JSON object", id="not-json"),
        pytest.param('{"memories": [{"type": "fact"', "no JSON object", id="truncated"),
        pytest.param('{"facts": []}', "memories", id="wrong-key"),
        pytest.param(_extraction(_fact("x is y", mtype="opinion")), "type", id="wrong-type"),
        pytest.param(
            _extraction(_fact("Maya likes tea", [7])), "turns [7] do not exist", id="bad-turn"
        ),
    ],
)
def test_extraction_answers_that_stay_invalid_are_rejected(
    tmp_path: Path,
    embedder: Embedder,
    llm_server: tuple[ScriptedLLM, str],
    caplog: pytest.LogCaptureFixture,
    bad: str,
    problem: str,
) -> None:
    fake, url = llm_server
    with _memory(tmp_path, embedder, url, max_attempts=1) as m:
        fake.say(bad, bad)  # the first answer and the one re-ask
        m.add(TEA, user_id="maya", session_id="s3")
        (job,) = m.run_jobs()
        assert job.state is JobState.FAILED
        assert "ExtractionError" in job.error and "rejected 2 times" in job.error
        assert problem in job.error
        assert m.get_all(user_id="maya", types=["fact", "preference", "event"]).items == []
        assert "LLM extraction answer rejected (attempt 1 of 2)" in caplog.text


@pytest.mark.parametrize(
    "bad, problem",
    [
        pytest.param(
            _decision("UPDATE", 9, "Maya lives in Porto"),
            "target 9 does not exist",
            id="no-such-id",
        ),
        pytest.param(_decision("UPDATE", 1), "needs the memory's new text", id="update-no-text"),
        pytest.param(_decision("DELETE"), "needs the number", id="delete-no-target"),
        pytest.param('{"action": "MERGE", "reason": "x"}', "action", id="unknown-action"),
    ],
)
def test_a_bad_decision_rejects_the_whole_batch(
    tmp_path: Path,
    embedder: Embedder,
    llm_server: tuple[ScriptedLLM, str],
    bad: str,
    problem: str,
) -> None:
    fake, url = llm_server
    with _memory(tmp_path, embedder, url, max_attempts=1) as m:
        berlin = _seed_berlin(m, fake)
        # two candidates: the first decision is valid, the second never is
        fake.say(
            _extraction(_fact("Maya lives in Lisbon"), _fact("Maya has a flat in Berlin")),
            _decision("DELETE", 1),
            bad,
            bad,
        )
        m.add(LISBON, user_id="maya", session_id="s2")
        (job,) = m.run_jobs()
        assert job.state is JobState.FAILED and problem in job.error
        # never half-applied: the valid DELETE of the first candidate was not written
        assert m.get(berlin).state is MemoryState.ACTIVE and len(m.history(berlin)) == 1
        assert [f.id for f in m.get_all(user_id="maya", types=["fact"]).items] == [berlin]


def test_an_endpoint_timeout_fails_the_run_and_the_job_is_retried(
    tmp_path: Path, embedder: Embedder, llm_server: tuple[ScriptedLLM, str]
) -> None:
    fake, url = llm_server
    with Memory(
        home=tmp_path,
        embedder=embedder,
        llm={
            "provider": "openai",
            "model": "m",
            "base_url": url,
            "max_retries": 0,
            "timeout_s": 0.2,
        },
        extract={"extractors": ["llm"], "backoff_s": 0.0},
    ) as m:
        fake.say(("sleep", 1.0))
        m.add(TEA, user_id="maya", session_id="s3")
        first = m.run_jobs(limit=1)[0]
        assert first.state is JobState.QUEUED and "LLMError" in first.error
        fake.say(_extraction(_fact("Maya drinks green tea every morning", mtype="preference")))
        (second,) = m.run_jobs()
        assert second.state is JobState.DONE and second.attempts == 2
        (pref,) = m.get_all(user_id="maya", types=["preference"]).items
        assert pref.metadata["source_ids"] == ["D3:1"]


# -- a local transformers model -------------------------------------------------------


@pytest.mark.slow
def test_local_transformers_backend_is_safe_with_a_tiny_model(
    tmp_path: Path, embedder: Embedder
) -> None:
    """The packaged Engram LM writes no valid JSON: the job fails cleanly, nothing is
    written; a direct completion returns text."""
    from engram.llm.local import TransformersChat

    chat = TransformersChat(max_new_tokens=16)
    text = chat.complete([{"role": "user", "content": "Maya moved to Lisbon."}])
    assert isinstance(text, str) and text.strip()
    assert "user: Maya moved to Lisbon.\nassistant:" == chat.prompt(
        [{"role": "user", "content": "Maya moved to Lisbon."}]
    )
    with Memory(
        home=tmp_path,
        embedder=embedder,
        llm={"provider": "transformers", "max_tokens": 24},
        extract={"extractors": ["llm"], "max_attempts": 1, "answer_retries": 1},
    ) as m:
        m.add(TEA, user_id="maya", session_id="s3")
        (job,) = m.run_jobs()
        if job.state is JobState.FAILED:
            assert "rejected 2 times" in job.error
            assert m.get_all(user_id="maya", types=["fact", "preference", "event"]).items == []
        else:  # a lucky valid answer: whatever was written is sourced from the turn
            assert job.state is JobState.DONE
            for item in m.get_all(user_id="maya", types=["fact", "preference", "event"]).items:
                assert item.metadata["source_ids"] == ["D3:1"]
                assert item.provenance.source == "extract:llm"
