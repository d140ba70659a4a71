"""Bearer-key authentication, the per-key rate limit and the per-address limit on failed
authentications, shared by REST and MCP."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engram.config import ServerConfig
from engram.memory import Memory
from engram.server.access import Principal, ScopedMemory
from engram.server.errors import ApiError
from engram.server.limits import RateLimiter
from engram.server.metrics import Metrics
from engram.store.keys import KeyStore

bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `engram keys create` (not needed with `engram serve --no-auth`).",
)


@dataclass
class ServerState:
    """What every request needs; kept on `app.state.engram`."""

    memory: Memory
    keys: KeyStore | None  # None: --no-auth
    settings: ServerConfig
    metrics: Metrics
    limiter: RateLimiter = field(init=False)
    failures: RateLimiter = field(init=False)  # failed authentications per client address

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.settings.rate_limit_per_s, self.settings.rate_limit_burst)
        self.failures = RateLimiter(
            self.settings.auth_failure_rate_per_s, self.settings.auth_failure_burst
        )

    def authenticate(self, authorization: str | None, client: str) -> Principal:
        """The caller of a request with this Authorization header; ApiError 401/429."""
        if self.keys is None:
            principal, bucket = Principal.local(), f"client:{client}"
        else:
            principal = self._key_holder(self.keys, authorization, client)
            bucket = f"key:{principal.key_id}"
        wait = self.limiter.take(bucket)
        if wait > 0:
            message = f"rate limit of {self.settings.rate_limit_per_s:g} requests/s exceeded"
            raise _too_many(message, wait)
        return principal

    def _key_holder(self, keys: KeyStore, authorization: str | None, client: str) -> Principal:
        """The key's principal. An address that failed too often is refused before the key
        is even looked up, so guessing keys stays slow; a valid key elsewhere is unaffected."""
        address = f"addr:{client}"
        wait = self.failures.wait(address)
        if wait > 0:
            raise _too_many("too many failed authentications from this client address", wait)
        scheme, _, token = (authorization or "").partition(" ")
        key = keys.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if key is not None:
            return Principal.of_key(key)
        if not authorization:
            message = "missing 'Authorization: Bearer <key>' header"
        else:  # a credential was offered and was wrong: that is what gets counted
            self.failures.take(address)
            message = "unknown or revoked API key"
        raise ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _too_many(message: str, wait: float) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        message,
        {"retry_after_s": round(wait, 3)},
        headers={"Retry-After": str(math.ceil(wait))},
    )


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.engram
    return state


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """FastAPI dependency: the authenticated caller (401 / 429 otherwise)."""
    header = request.headers.get("authorization")
    client = request.client.host if request.client else "unknown"
    if credentials is not None:
        header = f"Bearer {credentials.credentials}"
    return server_state(request).authenticate(header, client)


def scoped_memory(
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
) -> ScopedMemory:
    """FastAPI dependency: the Memory as this caller may use it."""
    return ScopedMemory(server_state(request).memory, caller, source="rest")


Caller = Annotated[ScopedMemory, Depends(scoped_memory)]
