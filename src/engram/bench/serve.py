"""Load test of `engram serve` on loopback: N concurrent clients, mixed add / search / get.

The server is a real `engram serve` subprocess (its own interpreter, as in production) on a
fresh store; clients are asyncio tasks with keep-alive HTTP connections, each acting for
one of a few owners with its own write key. Every request counts: a non-2xx status or a
transport error is an error.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from engram.bench.report import machine, percentile
from engram.config import load_config
from engram.store.keys import open_keys

WORDS = (
    "tea coffee hiking Lisbon Tokyo dog greyhound marathon knee guitar wedding speech "
    "garden tomato recipe sister brother museum painting train bicycle novel chess"
).split()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))


def _start_server(home: Path, port: int, database_url: str | None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ENGRAM_HOME": str(home),
        **({"ENGRAM_DATABASE_URL": database_url} if database_url else {}),
        "ENGRAM_SERVER__RATE_LIMIT_PER_S": "0",  # measure the server, not the limiter
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [sys.executable, "-m", "engram", "serve", "--port", str(port)]
    return subprocess.Popen(
        [*command, "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL
    )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engram serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("engram serve did not become ready")


async def _client(
    n: int,
    url: str,
    token: str,
    stop_at: float,
    mix: dict[str, float],
    stats: dict[str, Any],
) -> None:
    rng = random.Random(n)
    ids: list[str] = []
    ops, weights = list(mix), list(mix.values())
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        while time.monotonic() < stop_at:
            op = rng.choices(ops, weights)[0] if ids else "add"
            start = time.perf_counter()
            try:
                if op == "add":
                    r = await http.post("/v1/memories", json={"text": _sentence(rng)})
                    if r.status_code == 201:
                        ids.append(r.json()["items"][0]["id"])
                        stats["acked"].append((token, ids[-1]))
                elif op == "search":
                    r = await http.post("/v1/search", json={"query": _sentence(rng), "k": 10})
                else:
                    r = await http.get(f"/v1/memories/{rng.choice(ids)}")
                ok = r.status_code < 300
            except httpx.HTTPError:
                ok = False
            stats["latency"][op].append(time.perf_counter() - start)
            if not ok:
                stats["errors"][op] += 1


def run(
    clients: int = 32,
    seconds: float = 60.0,
    owners: int = 8,
    seed_memories: int = 200,
    servers: int = 1,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Start `servers` servers on one fresh store (a fresh home; `database_url` for a
    shared PostgreSQL), seed it, run the mixed load with the clients spread over the
    servers, then read every acknowledged write back through another server than the one
    that took it; stop the servers."""
    if servers < 1 or (servers > 1 and not database_url):
        raise ValueError("several servers need one shared database: give --database-url")
    mix = {"add": 0.25, "search": 0.5, "get": 0.25}
    with tempfile.TemporaryDirectory(prefix="engram-serve-bench-") as tmp:
        # each server its own home, as on separate machines: on PostgreSQL the keys
        # created here are in the database, where every server finds them
        homes = [Path(tmp) / f"server-{i}" for i in range(servers)]
        database = {"database_url": database_url} if database_url else {}
        keys = open_keys(load_config(home=homes[0], **database))
        tokens = [keys.create(f"load-{i}", "write")[0] for i in range(owners)]
        keys.close()
        urls, procs = [], []
        try:
            for home in homes:
                port = _free_port()
                urls.append(f"http://127.0.0.1:{port}")
                procs.append(_start_server(home, port, database_url))
            for url, proc in zip(urls, procs, strict=True):
                _wait_ready(url, proc)
            _seed(urls[0], tokens, seed_memories)
            stats: dict[str, Any] = {
                "latency": {op: [] for op in mix},
                "errors": dict.fromkeys(mix, 0),
                "acked": [],
            }
            started = time.monotonic()

            async def load() -> None:
                stop_at = time.monotonic() + seconds
                await asyncio.gather(
                    *(
                        _client(n, urls[n % servers], tokens[n % owners], stop_at, mix, stats)
                        for n in range(clients)
                    )
                )

            asyncio.run(load())
            elapsed = time.monotonic() - started
            lost = _lost(urls[-1], stats["acked"])
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
    result = _summary(stats, elapsed, clients, seconds, owners, seed_memories, mix)
    result["config"].update(servers=servers, backend="postgres" if database_url else "sqlite")
    result["total"].update(acknowledged_writes=len(stats["acked"]), lost_writes=lost)
    return result


