"""Writing a cube bundle: each tier exports under its own folder (text/, activation/,
parametric/), then the manifest records the format, the owner, the embedder, the model
fingerprints of the KV blocks and adapters, every table's digest and every file's size
and SHA-256. Written next to its final place and renamed into it: a failed export leaves
nothing behind."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engram.bundle.errors import BundleError
from engram.bundle.manifest import BundleReport, write_manifest, write_tar
from engram.bundle.tables import read_tables
from engram.cube import MemCube
from engram.errors import StoreError, write_error
from engram.tiers import ACTIVATION, PARAMETRIC, TEXT

# Which manifest field of each derived tier's artifacts names the model it was built for.
FINGERPRINT_FIELD = {ACTIVATION: "model_fingerprint", PARAMETRIC: "base_fingerprint"}


def artifact_models(root: Path) -> dict[str, dict[str, str]]:
    """Per derived tier: artifact key -> model fingerprint, read from the artifacts'
    own manifests under `root`."""
    models: dict[str, dict[str, str]] = {}
    for tier, key in FINGERPRINT_FIELD.items():
        folder = root / tier
        found: dict[str, str] = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            try:
                data = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise BundleError(f"{tier}/{path.name}/manifest.json is unreadable: {err}") from err
            if not isinstance(data, dict) or not isinstance(data.get(key), str):
                raise BundleError(f"{tier}/{path.name}/manifest.json names no {key}")
            found[path.name] = data[key]
        models[tier] = found
    return models


def export_bundle(cube: MemCube, embedder: tuple[str, int], path: Path, tar: bool) -> BundleReport:
    """Write `cube` (every tier) as a bundle at `path` (a directory, or a tar when `tar`)."""
    from engram._version import __version__

    if path.exists() or path.is_symlink():
        raise BundleError(f"{path} exists already: export the cube to a new path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".bundle-", dir=path.parent) as tmp:
            root = Path(tmp) / "bundle"
            manifest = _write(cube, embedder, root, __version__)
            final = Path(tmp) / "bundle.tar" if tar else root
            if tar:
                write_tar(root, final)
            os.replace(final, path)
    except OSError as err:
        raise write_error(err, path, "export the cube to", other=StoreError) from err
    files = manifest["files"]
    return BundleReport(
        "exported",
        cube.owner,
        str(path),
        memories=manifest["tables"]["memories"]["rows"],
        files=len(files) + 1,
        bytes=sum(int(f["bytes"]) for f in files.values()),
        activation=sorted(manifest["models"][ACTIVATION]),
        parametric=sorted(manifest["models"][PARAMETRIC]),
    )


def _write(cube: MemCube, embedder: tuple[str, int], root: Path, version: str) -> dict[str, Any]:
    tiers = cube.tiers
    for name in (TEXT, ACTIVATION, PARAMETRIC):
        tiers[name].export(root / name)
    digests = read_tables(root / TEXT, cube.owner).digests()  # as an import will read them
    return write_manifest(
        root,
        {
            "engram_version": version,
            "owner": cube.owner,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "embedder": {"name": embedder[0], "dim": embedder[1]},
            "models": artifact_models(root),
            "tables": {t: {"rows": n, "sha256": d} for t, (n, d) in digests.items()},
        },
    )
