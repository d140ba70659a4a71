"""Importing a cube bundle into a home. Every check runs before anything is written: the
manifest's format, every file's checksum, every table's digest, the artifacts' owner, and
whether the target holds the owner (identical: skipped; other data: refused). KV blocks
and adapters built for another model than the target's `kv.model` / `lora.base_model` are
left out (models load only when the bundle has some); memories are re-embedded when the
target's embedder is another. Then the derived tiers' files are placed and the text tier
written in one transaction; if that fails, the files placed are removed again."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from engram.bundle.errors import BundleError
from engram.bundle.export import FINGERPRINT_FIELD, artifact_models
from engram.bundle.manifest import BundleReport, opened, verify
from engram.bundle.merge import OwnerMerge, plan_merge
from engram.bundle.tables import read_tables
from engram.embed import Embedder
from engram.errors import StoreError, ValidationError, write_error
from engram.scope import Scope
from engram.store.migrate import TABLES, OwnerDump
from engram.store.vector_index import encode_vector
from engram.text.tier import TextTier
from engram.tiers import ACTIVATION, PARAMETRIC, TEXT, Tier

if TYPE_CHECKING:
    from engram.activation.tier import ActivationTier
    from engram.config import EngramConfig
    from engram.parametric.tier import ParametricTier
    from engram.store.base import Store


def import_bundle(
    path: Path,
    *,
    config: EngramConfig,
    store: Store,
    embedder: Embedder,
    vectors: tuple[str, int],
    derived: Callable[[str], tuple[Tier[Any, Any], ...]],
) -> BundleReport:
    """Import the bundle at `path` (a directory or a tar) as its owner's cube. `vectors`:
    the embedder (name, dimension) of the target's vectors; `embedder` re-embeds the
    bundle's memories when it holds another's."""
    try:
        with opened(path, Path(config.home)) as root:
            return _import(root, path, config, store, (embedder, vectors), derived)
    except OSError as err:
        raise write_error(err, path, "import the bundle", other=StoreError) from err


def _import(
    root: Path,
    path: Path,
    config: EngramConfig,
    store: Store,
    embedders: tuple[Embedder, tuple[str, int]],
    derived: Callable[[str], tuple[Tier[Any, Any], ...]],
) -> BundleReport:
    manifest = verify(root)
    owner = _owner_of(manifest, path)
    dump = _checked_dump(root, manifest)
    files = manifest["files"]
    report = BundleReport(
        "imported",
        owner,
        str(path),
        memories=len(dump.tables["memories"]),
        files=len(files) + 1,
        bytes=sum(int(f["bytes"]) for f in files.values()),
    )
    models = _checked_models(root, manifest, owner)
    kept = _compatible(config, models, report)
    dropped = {(t, k) for t, keys in models.items() for k in keys if k not in kept[t]}
    dump.tables["tier_artifacts"] = [
        r for r in dump.tables["tier_artifacts"] if (r[0], r[1]) not in dropped
    ]
    embedder, vectors = embedders
    source = manifest["embedder"].get("name"), manifest["embedder"].get("dim")
    if source != vectors:
        _reembed(dump, embedder)
        report.reembedded = True
        report.notes.append(
            f"re-embedded {len(dump.tables['memories'])} memories and "
            f"{len(dump.tables['feedback_queries'])} feedback queries with {embedder.name} "
            f"({embedder.dim}-d); the bundle's vectors are of {source[0]} ({source[1]}-d)"
        )
    text = TextTier(None, owner=owner, store=store)
    merge, placed, held = _write(root, dump, kept, text, derived(owner))
    report.activation = sorted(kept[ACTIVATION])
    report.parametric = sorted(kept[PARAMETRIC], key=lambda v: int(v[1:]))
    report.added = merge.counts()
    if placed:
        report.added["artifacts"] = placed
    if not report.added:
        report.action = "skipped"
        report.notes.append(f"{owner} is held already with everything the bundle has")
    elif held:
        report.action = "updated"
        report.notes.append(f"{owner} was held already: added what the bundle has that it lacked")
    return report


def _write(
    root: Path,
    dump: OwnerDump,
    kept: dict[str, set[str]],
    text: TextTier,
    derived: tuple[Tier[Any, Any], ...],
) -> tuple[OwnerMerge, int, bool]:
    """Place the kept artifacts, then write the text tier (all of it for a new owner, what
    it adds for a held one): the change made, the artifacts placed, whether the owner was
    held. A conflict is found before anything is written; files placed are removed on
    failure."""
    held = text.dump()
    plan_merge(held or OwnerDump(text.owner), dump)  # BundleConflictError: nothing written
    tiers = {tier.name: tier for tier in derived}
    kv = cast("ActivationTier", tiers[ACTIVATION])
    lora = cast("ParametricTier", tiers[PARAMETRIC])
    before = {a.key for a in kv.held()}, {a.key for a in lora.held()}
    try:
        kv.load(root / ACTIVATION, keys=kept[ACTIVATION])
        lora.load(root / PARAMETRIC, versions=kept[PARAMETRIC])
        merge = text.merge(dump)
    except BaseException:
        kv.discard({a.key for a in kv.held()} - before[0])
        lora.discard({a.key for a in lora.held()} - before[1])
        raise
    placed = len({a.key for a in kv.held()} - before[0]) + len(
        {a.key for a in lora.held()} - before[1]
    )
    return merge, placed, held is not None


def _owner_of(manifest: dict[str, Any], path: Path) -> str:
    try:
        return Scope.parse(manifest["owner"])
    except ValidationError as err:
        raise BundleError(f"bundle {path} names no valid owner: {err}") from err


def _checked_dump(root: Path, manifest: dict[str, Any]) -> OwnerDump:
    dump = read_tables(root / TEXT, manifest["owner"])
    for table, (rows, digest) in dump.digests().items():
        want = manifest["tables"].get(table)
        if not isinstance(want, dict) or (want.get("rows"), want.get("sha256")) != (rows, digest):
            raise BundleError(f"table {table} of bundle {root} does not match its manifest digest")
    return dump


def _checked_models(root: Path, manifest: dict[str, Any], owner: str) -> dict[str, dict[str, str]]:
    """The artifacts' model fingerprints, checked against the manifest and the owner."""
    models = artifact_models(root)
    if manifest.get("models") != models:
        raise BundleError(f"the model fingerprints in {root}/manifest.json do not match its files")
    for tier, keys in models.items():
        for key in keys:
            if tier == PARAMETRIC and not re.fullmatch(r"v[1-9][0-9]*", key):
                raise BundleError(f"{tier}/{key} is not an adapter version (v<N>)")
            data = json.loads((root / tier / key / "manifest.json").read_text(encoding="utf-8"))
            who = data.get("meta", {}).get("owner") if tier == ACTIVATION else data.get("owner")
            if who != owner:
                raise BundleError(f"{tier}/{key} belongs to {who!r}, not the bundle's {owner}")
    return models


