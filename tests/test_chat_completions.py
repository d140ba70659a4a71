"""`POST /v1/chat/completions` and `GET /v1/models` on a real `engram serve` process, driven
by the official `openai` client: the owner's memories go into the prompt (the `engram`
object names them), the new turns are stored unless `X-Engram-Store: false`, other
owners' memories never reach the prompt, bad requests raise `APIStatusError`s. The local
model is the packaged tiny LM; an upstream test relays to a small recording endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from _server_helpers import Keys, free_port, make_keys, running_server
from engram.store.sqlite_keys import SQLiteKeyStore

ENGRAM = Path(sys.executable).with_name("engram")
BISCUIT = "My dog is called Biscuit and she loves the beach at Cascais."
UPSTREAM_ANSWER = ["Your dog ", "is Biscuit."]


@dataclass
class Served:
    url: str
    keys: Keys
    home: Path

    def client(self, headers: dict[str, str]) -> openai.OpenAI:
        token = headers["Authorization"].removeprefix("Bearer ")
        return openai.OpenAI(api_key=token, base_url=f"{self.url}/v1", max_retries=0, timeout=60)

    def rest(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        response = httpx.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kw)
        assert response.status_code < 300, response.text
        return response.json()

    def add(self, text: str, headers: dict[str, str]) -> str:
        return str(
            self.rest("POST", "/v1/memories", headers, json={"text": text})["items"][0]["id"]
        )


def _serve(home: Path, settings: dict[str, str]) -> Iterator[str]:
    """`engram serve` on a free port with these ENGRAM_* settings; yields its URL."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")},
        "ENGRAM_HOME": str(home),
        "ENGRAM_SERVER__RATE_LIMIT_PER_S": "0",
        **settings,
    }
    log = (home / "serve.log").open("w")
    server = subprocess.Popen(
        [str(ENGRAM), "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (home / "serve.log").read_text()
            assert time.monotonic() < deadline, "engram serve did not start"
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("chat")
    keys = make_keys(SQLiteKeyStore(home / "keys.db"))
    for url in _serve(home, {"ENGRAM_ANSWER__MODEL": "engram-lm"}):
        yield Served(url, keys, home)


def _engram(response: Any) -> dict[str, Any]:
    """The `engram` extension object of a completion or chunk."""
    extra = response.model_extra or {}
    assert "engram" in extra, response
    return dict(extra["engram"])


def _used(ext: dict[str, Any]) -> list[str]:
    return [m["id"] for m in ext["memories"]]


def _texts(served: Served, headers: dict[str, str]) -> list[str]:
    items = served.rest("GET", "/v1/memories", headers, params={"limit": 1000})["items"]
    return [item["memory"] for item in items]


def test_models_lists_the_served_model(served: Served) -> None:
    ids = [m.id for m in served.client(served.keys.alice).models.list()]
    assert ids == ["engram-lm", "engram"]


def test_completion_answers_with_the_owners_memories_and_stores_the_turn(served: Served) -> None:
    biscuit = served.add(BISCUIT, served.keys.alice)
    question = "What is my dog called, the one from Cascais?"
    raw = served.client(served.keys.alice).chat.completions.with_raw_response.create(
        model="engram",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": question},
        ],
        max_tokens=16,
    )
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.model == "engram-lm"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    ext = _engram(completion)
    assert ext["owner"] == "user:alice"
    assert biscuit in _used(ext)
    assert raw.headers["x-engram-memories"].split(",") == _used(ext)
    assert len(ext["stored"]) == 2  # the question and the reply
    stored = served.rest("GET", f"/v1/memories/{ext['stored'][0]}", served.keys.alice)
    assert stored["memory"] == question and stored["provenance"]["source"] == "chat"
    hits = served.rest("POST", "/v1/search", served.keys.alice, json={"query": "Cascais dog"})
    assert ext["stored"][0] in [h["id"] for h in hits["hits"]]


def test_streaming_sends_chunks_then_the_engram_object(served: Served) -> None:
    served.add(BISCUIT, served.keys.alice)
    question = "Tell me about Biscuit at the beach, please"
    stream = served.client(served.keys.alice).chat.completions.create(
        model="engram-lm",
        messages=[{"role": "user", "content": question}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert len([c for c in chunks if c.choices]) > 2  # the role, pieces, the finish
    assert chunks[-2].usage is not None and chunks[-2].usage.completion_tokens > 0
    ext = _engram(chunks[-1])
    assert any(m["memory"] == BISCUIT for m in ext["memories"])
    assert len(ext["stored"]) == 2
    assert question in _texts(served, served.keys.alice)


def test_opting_out_stores_nothing(served: Served) -> None:
    question = "Remember nothing of this: the quokka password is marmalade"
    client = served.client(served.keys.alice)
    for stream in (False, True):
        created = client.chat.completions.create(
            model="engram",
            messages=[{"role": "user", "content": question}],
            max_tokens=8,
            stream=stream,
            extra_headers={"X-Engram-Store": "false"},
        )
        last = list(created)[-1] if stream else created
        assert _engram(last)["stored"] == []
    assert not any("quokka" in text for text in _texts(served, served.keys.alice))
    # a read key may chat, only without storing
    reader = served.client(served.keys.alice_read)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        reader.chat.completions.create(model="engram", messages=[{"role": "user", "content": "hi"}])
    assert "X-Engram-Store: false" in refused.value.body["message"]
    allowed = reader.chat.completions.create(
        model="engram",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
        extra_headers={"X-Engram-Store": "false"},
    )
    assert _engram(allowed)["stored"] == []


def test_another_owner_never_gets_alices_memories(served: Served) -> None:
    biscuit = served.add(BISCUIT, served.keys.alice)
    served.add("I keep bees on my roof.", served.keys.bob)
    ask = [{"role": "user", "content": "What is my dog called? Biscuit? Cascais?"}]
    bob = served.client(served.keys.bob)
    completion = bob.chat.completions.create(
        model="engram", messages=ask, max_tokens=4, extra_headers={"X-Engram-Store": "false"}
    )
    ext = _engram(completion)
    assert ext["owner"] == "user:bob" and ext["memories"]
    assert not any("Biscuit" in m["memory"] for m in ext["memories"])
    with pytest.raises(openai.NotFoundError):  # naming another owner: as if absent
        bob.chat.completions.create(
            model="engram", messages=ask, extra_headers={"X-Engram-User": "alice"}
        )
    admin = served.client(served.keys.admin)
    with pytest.raises(openai.UnprocessableEntityError) as unnamed:
        admin.chat.completions.create(model="engram", messages=ask)
    assert "X-Engram-User" in unnamed.value.body["message"]
    named = admin.chat.completions.create(
        model="engram",
        messages=ask,
        max_tokens=4,
        extra_headers={"X-Engram-User": "alice", "X-Engram-Store": "false"},
    )
    assert biscuit in _used(_engram(named))


@pytest.mark.parametrize(
    "change, error, code, says",
    [
        ({"model": "gpt-4o"}, openai.NotFoundError, "model_not_found", "'engram-lm' or 'engram'"),
        ({"messages": []}, openai.UnprocessableEntityError, "invalid_input", "messages is empty"),
        (
            {"messages": [{"role": "robot", "content": "hi"}]},
            openai.UnprocessableEntityError,
            "invalid_request",
            "messages.0.role",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                ]
            },
            openai.UnprocessableEntityError,
            "invalid_input",
            "the last message must be the user's",
        ),
        ({"max_tokens": 100_000}, openai.UnprocessableEntityError, "invalid_input", "1 to 4096"),
        ({"n": 3}, openai.UnprocessableEntityError, "invalid_input", "'n' is not supported"),
        (
            {"messages": [{"role": "user", "content": "x" * 40_000}]},
            openai.UnprocessableEntityError,
            "invalid_input",
            "the limit is 32,000",
        ),
    ],
    ids=["model", "empty", "role", "last-not-user", "max-tokens", "n", "too-long"],
)
def test_bad_requests_raise_api_status_errors(
    served: Served, change: dict[str, Any], error: type[openai.APIStatusError], code: str, says: str
) -> None:
    request: dict[str, Any] = {"model": "engram", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(error) as raised:
        served.client(served.keys.alice).chat.completions.create(**{**request, **change})
    body = raised.value.body
    assert isinstance(body, dict) and body["code"] == code, body
    assert says in body["message"] and says in str(raised.value)


# -- an upstream OpenAI-compatible endpoint ------------------------------------------------


def _upstream(seen: list[dict[str, Any]]) -> FastAPI:
    """A chat endpoint that records each request and answers UPSTREAM_ANSWER."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> Response:
        body = await request.json()
        seen.append(body)
        base = {"id": "up-1", "created": 1, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(UPSTREAM_ANSWER)}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice]})

        def events() -> Iterator[str]:
            for piece in UPSTREAM_ANSWER:
                choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def test_upstream_gets_the_memories_and_its_answer_is_relayed(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    seen: list[dict[str, Any]] = []
    home = tmp_path_factory.mktemp("chat-upstream")
    keys = make_keys(SQLiteKeyStore(home / "keys.db"))
    with running_server(_upstream(seen)) as upstream:
        settings = {
            "ENGRAM_ANSWER__PROVIDER": "llm",
            "ENGRAM_LLM__PROVIDER": "openai",
            "ENGRAM_LLM__BASE_URL": f"{upstream}/v1",
            "ENGRAM_LLM__MODEL": "upstream-model",
        }
        for url in _serve(home, settings):
            served = Served(url, keys, home)
            biscuit = served.add(BISCUIT, keys.alice)
            client = served.client(keys.alice)
            assert [m.id for m in client.models.list()] == ["upstream-model", "engram"]
            ask = [{"role": "user", "content": "What is my dog called?"}]
            whole = client.chat.completions.create(
                model="engram", messages=ask, max_tokens=32, temperature=0.2
            )
            assert whole.choices[0].message.content == "".join(UPSTREAM_ANSWER)
            assert biscuit in _used(_engram(whole))
            chunks = list(client.chat.completions.create(model="engram", messages=ask, stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
                "".join(UPSTREAM_ANSWER)
            )
            assert biscuit in _used(_engram(chunks[-1]))
            texts = _texts(served, keys.alice)
    assert len(seen) == 2 and [s.get("stream") for s in seen] == [False, True]
    for sent in seen:
        assert sent["model"] == "upstream-model"
        system, user = sent["messages"]
        assert system["role"] == "system" and BISCUIT in system["content"]
        assert user == ask[0]
    assert seen[0]["temperature"] == 0.2 and seen[0]["max_tokens"] == 32
    assert texts.count("".join(UPSTREAM_ANSWER)) == 2  # both replies stored
