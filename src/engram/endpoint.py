"""JSON over HTTP to OpenAI-compatible APIs (embeddings, chat): bearer auth, a timeout,
bounded retries of transient failures, and httpx errors translated into Engram's own."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from engram.errors import EngramError

log = logging.getLogger(__name__)

_TRANSIENT = {408, 409, 429, 500, 502, 503, 504}


class JSONEndpoint:
    """POSTs JSON to `base_url` + path; raises `error` (an EngramError class) on failure.

    Timeouts, connection errors and 408/429/5xx answers are retried `max_retries` times
    with exponential backoff; other HTTP errors and bodies that are not JSON are not."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 0,
        backoff_s: float = 0.5,
        error: type[EngramError] = EngramError,
        what: str = "endpoint",
    ):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s
        )
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.error, self.what = error, what

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        """The decoded JSON body of a successful answer."""
        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.post(path, json=payload)
                if response.status_code in _TRANSIENT and attempt < self.max_retries:
                    raise _Transient(f"HTTP {response.status_code}")
                response.raise_for_status()
                return response.json()
            except (httpx.TransportError, _Transient) as err:
                if attempt >= self.max_retries:
                    raise self.error(f"{self.what} failed: {err}") from err
                log.warning("%s: %s; retry %d of %d", self.what, err, attempt + 1, self.max_retries)
                time.sleep(self.backoff_s * 2**attempt)
            except httpx.HTTPError as err:
                raise self.error(f"{self.what} failed: {err}") from err
            except ValueError as err:  # the body is not JSON
                raise self.unexpected(err) from err
        raise AssertionError("unreachable")

    def unexpected(self, err: Exception) -> EngramError:
        """The error for a JSON body that lacks what the API promises."""
        return self.error(f"{self.what} returned an unexpected body: {err}")

    def close(self) -> None:
        self._client.close()


class _Transient(Exception):
    """A retryable HTTP status (raised and caught inside `post` only)."""
