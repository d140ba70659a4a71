"""On disk, a stored KV cache is a directory: `manifest.json` (versioned) + `kv.safetensors`.

Never pickled. Loading checks the format version, the data file's sha256, and (when given)
the model fingerprint and tokenizer hash, and refuses with a precise error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from engram.activation.block import KVBlock
from engram.activation.errors import KVCorruptError, KVFormatTooNewError, KVModelMismatchError
from engram.activation.layers import layer_from_tensors

FORMAT = "engram-kv"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATA = "kv.safetensors"
REQUIRED = (
    "format_version",
    "model_fingerprint",
    "dtype",
    "n_tokens",
    "token_ids",
    "method",
    "layers",
    "nbytes",
    "fp16_nbytes",
    "data",
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_of(block: KVBlock, sha256: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_fingerprint": block.model_fingerprint,
        "tokenizer_hash": block.tokenizer_hash,
        "dtype": block.dtype,
        "n_tokens": block.n_tokens,
        "token_ids": block.token_ids,
        # Each layer's kept prompt positions are the tensor `layers.<i>.pos` in the data file.
        "positions": {"tensor": "layers.<i>.pos", "range": [0, block.n_tokens]},
        "method": block.method,
        "layers": [{**layer.meta(), "kept": layer.tokens} for layer in block.layers],
        "nbytes": block.nbytes,
        "fp16_nbytes": block.fp16_nbytes,
        "data": {"file": DATA, "sha256": sha256},
        "meta": block.meta,
    }


def save_block(block: KVBlock, directory: Path) -> Path:
    """Write `block` to `directory` atomically (a finished directory replaces any old one)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        tensors = {}
        for i, layer in enumerate(block.layers):
            tensors |= {k: v.contiguous() for k, v in layer.tensors(f"layers.{i}").items()}
        save_file(tensors, str(staging / DATA), metadata={"format": FORMAT})
        manifest = manifest_of(block, _sha256(staging / DATA))
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise KVCorruptError(f"{directory}: no {MANIFEST}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise KVCorruptError(f"{path}: unreadable manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise KVCorruptError(f"{path}: not an Engram KV manifest")
    missing = [key for key in REQUIRED if key not in manifest]
    if missing:
        raise KVCorruptError(f"{path}: manifest lacks {', '.join(missing)}")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise KVCorruptError(f"{path}: no format_version")
    if version > FORMAT_VERSION:
        raise KVFormatTooNewError(
            f"{directory} has KV format version {version}; this Engram reads up to "
            f"{FORMAT_VERSION}: upgrade Engram or rebuild the cache"
        )
    return manifest


def check_model(
    manifest: dict[str, Any], where: Path, fingerprint: str | None, tokenizer: str | None
) -> None:
    if fingerprint is not None and manifest["model_fingerprint"] != fingerprint:
        raise KVModelMismatchError(
            f"{where} was built for model {manifest['model_fingerprint'][:12]}, not for the "
            f"given model {fingerprint[:12]}: rebuild it for this model"
        )
    stored = manifest.get("tokenizer_hash")
    if tokenizer is not None and stored is not None and stored != tokenizer:
        raise KVModelMismatchError(
            f"{where} was built with tokenizer {stored[:12]}, not {tokenizer[:12]}"
        )


def load_block(
    directory: Path, fingerprint: str | None = None, tokenizer_hash: str | None = None
) -> KVBlock:
    """Read a stored block; refuse a newer format, a corrupt file or another model."""
    manifest = read_manifest(directory)
    check_model(manifest, directory, fingerprint, tokenizer_hash)
    data = directory / DATA
    try:
        digest = _sha256(data)
    except OSError as err:
        raise KVCorruptError(f"{data}: unreadable ({err.strerror or err})") from err
    if digest != manifest["data"]["sha256"]:
        raise KVCorruptError(f"{data}: checksum mismatch (the file is damaged)")
    try:
        tensors = load_file(str(data))
        layers = [
            layer_from_tensors(f"layers.{i}", tensors, meta)
            for i, meta in enumerate(manifest["layers"])
        ]
    except (SafetensorError, KeyError, ValueError) as err:
        raise KVCorruptError(f"{data}: cannot decode ({err})") from err
    return KVBlock(
        layers=layers,
        token_ids=[int(t) for t in manifest["token_ids"]],
        model_fingerprint=manifest["model_fingerprint"],
        tokenizer_hash=manifest.get("tokenizer_hash"),
        dtype=manifest["dtype"],
        method=manifest["method"],
        meta=manifest.get("meta", {}),
    )