def _lost(url: str, acked: list[tuple[str, str]]) -> int:
    """Acknowledged adds that `url` (the last server; with several, not the one most of
    them went through) cannot read back."""
    missing = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for token, memory_id in acked:
            headers = {"Authorization": f"Bearer {token}"}
            missing += http.get(f"/v1/memories/{memory_id}", headers=headers).status_code != 200
    return missing


def _seed(url: str, tokens: list[str], total: int) -> None:
    """Give every owner memories to search, in batches of messages."""
    rng = random.Random(0)
    per_owner = max(1, total // len(tokens))
    for token in tokens:
        body = {"messages": [{"content": _sentence(rng)} for _ in range(per_owner)]}
        response = httpx.post(
            f"{url}/v1/memories",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
        )
        response.raise_for_status()


def _summary(
    stats: dict[str, Any],
    elapsed: float,
    clients: int,
    seconds: float,
    owners: int,
    seed_memories: int,
    mix: dict[str, float],
) -> dict[str, Any]:
    ops = {}
    for op, lat in stats["latency"].items():
        ops[op] = {
            "requests": len(lat),
            "errors": stats["errors"][op],
            "p50_ms": round(percentile(lat, 0.50) * 1000, 2),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
        }
    every = [x for lat in stats["latency"].values() for x in lat]
    return {
        "config": {
            "clients": clients,
            "seconds": seconds,
            "owners": owners,
            "seed_memories": seed_memories,
            "mix": mix,
            "search_k": 10,
        },
        "total": {
            "requests": len(every),
            "errors": sum(stats["errors"].values()),
            "throughput_rps": round(len(every) / elapsed, 1),
            "p50_ms": round(percentile(every, 0.50) * 1000, 2),
            "p99_ms": round(percentile(every, 0.99) * 1000, 2),
            "elapsed_s": round(elapsed, 1),
        },
        "ops": ops,
    }


def _servers(cfg: dict[str, Any]) -> str:
    n = int(cfg.get("servers", 1))
    if n == 1:
        return "A real `engram serve` (uvicorn, one process)"
    return f"{n} real `engram serve` processes (clients spread over them)"


def markdown(result: dict[str, Any], command: str) -> str:
    cfg, total = result["config"], result["total"]
    store = "PostgreSQL" if cfg.get("backend") == "postgres" else "SQLite"
    m = machine()
    lines = [
        "## Serving: REST load on loopback",
        "",
        f"`{command}`",
        "",
        f"{_servers(cfg)} on a fresh {store} store, "
        f"{cfg['clients']} concurrent keep-alive clients for {cfg['seconds']:g} s, each acting "
        f"for one of {cfg['owners']} owners with its own write key (rate limit off); "
        f"{cfg['seed_memories']} memories seeded; mix add {cfg['mix']['add']:.0%} / search "
        f"{cfg['mix']['search']:.0%} (k={cfg['search_k']}) / get {cfg['mix']['get']:.0%}. "
        f"Clients and server share the machine ({m['cpus']} CPUs, Python {m['python']}).",
        "",
        "| operation | requests | errors | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for op, s in result["ops"].items():
        lines.append(
            f"| {op} | {s['requests']} | {s['errors']} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} |"
        )
    lines += [
        f"| **all** | {total['requests']} | {total['errors']} | {total['p50_ms']:.1f} | "
        f"{total['p99_ms']:.1f} |",
        "",
        f"Throughput: **{total['throughput_rps']:.0f} requests/s** with {total['errors']} "
        "errors. Latency includes embedding the text of every add and search query on CPU. "
        f"Acknowledged adds read back through another server afterwards: "
        f"{total.get('acknowledged_writes', 0)}, lost: {total.get('lost_writes', 0)}.",
    ]
    return "\n".join(lines)
