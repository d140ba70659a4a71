"""KV blocks and adapters in `engram migrate --artifacts-to DIR`: the files of every
artifact a migrated owner's provenance names (`tier_artifacts`), copied from the source's
artifacts directory into the target's, each placed whole or not at all and compared byte
for byte with its source afterwards (each block and adapter also carries its own
checksums, checked when it is loaded).

An artifact the target directory holds already with the same files is skipped (a run
can be repeated); one held with other files stops the migration at that owner, before
any of the owner's files are written. An artifact whose files are gone from the source
(evicted, or built on another machine) is listed as missing: its provenance moves, as it
does on the source, and the tier rebuilds it when it is needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engram.activation.tier import block_dir
from engram.parametric.tier import adapter_dir
from engram.store.migrate import OwnerDump
from engram.tiers import ACTIVATION, PARAMETRIC, copy_dirs, same_files


@dataclass
class ArtifactCopy:
    """Artifact directories copied, held already (identical) and missing at the source."""

    source: Path
    target: Path
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "from": str(self.source),
            "to": str(self.target),
            "copied": len(self.copied),
            "skipped": len(self.skipped),
            "missing": self.missing,
        }


def _where(root: Path, owner: str, tier: str, artifact: str) -> Path:
    if tier == ACTIVATION:
        return block_dir(root, artifact)
    if tier == PARAMETRIC:
        return adapter_dir(root, owner, artifact)
    raise ValueError(f"no files for tier {tier!r}")


def copy_owner_artifacts(dump: OwnerDump, report: ArtifactCopy) -> None:
    """Copy the files of every artifact `dump`'s provenance names; see the module."""
    tiers = (ACTIVATION, PARAMETRIC)
    named = sorted({(row[0], row[1]) for row in dump.tables["tier_artifacts"] if row[0] in tiers})
    pairs: list[tuple[Path, Path]] = []
    for tier, artifact in named:
        src = _where(report.source, dump.owner, tier, artifact)
        dst = _where(report.target, dump.owner, tier, artifact)
        label = f"{tier}:{dump.owner}:{artifact}"
        if not src.is_dir():
            report.missing.append(label)
        elif dst.exists():
            pairs.append((src, dst))  # copy_dirs refuses it unless identical
            report.skipped.append(label)
        else:
            pairs.append((src, dst))
            report.copied.append(label)
    copy_dirs(pairs)
    for src, dst in pairs:
        if not same_files(src, dst):
            raise OSError(f"{dst} does not read back as {src}")
