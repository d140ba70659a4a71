"""Scale-out on one PostgreSQL database: two `engram serve` processes and one
`engram worker`. A memory written through server A is found by the next search through
server B (within a second), the worker runs the extraction jobs the write queued, and a key
made or revoked through the database holds on both servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn", reason="pip install 'engram-os[server]'")
httpx = pytest.importorskip("httpx")

WAIT_S = 180.0  # two servers load the embedding model at once on shared cores
TURNS = [
    "Maya adopted a grey cat from the shelter on Elm street.",
    "Tomas fixed the old bicycle with a new chain.",
    "The team dinner moved to Friday at the harbour restaurant.",
    "Maya started learning the cello last winter.",
    "Tomas planted tomatoes on the balcony in April.",
]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path, url: str) -> dict[str, str]:
    return {**os.environ, "ENGRAM_HOME": str(home), "ENGRAM_DATABASE_URL": url}


@contextmanager
def _serve(home: Path, url: str, log: Path) -> Iterator[subprocess.Popen]:
    """`engram serve` on a free port; stopped with SIGINT (killed if it will not stop)."""
    port = _free_port()
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engram",
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=_env(home, url),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        proc.base_url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ready(servers: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + WAIT_S
    waiting = list(servers)
    while waiting:
        for proc in list(waiting):
            if proc.poll() is not None:
                text = "\n".join(log.read_text() for log in logs)
                raise AssertionError(f"engram serve exited ({proc.returncode}): {text}")
            try:
                if httpx.get(f"{proc.base_url}/healthz", timeout=5).status_code == 200:  # type: ignore[attr-defined]
                    waiting.remove(proc)
            except httpx.TransportError:
                pass  # not listening yet
        if time.monotonic() > deadline:
            raise AssertionError("engram serve did not answer /healthz")
        time.sleep(0.1)


def test_two_servers_and_a_worker_share_one_database(pg_url: str, tmp_path: Path) -> None:
    # each process its own home, as on separate machines: memories and keys are in
    # PostgreSQL; the key is made by `engram keys create` against the database
    homes = [tmp_path / name for name in ("a", "b", "worker")]
    made = subprocess.run(
        [sys.executable, "-m", "engram", "--json", "keys", "create", "--owner", "alice"],
        env=_env(homes[2], pg_url),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["key"]
    assert not (homes[2] / "keys.db").exists()  # not in the home: in the database
    auth = {"Authorization": f"Bearer {token}"}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(_serve(home, pg_url, log))
            for home, log in zip(homes, logs, strict=False)
        )
        _ready([a, b], logs)
        with httpx.Client(timeout=60, headers=auth) as http:

            def add(server: Any, texts: list[str]) -> list[str]:
                body = {"messages": [{"content": t} for t in texts], "session_id": "s1"}
                done = http.post(f"{server.base_url}/v1/memories", json=body)
                assert done.status_code == 201, done.text
                return [item["id"] for item in done.json()["items"]]

            def search(server: Any, query: str, **extra: Any) -> list[str]:
                found = http.post(f"{server.base_url}/v1/search", json={"query": query, **extra})
                assert found.status_code == 200, found.text
                return [hit["id"] for hit in found.json()["hits"]]

            ids: list[str] = []
            seen_after_s: list[float] = []
            for text in TURNS:  # B caches the cube from the first round on
                ids += add(a, [text])
                written = time.perf_counter()  # A acknowledged the write
                hits = search(b, "What did Maya and Tomas do?", k=10)  # B's very next search
                seen_after_s.append(time.perf_counter() - written)
                assert sorted(hits) == sorted(ids)  # every write so far, at once
            shown = ", ".join(f"{s * 1000:.0f}" for s in seen_after_s)
            print(f"server B found each write through A after {shown} ms")
            median = sorted(seen_after_s)[len(seen_after_s) // 2]
            assert median < 1.0, f"server B saw writes after {shown} ms"

            worker = subprocess.run(
                [sys.executable, "-m", "engram", "--json", "worker", "--once"],
                env=_env(homes[2], pg_url),
                capture_output=True,
                text=True,
                timeout=WAIT_S,
            )
            assert worker.returncode == 0, worker.stderr
            lines = [json.loads(line) for line in worker.stdout.splitlines()]
            ran = [line for line in lines if line["event"] == "job"]
            assert ran and all(line["state"] == "done" for line in ran)
            assert {line["extractor"] for line in ran} >= {"session-summary"}
            assert lines[-1]["reason"] == "drained" and lines[-1]["failed"] == 0
            summaries = search(a, "Maya and Tomas session", types=["summary"], k=5)
            assert len(summaries) == 1  # derived once, and visible through both servers
            assert search(b, "Maya and Tomas session", types=["summary"], k=5) == summaries

            revoked = subprocess.run(  # revoked through the database: both refuse it at once
                [sys.executable, "-m", "engram", "keys", "revoke", _key_id(token, pg_url)],
                env=_env(homes[2], pg_url),
                capture_output=True,
                text=True,
                timeout=WAIT_S,
            )
            assert revoked.returncode == 0, revoked.stderr
            for server in (a, b):
                refused = http.post(f"{server.base_url}/v1/search", json={"query": "Maya"})
                assert refused.status_code == 401


def _key_id(token: str, url: str) -> str:
    from engram.store.postgres.keys import PostgresKeyStore

    keys = PostgresKeyStore(url)
    try:
        found = keys.authenticate(token)
        assert found is not None
        return found.id
    finally:
        keys.close()
