"""`engram bench cli`: the CLI as a user meets it, each command a whole new process.

Times `engram --help`, `add`, `search`, `list` and `serve` (until /healthz answers) on a
fresh demo store: median, min and max wall seconds and the peak RSS of each process."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

_SCRIPT = Path(sys.executable).with_name("engram")  # the console script a user runs
ENGRAM = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "engram"]
COMMANDS: dict[str, list[str]] = {
    "engram --help": ["--help"],
    "engram add TEXT -u maya-tomas": ["add", "Biscuit sleeps all day", "-u", "maya-tomas"],
    "engram search greyhound -u maya-tomas": ["search", "greyhound", "-u", "maya-tomas"],
    "engram list -u maya-tomas": ["list", "-u", "maya-tomas"],
}


# Run by a fresh, small Python: Linux charges a child the peak RSS of the process that
# spawned it (the old address space at exec), so the spawner must be small, not this one.
_SPAWNER = """
import os, sys, time
quiet = os.open(os.devnull, os.O_WRONLY)
start = time.perf_counter()
to_null = [(os.POSIX_SPAWN_DUP2, quiet, 1), (os.POSIX_SPAWN_DUP2, quiet, 2)]
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=to_null)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one process, from the kernel's accounting."""
    done = subprocess.run(
        [sys.executable, "-S", "-c", _SPAWNER, *argv],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall, peak_kib, code = done.stdout.split()
    if int(code):
        raise RuntimeError(f"{' '.join(argv)} exited {code}")
    return float(wall), int(peak_kib) / 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_ready(env: dict[str, str]) -> tuple[float, float]:
    """Seconds from `engram serve` starting to its first 200 on /healthz."""
    port = _free_port()
    argv = [*ENGRAM, "serve", "--port", str(port), "--log-level", "warning"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - start, float("nan")
            except httpx.HTTPError:
                time.sleep(0.02)
        raise RuntimeError(f"engram serve exited {proc.returncode} before answering")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    walls = [w for w, _ in samples]
    peaks = [p for _, p in samples if p == p]
    return {
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "max_s": round(max(walls), 3),
        "peak_mib": round(max(peaks), 1) if peaks else float("nan"),
    }


def run(runs: int = 5, serve: bool = True) -> dict[str, Any]:
    """Each command `runs` times after one warm-up, on a demo store in a temporary home."""
    with tempfile.TemporaryDirectory(prefix="engram-bench-cli-") as home:
        env = {**os.environ, "ENGRAM_HOME": home, "COLUMNS": "80"}
        _timed([*ENGRAM, "demo"], env)
        rows: dict[str, dict[str, float]] = {}
        for name, args in COMMANDS.items():
            _timed([*ENGRAM, *args], env)
            rows[name] = _summary([_timed([*ENGRAM, *args], env) for _ in range(runs)])
        if serve:
            _serve_ready(env)
            rows["engram serve (until /healthz answers)"] = _summary(
                [_serve_ready(env) for _ in range(runs)]
            )
    return {"config": {"runs": runs, "warmup": 1}, "commands": rows}


def markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        "## CLI start-up (whole processes)",
        "",
        f"Command: `{command}` — each command a new process, {result['config']['runs']} runs "
        "after one warm-up, on a fresh demo store.",
        "",
        "| command | median s | min s | max s | peak MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in result["commands"].items():
        peak = "–" if row["peak_mib"] != row["peak_mib"] else f"{row['peak_mib']:.0f}"
        lines.append(
            f"| `{name}` | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['max_s']:.2f} | "
            f"{peak} |"
        )
    return "\n".join(lines)