def _compatible(
    config: EngramConfig, models: dict[str, dict[str, str]], report: BundleReport
) -> dict[str, set[str]]:
    """Per derived tier, the artifacts built for the target's configured model; the others
    are noted in `report.dropped`. Loads each configured model once, only if needed."""
    configured = {ACTIVATION: config.kv.model, PARAMETRIC: config.lora.base_model}
    setting = {ACTIVATION: "kv.model", PARAMETRIC: "lora.base_model"}
    fingerprints: dict[str | None, str | None] = {}
    kept: dict[str, set[str]] = {tier: set() for tier in FINGERPRINT_FIELD}
    for tier, artifacts in models.items():
        for key, fingerprint in sorted(artifacts.items()):
            model = configured[tier]
            if model not in fingerprints:
                fingerprints[model] = _fingerprint(model, config, report)
            target = fingerprints[model]
            if target == fingerprint:
                kept[tier].add(key)
            elif target is not None:
                report.dropped.append(
                    f"{tier} {key}: built for model {fingerprint[:12]}, not for the configured "
                    f"{setting[tier]} ({target[:12]})"
                )
            else:
                report.dropped.append(f"{tier} {key}: no model to check it against")
    return kept


def _fingerprint(model: str | None, config: EngramConfig, report: BundleReport) -> str | None:
    """The fingerprint of a configured model (None: the packaged Engram LM); None with a
    note when torch is not installed."""
    try:
        from engram.lm import load_model
        from engram.lm.fingerprint import model_fingerprint
    except ImportError as err:
        report.notes.append(f"KV blocks and adapters left out: {err}")
        return None
    from engram.models.local import configured_checkpoint

    lm, _ = load_model(configured_checkpoint(model, config))
    return model_fingerprint(lm)


def _reembed(dump: OwnerDump, embedder: Embedder) -> None:
    """Every memory's index text and every feedback query embedded again, in place."""
    for table, text_column, vector_column in (
        ("memories", "index_text", "embedding"),
        ("feedback_queries", "query", "vector"),
    ):
        columns = TABLES[table]
        at_text, at_vector = columns.index(text_column), columns.index(vector_column)
        rows = dump.tables[table]
        vectors = embedder.embed([str(r[at_text]) for r in rows])
        dump.tables[table] = [
            (*r[:at_vector], encode_vector(v), *r[at_vector + 1 :])
            for r, v in zip(rows, vectors, strict=True)
        ]
