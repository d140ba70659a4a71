"""Property tests over the CLI's file inputs: `engram import` on random and malformed
JSON-lines and LoCoMo files never prints a traceback, exits 0 (stored) or 2 (refused,
naming the file), and a refused file writes nothing.

Examples are derandomized and bounded; the CLI runs in-process with typer's runner, so
its embedder is built once for every example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from _engram_helpers import plain
from engram import Memory
from engram.cli import app

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
NASTY = ["", " ", "\x00", "null", "-1", "1e999", "12", "2024-13-45T25:00", "a" * 3000]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(NASTY)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
MESSAGE = st.fixed_dictionaries(
    {"content": st.text(min_size=1, max_size=40) | SCALARS},
    optional={
        "role": st.sampled_from(["user", "assistant"]) | SCALARS,
        "timestamp": st.sampled_from(["2023-05-08T13:56:00", "12", "yesterday"]) | SCALARS,
        "source_id": st.text(max_size=12) | SCALARS,
        "name": SCALARS,
    },
)
LINE = st.fixed_dictionaries(
    {"messages": st.lists(MESSAGE, max_size=3) | SCALARS},
    optional={"user_id": st.text(max_size=10) | SCALARS, "session_id": SCALARS},
)
runner = CliRunner()


def _import(home: Path, path: Path) -> Any:
    return runner.invoke(app, ["--home", str(home), "--json", "import", str(path), "-u", "fz"])


def _count(home: Path) -> int:
    with Memory(home=home, embedder={"provider": "numpy-bert"}) as memory:
        return sum(memory.stats(user_id=o.split(":", 1)[1]).active for o in memory.owners())


def _check(home: Path, path: Path) -> None:
    before = _count(home) if (home / "engram.db").exists() else 0
    result = _import(home, path)
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        error = json.loads(result.stdout)["error"]
        assert error["message"] and path.name in plain(error["message"]), error
        assert (_count(home) if (home / "engram.db").exists() else 0) == before


@FUZZ
@given(lines=st.lists(LINE | JSON, min_size=1, max_size=4))
def test_random_json_lines_never_crash_the_import(
    lines: list[Any], tmp_path_factory: Any
) -> None:
    folder = tmp_path_factory.mktemp("fuzz-jsonl")
    path = folder / "input.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    _check(folder / "home", path)


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_never_crash_the_import(raw: bytes, tmp_path_factory: Any) -> None:
    folder = tmp_path_factory.mktemp("fuzz-bytes")
    path = folder / "input.json"
    path.write_bytes(raw)
    _check(folder / "home", path)


@FUZZ
@given(
    sample=st.fixed_dictionaries(
        {"sample_id": SCALARS | st.text(min_size=1, max_size=8), "conversation": JSON},
        optional={"qa": JSON},
    )
)
def test_random_locomo_samples_never_crash_the_import(
    sample: dict[str, Any], tmp_path_factory: Any
) -> None:
    folder = tmp_path_factory.mktemp("fuzz-locomo")
    path = folder / "input.json"
    path.write_text(json.dumps([sample]), encoding="utf-8")
    _check(folder / "home", path)
