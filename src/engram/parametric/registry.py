"""Adapter registry: one versioned directory per adapter, `<root>/<owner>/v<N>/` holding
`manifest.json` (what it was trained on, how, on which base model) next to peft's own
`adapter_config.json` + `adapter_model.safetensors` (loadable by `PeftModel.from_pretrained`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

import torch
from safetensors.torch import save

from engram.checksum import sha256_file
from engram.errors import (
    NotFoundError,
    SchemaVersionError,
    StoreError,
    ValidationError,
    write_error,
)
from engram.lm.fingerprint import model_fingerprint as model_fingerprint  # re-exported

if TYPE_CHECKING:
    from peft import PeftModel

FORMAT = 1
MANIFEST = "manifest.json"
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
_LEGACY_LENGTH = 32  # hex characters of a fingerprint saved before the shared one


class AdapterCorruptError(StoreError):
    """A stored adapter file is missing or fails its checksum: it is never loaded."""

    code = "adapter_corrupt"


@dataclass
class AdapterManifest:
    """Everything needed to trust and reproduce one adapter version."""

    owner: str
    version: int
    method: str
    base_model: str
    base_fingerprint: str
    memory_ids: list[str]
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    safeguards: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parents: list[int] = field(default_factory=list)
    weights_sha256: str = ""
    config_sha256: str = ""  # of adapter_config.json
    bytes: int = 0
    created_at: str = ""
    format: int = FORMAT
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        return data


def legacy_fingerprint(model: torch.nn.Module) -> str:
    """The 32-character fingerprint adapters were saved with before the activation and
    parametric tiers shared `engram.lm.fingerprint`; recomputed only to accept them."""
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(config.to_json_string(use_diff=False).encode())
    wrapped = hasattr(model, "get_base_model")  # a PeftModel: fingerprint the model under it
    base = cast("PeftModel", model).get_base_model() if wrapped else model
    for name, p in base.state_dict().items():
        if "lora_" in name or "osf_" in name:
            continue
        flat = p.detach().flatten()
        sample = flat[:: max(1, flat.numel() // 4096)][:4096].float().cpu()
        digest.update(name.replace(".base_layer", "").encode())
        digest.update(str(tuple(p.shape)).encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:32]


def trained_on(manifest: AdapterManifest, model: torch.nn.Module, fingerprint: str) -> bool:
    """Whether `manifest`'s adapter was trained on `model`, whose `model_fingerprint` is
    `fingerprint`. An adapter saved with the legacy fingerprint is checked against that."""
    if manifest.base_fingerprint == fingerprint:
        return True
    legacy = len(manifest.base_fingerprint) == _LEGACY_LENGTH
    return legacy and manifest.base_fingerprint == legacy_fingerprint(model)


class AdapterRegistry:
    """Versioned adapters of many owners under one root directory."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser()

    def _owner_dir(self, owner: str) -> Path:
        if not owner or len(owner) > 200:
            raise ValidationError("owner must be 1-200 characters")
        return self.root / quote(owner, safe="")

    def owners(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(unquote(p.name) for p in self.root.iterdir() if p.is_dir())

    def versions(self, owner: str) -> list[AdapterManifest]:
        folder = self._owner_dir(owner)
        if not folder.is_dir():
            return []
        found = [
            self._read(p)
            for p in folder.iterdir()
            if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit()
        ]
        return sorted(found, key=lambda m: m.version)

    def get(self, owner: str, version: int | None = None) -> AdapterManifest:
        """One version (the latest when `version` is None); NotFoundError if absent."""
        versions = self.versions(owner)
        if not versions:
            raise NotFoundError(f"no adapter for owner {owner!r}")
        if version is None:
            return versions[-1]
        for manifest in versions:
            if manifest.version == version:
                return manifest
        raise NotFoundError(f"owner {owner!r} has no adapter version {version}")

    def save(
        self, manifest: AdapterManifest, peft_config: Any, state: dict[str, torch.Tensor]
    ) -> AdapterManifest:
        """Write a new version atomically (temporary dir, then rename); returns it. A full
        disk is a DiskFullError naming the path; earlier versions are left as they were."""
        folder = self._owner_dir(manifest.owner)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            manifest.version = (
                max((m.version for m in self.versions(manifest.owner)), default=0) + 1
            )
            manifest.created_at = datetime.now(UTC).isoformat()
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
        except OSError as err:
            raise write_error(err, folder, other=StoreError) from err
        final = folder / f"v{manifest.version}"
        try:
            self._write_version(tmp, manifest, peft_config, state)
            os.replace(tmp, final)
        except OSError as err:
            raise write_error(err, final, other=StoreError) from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already once renamed
        manifest.path = final
        return manifest

    @staticmethod
    def _write_version(
        tmp: Path, manifest: AdapterManifest, peft_config: Any, state: dict[str, torch.Tensor]
    ) -> None:
        """The files of one version, with the checksums load verifies, flushed to disk."""
        tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        data = save(tensors, metadata={"format": "pt"})
        _write(tmp / WEIGHTS, data)
        peft_config.save_pretrained(str(tmp))
        manifest.weights_sha256 = hashlib.sha256(data).hexdigest()
        manifest.config_sha256 = sha256_file(tmp / CONFIG)
        manifest.bytes = len(data)
        _write(tmp / MANIFEST, json.dumps(manifest.to_json(), indent=2).encode("utf-8"))

    def delete(self, owner: str, version: int) -> None:
        manifest = self.get(owner, version)
        assert manifest.path is not None
        shutil.rmtree(manifest.path)

    @staticmethod
    def _read(folder: Path) -> AdapterManifest:
        try:
            data = json.loads((folder / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise StoreError(f"adapter {folder}: unreadable manifest ({err})") from err
        if not isinstance(data, dict) or not isinstance(data.get("format"), int):
            raise StoreError(f"adapter {folder}: manifest has no format number")
        if data["format"] > FORMAT:
            raise SchemaVersionError(
                f"adapter {folder} has format {data['format']}; this Engram reads up to {FORMAT}"
            )
        try:
            manifest = AdapterManifest(**data)
        except TypeError as err:
            raise StoreError(f"adapter {folder}: bad manifest ({err})") from err
        manifest.path = folder
        return manifest

    @staticmethod
    def verify(manifest: AdapterManifest) -> Path:
        """The weights file, after checking it (and the adapter config, when the manifest
        records its checksum) is the one the manifest describes; AdapterCorruptError, naming
        the file, when not."""
        assert manifest.path is not None
        weights = manifest.path / WEIGHTS
        _check(weights, manifest.weights_sha256)
        if manifest.config_sha256:  # adapters saved before config checksums have none
            _check(manifest.path / CONFIG, manifest.config_sha256)
        return weights


def _check(path: Path, expected: str) -> None:
    try:
        actual = sha256_file(path)
    except OSError as err:
        raise AdapterCorruptError(f"adapter file {path} is unreadable: {err.strerror}") from err
    if actual != expected:
        raise AdapterCorruptError(
            f"adapter file {path} is corrupt (sha256 mismatch): refusing to load it"
        )


def _write(path: Path, data: bytes) -> None:
    """Write and flush a file to disk (a full disk raises here, with its errno)."""
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
