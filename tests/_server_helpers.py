"""Shared by the server tests: a real uvicorn server on a free loopback port, and keys."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from engram.store.keys import KeyStore


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Keys:
    """Bearer headers of two owners' keys and an admin key."""

    alice: dict[str, str]
    bob: dict[str, str]
    admin: dict[str, str]
    alice_read: dict[str, str]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_keys(store: KeyStore) -> Keys:
    return Keys(
        alice=bearer(store.create("alice", "write")[0]),
        bob=bearer(store.create("bob", "write")[0]),
        admin=bearer(store.create(None, "admin")[0]),
        alice_read=bearer(store.create("alice", "read")[0]),
    )
