"""The command line is one package: `python -m engram` is `engram`, flags included, and no
other module holds terminal code (typer, rich)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import engram

SRC = Path(engram.__file__).parent
ENGRAM = str(Path(sys.executable).with_name("engram"))
STARTS = {"engram": [ENGRAM], "python -m engram": [sys.executable, "-m", "engram"]}


def _run(start: list[str], *args: str, env_home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENGRAM_HOME": str(env_home), "COLUMNS": "80"}
    return subprocess.run(
        [*start, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--json", "stats"],
        ["--json", "jobs", "ls"],
        ["jobs", "ls", "--json"],
        ["--json", "list", "-u", "alice"],
        ["--json", "show", "nope"],
        ["list", "-u", ""],
    ],
)
def test_python_dash_m_engram_is_engram(tmp_path: Path, args: list[str]) -> None:
    """Same stdout, stderr and exit code; --home and --json are honoured by both."""
    results = {}
    for name, start in STARTS.items():
        home = tmp_path / name.replace(" ", "_") / "home"
        unused = tmp_path / name.replace(" ", "_") / "env-home"
        needs_home = args != ["--version"]
        done = _run(start, *(["--home", str(home)] if needs_home else []), *args, env_home=unused)
        text = (done.stdout + done.stderr).replace(str(home), "HOME")
        results[name] = (done.returncode, text)
        assert not unused.exists(), f"{name} ignored --home"
        if needs_home:
            assert home.is_dir(), f"{name} ignored --home"
        if "--json" in args:
            json.loads(done.stdout)  # ignoring --json would print a table or a card
    assert results["engram"] == results["python -m engram"]


def test_flags_are_honoured_by_python_dash_m_engram(tmp_path: Path) -> None:
    home = tmp_path / "h1"
    done = _run(
        STARTS["python -m engram"],
        "--home",
        str(home),
        "--json",
        "stats",
        env_home=tmp_path / "other",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["store"].startswith(str(home))
    jobs = _run(
        STARTS["python -m engram"],
        "--home",
        str(home),
        "--json",
        "jobs",
        "ls",
        env_home=tmp_path / "other",
    )
    assert jobs.returncode == 0 and json.loads(jobs.stdout) == []


def _terminal_imports(path: Path) -> set[str]:
    """The top-level packages among typer and rich that a module imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names} & {"typer", "rich"}
    return found


def test_only_the_cli_package_holds_terminal_code() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(names)
        for path in SRC.rglob("*.py")
        if (SRC / "cli") not in path.parents and (names := _terminal_imports(path))
    }
    assert offenders == {}
    assert _terminal_imports(SRC / "cli" / "common.py") == {"typer", "rich"}  # the check works


def test_the_cli_package_has_no_import_cycle() -> None:
    """Command modules import the common module and the binder, never the app or the
    package back."""
    for path in (SRC / "cli").glob("*.py"):
        if path.name in ("__init__.py", "__main__.py", "app.py"):
            continue
        tree = ast.parse(path.read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        } | {
            f"engram.cli.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "engram.cli"
            for alias in node.names
        }
        cli_imports = {m for m in imported if m.startswith("engram.cli")}
        shared = {"engram.cli", "engram.cli.common", "engram.cli.bind"}
        if path.name == "bind.py":  # the binder sits on common only
            shared = {"engram.cli.common"}
        assert cli_imports <= shared, path.name
