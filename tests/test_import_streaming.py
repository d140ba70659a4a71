"""JSON-lines imports stream: the file is checked whole, then written a batch at a time, so
memory stays bounded; auto-detection, the messages rule and the CLI's bar before errors."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _engram_helpers import HashEmbedder
from engram import Memory, ValidationError
from engram.cli import app
from engram.importers import ImportPlan, import_file, plan_import, run_import


@pytest.fixture
def mem(tmp_path: Path) -> Iterator[Memory]:
    with Memory(home=tmp_path / "home", embedder=HashEmbedder(64)) as memory:
        yield memory


def write_lines(path: Path, n: int, **extra: object) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            line = {"content": f"line {i} about the number {i}", "user_id": f"u{i % 3}"}
            fh.write(json.dumps({**line, "source_id": f"s{i}", **extra}) + "\n")
    return path


def test_run_import_reads_one_batch_ahead_not_the_file(
    tmp_path: Path, mem: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = plan_import(write_lines(tmp_path / "a.jsonl", 1000), memory=mem)
    read = 0
    original = ImportPlan.adds

    def counted(self: ImportPlan) -> Iterator:
        nonlocal read
        for add in original(self):
            read += 1
            yield add

    monkeypatch.setattr(ImportPlan, "adds", counted)
    read_at_write: list[int] = []
    monkeypatch.setattr(mem, "add_batch", _spy(mem.add_batch, lambda: read_at_write.append(read)))
    report = run_import(mem, plan, batch_rows=100)
    assert report.stored == 1000
    assert read_at_write == [100 * (i + 1) for i in range(10)]


def _spy(fn: Callable[..., Any], before: Callable[[], None]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        before()
        return fn(*args, **kwargs)

    return wrapped


def _peak(mem: Memory, path: Path) -> int:
    tracemalloc.start()
    try:
        run_import(mem, plan_import(path, memory=mem), batch_rows=200)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Four times the lines, about the same peak (a whole-file plan grows fourfold)."""
    peaks = []
    for n in (1000, 4000):
        with Memory(home=tmp_path / f"h{n}", embedder=HashEmbedder(64)) as memory:
            peaks.append(_peak(memory, write_lines(tmp_path / f"{n}.jsonl", n)))
    assert peaks[1] < 1.5 * peaks[0], peaks


def test_an_error_on_the_last_line_writes_nothing(tmp_path: Path, mem: Memory) -> None:
    path = write_lines(tmp_path / "a.jsonl", 600)
    with path.open("a") as fh:
        fh.write('{"content": "", "user_id": "u1"}\n')
    with pytest.raises(ValidationError, match=r"a.jsonl:601: message content is empty"):
        import_file(mem, path)
    assert mem.owners() == []


def test_source_ids_repeated_across_batches_are_stored_once(tmp_path: Path, mem: Memory) -> None:
    path = write_lines(tmp_path / "a.jsonl", 300)
    with path.open("a") as fh:  # line 301 repeats line 1, batches apart
        fh.write(json.dumps({"content": "again", "user_id": "u0", "source_id": "s0"}) + "\n")
    seen: list[tuple[int, int]] = []
    report = run_import(
        mem,
        plan_import(path, memory=mem),
        progress=lambda done, total: seen.append((done, total)),
        batch_rows=64,
    )
    assert (report.rows, report.stored, report.skipped, report.owners) == (301, 300, 1, 3)
    assert seen[-1] == (301, 301)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    again = import_file(mem, path)
    assert (again.stored, again.skipped) == (0, 301)


def test_a_json_array_line_is_json_lines_not_locomo(tmp_path: Path, mem: Memory) -> None:
    path = tmp_path / "arr.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(ValidationError, match=r"arr.jsonl:1: each line must be a JSON object"):
        import_file(mem, path)
    path.write_text('{"content": "fine", "user_id": "a"}\n[1, 2]\n')
    with pytest.raises(ValidationError, match=r"arr.jsonl:2: each line must be a JSON object"):
        import_file(mem, path)


def test_locomo_errors_name_the_file(tmp_path: Path, mem: Memory) -> None:
    path = tmp_path / "conv.json"
    path.write_text('[{"sample_id": "a"}]')
    with pytest.raises(ValidationError, match=r"conv.json: sample 0 has no 'conversation'"):
        import_file(mem, path, "locomo")
    path.write_text('[\n {"sample_id": "a",\n  oops}\n]\n')
    with pytest.raises(ValidationError, match=r"conv.json:3: cannot read"):
        import_file(mem, path)


def test_messages_must_be_a_list(tmp_path: Path, mem: Memory) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"messages": "hello", "user_id": "a"}\n')
    with pytest.raises(ValidationError, match=r"m.jsonl:1: 'messages' must be a list"):
        import_file(mem, path)
    assert mem.owners() == []


def test_cli_reports_a_bad_file_before_drawing_a_bar(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"content": "fine", "user_id": "a"}\n{"messages": "hello", "user_id": "a"}\n')
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["--home", str(home), "import", str(path)])
    assert result.exit_code == 2, result.output
    assert "bad.jsonl:2" in result.output
    assert "importing" not in result.output and "0/?" not in result.output
