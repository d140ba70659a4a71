"""The package as PyPI would ship it: wheel and sdist build, the wheel installs into a
fresh venv with each extra, and `engram --help`, `--version` and a search run there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import engram
from engram.extras import DISTRIBUTION, EXTRAS

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TORCH = "torch==2.13.0"  # the CPU build, installed first as the README says
VARIANTS = ["", "server", "activation", "parametric"]


def test_distribution_name_version_and_extras_agree() -> None:
    project = PYPROJECT["project"]
    assert project["name"] == DISTRIBUTION == "engram-os"
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"] == (
        "engram._version.__version__"
    )
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {engram.__version__} " in changelog, "CHANGELOG.md has no entry for the version"
    extras = project["optional-dependencies"]
    for extra, modules in EXTRAS.items():  # the error message names an extra that exists
        names = {re.split(r"[<>=\[ ]", dep)[0].lower() for dep in extras[extra]}
        assert names == set(modules), extra


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    return out


@pytest.fixture(scope="module")
def venvs(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One fresh venv per extra, made by uv (pip takes minutes a venv; the same wheels)."""
    wheel = next(dist.glob("*.whl"))
    root = tmp_path_factory.mktemp("venvs")
    uv = str(Path(sys.executable).with_name("uv"))
    # where this machine keeps the CPU torch wheel, as pip is configured here
    links = [f"--find-links={p}" for p in os.environ.get("PIP_FIND_LINKS", "").split() if p]
    made = {}
    for extra in VARIANTS:
        venv = root / (extra or "base")
        _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=root)
        target = f"{wheel}[{extra}]" if extra else str(wheel)
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        _run([uv, "pip", "install", "--quiet", *links, TORCH, target], cwd=root, env=env)
        made[extra] = venv
    yield made


def test_wheel_and_sdist_hold_the_package(dist: Path) -> None:
    wheel = next(dist.glob(f"engram_os-{engram.__version__}-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "engram/py.typed",
        "engram/data/sample_conversation.json",
        "engram/data/engram-lm/model.safetensors",
        "engram/server/static/index.html",
    ):
        assert needed in names, needed
    assert not any(n.startswith("tests/") for n in names)
    sdist = next(dist.glob(f"engram_os-{engram.__version__}.tar.gz"))
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    assert any(m.endswith("/CHANGELOG.md") for m in members)
    assert any(m.endswith("/src/engram/_version.py") for m in members)


@pytest.mark.slow
@pytest.mark.parametrize("extra", VARIANTS)
def test_installed_wheel_runs(venvs: dict[str, Path], extra: str, tmp_path: Path) -> None:
    bin_ = venvs[extra] / "bin"
    env = {**os.environ, "ENGRAM_HOME": str(tmp_path / "home"), "COLUMNS": "80"}
    assert "Usage: engram" in _run([str(bin_ / "engram"), "--help"], tmp_path, env)
    version = _run([str(bin_ / "engram"), "--version"], tmp_path, env)
    assert version.strip() == f"engram {engram.__version__}"
    _run([str(bin_ / "engram"), "add", "Maya adopted a greyhound", "-u", "maya"], tmp_path, env)
    found = _run([str(bin_ / "engram"), "search", "dog", "-u", "maya"], tmp_path, env)
    assert "greyhound" in found
    serve = subprocess.run(
        [str(bin_ / "engram"), "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        input="",
    ) if extra != "server" else None
    if serve is not None:  # without the extra: a clear error, not a traceback
        assert serve.returncode == 1 and "pip install 'engram-os[server]'" in serve.stderr
        assert "Traceback" not in serve.stderr
    probe = "import importlib.util as u; print(u.find_spec('fastapi') is not None)"
    has_server = _run([str(bin_ / "python"), "-c", probe], tmp_path, env).strip() == "True"
    assert has_server == (extra == "server")
    if extra == "parametric":
        _run([str(bin_ / "python"), "-c", "import engram.parametric.learner"], tmp_path, env)
