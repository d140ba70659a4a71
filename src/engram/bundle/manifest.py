"""The manifest of a cube bundle and the checks an import runs before reading anything:
the format version, every file's size and SHA-256, no file missing or extra, no path (or
tar member) escaping the bundle, no link."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from engram.bundle.errors import BundleError, BundleFormatError
from engram.checksum import sha256_file

FORMAT = "engram-cube"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class BundleReport:
    """What an export or import did. `action`: 'exported', 'imported', 'updated' (the
    target held the owner: the bundle added what it lacked, `added` says what) or
    'skipped' (the target held everything the bundle has)."""

    action: str
    owner: str
    path: str
    memories: int = 0
    files: int = 0
    bytes: int = 0
    activation: list[str] = field(default_factory=list)  # KV block keys kept
    parametric: list[str] = field(default_factory=list)  # adapter versions kept
    dropped: list[str] = field(default_factory=list)  # artifacts left out, with why
    reembedded: bool = False
    added: dict[str, int] = field(default_factory=dict)  # rows per table; memories_updated
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def safe_relative(name: str, what: str) -> PurePosixPath:
    """`name` as a path inside the bundle; BundleError if it is absolute or climbs out."""
    path = PurePosixPath(name)
    if not name or "\\" in name or path.is_absolute() or ".." in path.parts:
        raise BundleError(f"{what} {name!r} escapes the bundle: refused")
    return path


def file_entries(root: Path) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file under `root` but the manifest, by relative path."""
    return {
        path.relative_to(root).as_posix(): {
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST
    }


def write_manifest(root: Path, data: dict[str, Any]) -> dict[str, Any]:
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **data}
    manifest["files"] = file_entries(root)
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False)
    (root / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return manifest


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise BundleError(f"{root} is not a cube bundle: it has no {MANIFEST}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{MANIFEST} of {root} is unreadable: {err}") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{root}/{MANIFEST} is not a cube bundle manifest ({FORMAT!r})")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"{root}/{MANIFEST} has no format version")
    if version > FORMAT_VERSION:
        raise BundleFormatError(
            f"bundle {root} has format version {version}; this Engram reads up to "
            f"{FORMAT_VERSION}: upgrade Engram to import it"
        )
    for key, kind in (("owner", str), ("files", dict), ("tables", dict), ("embedder", dict)):
        if not isinstance(data.get(key), kind):
            raise BundleError(f"{root}/{MANIFEST}: {key!r} is missing or malformed")
    return data


def verify(root: Path) -> dict[str, Any]:
    """The manifest of the bundle at `root`, after checking every file against it; a
    BundleError naming the first file that is missing, extra, altered or a link."""
    manifest = _read_manifest(root)
    listed: dict[str, Any] = manifest["files"]
    for name in listed:
        safe_relative(name, "file")
    present: set[str] = set()
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise BundleError(f"{name} in bundle {root} is a link or special file: refused")
        if path.is_file() and name != MANIFEST:
            present.add(name)
    for name in sorted(present - set(listed)):
        raise BundleError(f"file {name} in bundle {root} is not in its manifest: refused")
    for name in sorted(set(listed) - present):
        raise BundleError(f"file {name} of bundle {root} is missing")
    for name, entry in sorted(listed.items()):
        path = root / name
        if not isinstance(entry, dict) or path.stat().st_size != entry.get("bytes"):
            raise BundleError(f"file {name} of bundle {root} has the wrong size (tampered?)")
        if sha256_file(path) != entry.get("sha256"):
            raise BundleError(f"file {name} of bundle {root} fails its SHA-256 (tampered?)")
    return manifest


def _extract(archive: Path, dest: Path) -> None:
    """Unpack a bundle tar member by member: regular files and directories only, each
    inside `dest` (no absolute path, no '..', no link, no duplicate)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            seen: set[str] = set()
            for member in tar.getmembers():
                name = safe_relative(member.name.rstrip("/"), "tar member").as_posix()
                if not (member.isfile() or member.isdir()):
                    raise BundleError(f"tar member {member.name!r} is a link or device: refused")
                if name in seen:
                    raise BundleError(f"tar member {member.name!r} occurs twice: refused")
                seen.add(name)
                target = dest / name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                source = tar.extractfile(member)
                if source is None:
                    raise BundleError(f"tar member {member.name!r} cannot be read")
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, target.open("wb") as fh:
                    shutil.copyfileobj(source, fh, 1 << 20)
    except (tarfile.TarError, EOFError) as err:
        raise BundleError(f"{archive} is not a readable tar: {err}") from err


@contextmanager
def opened(path: Path, scratch: Path) -> Iterator[Path]:
    """The bundle at `path` as a directory: itself, or a tar unpacked under `scratch`
    (removed afterwards)."""
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise BundleError(f"no cube bundle at {path}")
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=scratch) as tmp:
        _extract(path, Path(tmp))
        yield Path(tmp)


def write_tar(root: Path, archive: Path) -> None:
    """`root`'s files as an uncompressed tar with stable metadata (same bundle, same bytes)."""

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False, filter=plain)
