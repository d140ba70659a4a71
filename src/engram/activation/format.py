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

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from engram.activation.block import KVBlock
from engram.activation.errors import KVCorruptError, KVFormatTooNewError, KVModelMismatchError
from engram.activation.layers import layer_from_tensors
from engram.checksum import sha256_file
from engram.errors import StoreError, write_error

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


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors, each with storage of its own: safetensors refuses tensors that
    share memory (a short block's KIVI residual window *is* its positions tensor)."""
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        t = tensor.contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _write(path: Path, data: bytes) -> None:
    """Write and flush a file to disk (a full disk raises here, with its errno)."""
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def save_block(block: KVBlock, directory: Path) -> Path:
    """Write `block` to `directory` atomically (a finished directory replaces any old one).
    A full disk is a DiskFullError naming the path; stored blocks are left as they were."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    except OSError as err:
        raise write_error(err, directory, other=StoreError) from err
    try:
        tensors: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(block.layers):
            tensors |= layer.tensors(f"layers.{i}")
        data = save(_unshared(tensors), metadata={"format": FORMAT})
        _write(staging / DATA, data)
        manifest = manifest_of(block, hashlib.sha256(data).hexdigest())
        _write(staging / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    except OSError as err:
        raise write_error(err, directory, other=StoreError) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed
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
        digest = sha256_file(data)
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
