"""Prometheus metrics in text format: requests, latencies, memories. No dependency.

Labels are route templates (`/v1/memories/{memory_id}`), never raw paths, so neither ids
nor owners reach the metrics and their number stays bounded.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counters and latency histograms by (method, route); a memory-count gauge."""

    def __init__(self, memory_counts: Callable[[], dict[str, int]], cache_s: float = 10.0):
        self._counts: dict[tuple[str, str, int], int] = {}
        self._hist: dict[tuple[str, str], list[float]] = {}  # bucket counts, then sum, count
        self._lock = threading.Lock()
        self._memory_counts = memory_counts
        self._cache_s = cache_s
        self._cached: tuple[float, dict[str, int]] | None = None
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            hist = self._hist.setdefault((method, route), [0.0] * (len(BUCKETS) + 2))
            hist[bisect.bisect_left(BUCKETS, seconds)] += 1  # index len(BUCKETS): +Inf only
            hist[-2] += seconds
            hist[-1] += 1

    def memories(self) -> dict[str, int]:
        """{'active', 'archived', 'owners'} over the whole store, at most every `cache_s`."""
        now = time.monotonic()
        cached = self._cached
        if cached is None or now - cached[0] > self._cache_s:
            cached = (now, self._memory_counts())
            self._cached = cached
        return cached[1]

    def render(self) -> str:
        lines = [
            "# HELP engram_http_requests_total HTTP requests by method, route and status.",
            "# TYPE engram_http_requests_total counter",
        ]
        with self._lock:
            counts = sorted(self._counts.items())
            hists = sorted((k, list(v)) for k, v in self._hist.items())
        for (method, route, status), n in counts:
            labels = f'method="{method}",route="{_escape(route)}",status="{status}"'
            lines.append(f"engram_http_requests_total{{{labels}}} {n}")
        lines += [
            "# HELP engram_http_request_duration_seconds Time to answer a request.",
            "# TYPE engram_http_request_duration_seconds histogram",
        ]
        for (method, route), hist in hists:
            labels = f'method="{method}",route="{_escape(route)}"'
            cumulative = 0.0
            for bound, in_bucket in zip((*BUCKETS, "+Inf"), hist[: len(BUCKETS) + 1], strict=True):
                cumulative += in_bucket
                name = "engram_http_request_duration_seconds_bucket"
                lines.append(f'{name}{{{labels},le="{bound}"}} {int(cumulative)}')
            lines.append(f"engram_http_request_duration_seconds_sum{{{labels}}} {hist[-2]:.6f}")
            lines.append(f"engram_http_request_duration_seconds_count{{{labels}}} {int(hist[-1])}")
        lines += [
            "# HELP engram_memories Memories in the store by state.",
            "# TYPE engram_memories gauge",
        ]
        store = self.memories()
        for state in ("active", "archived"):
            lines.append(f'engram_memories{{state="{state}"}} {store.get(state, 0)}')
        lines += [
            "# HELP engram_owners Owners (MemCubes) in the store.",
            "# TYPE engram_owners gauge",
            f"engram_owners {store.get('owners', 0)}",
            "# HELP engram_start_time_seconds When the server started (Unix time).",
            "# TYPE engram_start_time_seconds gauge",
            f"engram_start_time_seconds {self.started:.3f}",
        ]
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsMiddleware:
    """Times every HTTP request and counts it under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - start)
