"""Failed authentication is limited per client address, before the key lookup: guessing
keys gets 429 with Retry-After, while a valid key from another address is unaffected.
The limiter's clock is frozen, so nothing here depends on the machine's speed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from _server_helpers import Keys, make_keys
from engram import Memory
from engram.config import ServerConfig
from engram.errors import ConfigError
from engram.server import limits
from engram.server.app import create_app
from engram.server.limits import RateLimiter
from engram.store.keys import ApiKey
from engram.store.sqlite_keys import SQLiteKeyStore

ATTACKER, USER = "203.0.113.7", "198.51.100.20"
BAD = {"Authorization": "Bearer egk_guessed-key-0000000000000000000000000000"}
MCP_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(limits.time, "monotonic", fake.monotonic)
    return fake


class CountingKeys(SQLiteKeyStore):
    """A KeyStore that counts lookups."""

    lookups = 0

    def authenticate(self, token: str) -> ApiKey | None:
        self.lookups += 1
        return super().authenticate(token)


@pytest.fixture
def served(tmp_path: Path, clock: Clock) -> Iterator[tuple[Any, CountingKeys, Keys]]:
    def serve(**settings: Any) -> TestClient:
        """A client at ATTACKER's address; `client.at(USER)` is one at another address."""
        app = create_app(memory, keys, ServerConfig(rate_limit_per_s=0, **settings))
        client = TestClient(app, client=(ATTACKER, 4000))
        client.at = lambda address: TestClient(app, client=(address, 4000))  # type: ignore[attr-defined]
        return client

    with Memory(home=tmp_path, embedder=_no_embedder) as memory:
        keys = CountingKeys(tmp_path / "keys.db")
        yield serve, keys, make_keys(keys)


def _no_embedder() -> Any:  # listing memories never embeds
    raise AssertionError("no test here embeds")


def _get(client: TestClient, headers: dict[str, str], address: str = ATTACKER) -> Any:
    if address != ATTACKER:
        client = client.at(address)  # type: ignore[attr-defined]
    return client.get("/v1/memories", params={"user_id": "alice"}, headers=headers)


def test_bad_keys_get_429_after_the_burst_before_any_lookup(served: Any, clock: Clock) -> None:
    serve, keys, good = served
    with serve(auth_failure_burst=5, auth_failure_rate_per_s=0.5) as client:
        statuses = [_get(client, BAD).status_code for _ in range(5)]
        assert statuses == [401] * 5 and keys.lookups == 5
        refused = _get(client, BAD)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["Retry-After"] == "2"  # one failure refills in 1 / 0.5 s
        assert refused.json()["error"]["details"] == {"retry_after_s": 2.0}
        # blocked before the lookup: even a valid key from this address is refused
        assert _get(client, good.alice).status_code == 429
        assert keys.lookups == 5
        # another address is not affected, with a good key or a bad one
        assert _get(client, good.alice, USER).status_code == 200
        assert _get(client, BAD, USER).status_code == 401
        clock.now += 2.0  # one failure's worth refilled
        assert _get(client, good.alice).status_code == 200
        assert _get(client, BAD).status_code == 401
        assert _get(client, BAD).status_code == 429


def test_nine_hundred_guesses_are_mostly_refused_with_defaults(served: Any) -> None:
    serve, keys, _ = served
    defaults = ServerConfig()
    with serve() as client:
        codes = [_get(client, BAD).status_code for _ in range(900)]
    assert codes[: defaults.auth_failure_burst] == [401] * defaults.auth_failure_burst
    assert codes[defaults.auth_failure_burst :] == [429] * (900 - defaults.auth_failure_burst)
    assert keys.lookups == defaults.auth_failure_burst


def test_mcp_endpoint_shares_the_failure_limit(served: Any) -> None:
    serve, keys, good = served
    with serve(auth_failure_burst=3) as client:
        for _ in range(3):
            answer = client.post("/mcp", json=MCP_LIST, headers={**MCP_HEADERS, **BAD})
            assert answer.status_code == 401
        refused = client.post("/mcp", json=MCP_LIST, headers={**MCP_HEADERS, **good.alice})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert _get(client, BAD).status_code == 429  # the same bucket as REST
    assert keys.lookups == 3


def test_a_missing_header_is_not_counted(served: Any) -> None:
    serve, keys, _ = served
    with serve(auth_failure_burst=2) as client:
        assert {_get(client, {}).status_code for _ in range(20)} == {401}
        assert _get(client, BAD).status_code == 401
    assert keys.lookups == 1


def test_rate_zero_turns_the_failure_limit_off(served: Any) -> None:
    serve, _, _ = served
    with serve(auth_failure_rate_per_s=0, auth_failure_burst=1) as client:
        assert {_get(client, BAD).status_code for _ in range(50)} == {401}


def test_no_auth_server_has_no_failure_limit(tmp_path: Path, clock: Clock) -> None:
    with Memory(home=tmp_path, embedder=_no_embedder) as memory:
        config = ServerConfig(rate_limit_per_s=0, auth_failure_burst=1)
        app = create_app(memory, None, config)
        with TestClient(app, base_url="http://127.0.0.1") as client:  # loopback Host only
            codes = {
                client.get("/v1/memories?user_id=a", headers=BAD).status_code for _ in range(5)
            }
    assert codes == {200}


def test_limiter_wait_spends_nothing(clock: Clock) -> None:
    limiter = RateLimiter(rate=1.0, burst=2)
    assert limiter.wait("a") == 0.0
    assert limiter.take("a") == 0.0 and limiter.take("a") == 0.0
    assert limiter.wait("a") == pytest.approx(1.0)
    assert limiter.wait("a") == pytest.approx(1.0)  # peeking again changes nothing
    clock.now += 0.25
    assert limiter.wait("a") == pytest.approx(0.75)
    assert limiter.wait("b") == 0.0


@pytest.mark.parametrize(
    "settings",
    [{"auth_failure_burst": 0}, {"auth_failure_rate_per_s": -1}, {"auth_failure_burst": "x"}],
)
def test_failure_limit_settings_are_checked(settings: dict[str, Any]) -> None:
    from engram.config import load_config

    with pytest.raises(ConfigError, match="auth_failure"):
        load_config(server=settings)
