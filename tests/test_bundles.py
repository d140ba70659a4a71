"""Cube bundles: one owner's cube (the packaged sample conversation with version chains, an
archive, a pin, feedback, a policy, a KV block and an adapter) exported and imported into a
fresh home reads back identically; re-importing changes nothing; a tampered, extra, newer
or escaping bundle is refused before anything is written; another embedder re-embeds;
blocks of another model are left out; an erased memory never travels.

Models: the packaged Engram LM (`kv.model` and `lora.base_model` default to it)."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _engram_helpers import HashEmbedder
from engram import AsyncMemory, Memory
from engram.bundle import BundleConflictError, BundleError, BundleFormatError
from engram.bundle.manifest import MANIFEST, write_manifest
from engram.embed import Embedder
from engram.importers import import_file
from engram.scope import Scope
from engram.store.migrate import OwnerDump
from engram.text.tier import TextTier
from engram.tiers import ACTIVATION, PARAMETRIC, TEXT

SAMPLE = Path(str(resources.files("engram") / "data" / "sample_conversation.json"))
USER = "maya-tomas"
OWNER = f"user:{USER}"
QUERIES = ["What is the name of Tomas's dog?", "Where did Maya travel?", "bicycle chain"]
SECRET = "Zephyrine Quokkabottom hides the vault code 7731 under the cobalt frog."
LORA = {"epochs": 1, "safeguards": []}
runner = CliRunner()


def _open(home: Path, embedder: Embedder) -> Memory:
    return Memory(home=home, embedder=embedder, lora=LORA)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A home whose owner has something in every tier; returns the home."""
    home = tmp_path_factory.mktemp("source-home")
    m = _open(home, embedder)
    try:
        import_file(m, SAMPLE)
        assert all(j.state.value == "done" for j in m.run_jobs())
        first = m.get_all(user_id=USER, limit=4).items
        m.update(first[0].id, "Maya moved to Porto in 2024", reason="corrected", user_id=USER)
        m.update(first[0].id, "Maya moved to Porto in May 2024", user_id=USER)
        m.delete(first[1].id, reason="wrong", user_id=USER)  # archived
        m.pin(first[2].id, reason="keep", user_id=USER)
        hit = m.search(QUERIES[0], user_id=USER, k=3)[1]
        m.feedback(QUERIES[0], cited=[hit.id], user_id=USER)
        m.set_retention_policy(user_id=USER, memory_type="turn", max_active=500)
        m.kv.build(user_id=USER, ids=[first[0].id, first[3].id])
        cube = m.cube(Scope.of(user_id=USER))
        assert cube is not None  # an adapter of a few memories: training all takes long
        cube.tiers[PARAMETRIC].build(first[2:4], settings=m.config.lora)
    finally:
        m.close()
    return home


@pytest.fixture(scope="module")
def bundle(source: Path, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "maya"
    m = _open(source, embedder)
    try:
        report = m.export_cube(path, user_id=USER)
    finally:
        m.close()
    assert report.action == "exported" and report.memories > 20
    assert len(report.activation) == 1 and report.parametric == ["v1"]
    return path


def _everything(m: Memory) -> dict[str, Any]:
    """What a user can read of the owner, key-free."""
    items = m.get_all(user_id=USER, limit=1000, include_archived=True).items
    return {
        "owners": m.owners(),
        "items": [i.model_dump(mode="json") for i in items],
        "histories": {
            i.id: [v.model_dump(mode="json") for v in m.history(i.id, user_id=USER)] for i in items
        },
        "stats": m.stats(user_id=USER).model_dump(mode="json"),
        "policy": m.retention_policy(user_id=USER, memory_type="turn").model_dump(),
        "retention": [
            m.retention(i.id, user_id=USER).model_dump(
                mode="json", exclude={"retrievability", "at"}
            )
            for i in items
        ],
        "jobs": sorted((j.extractor, j.state.value, j.attempts) for j in m.jobs(user_id=USER)),
        "kv": sorted(e.key for e in m.kv.ls(user_id=USER)),
        "lora": [(a.version, a.weights_sha256) for a in m.lora.ls(user_id=USER)],
        "tiers": {
            i.id: sorted((h.tier, h.key, h.current) for h in m.tiers(i.id, user_id=USER))
            for i in items
            if i.state.value == "active"
        },
    }


def _dump(m: Memory) -> OwnerDump:
    dump = TextTier(None, owner=OWNER, store=m.store).dump()
    assert dump is not None
    return dump


def _unread(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in i.items() if "access" not in k} for i in items]


def _searches(m: Memory) -> list[list[tuple[str, float]]]:
    return [[(h.id, round(h.score, 6)) for h in m.search(q, user_id=USER, k=8)] for q in QUERIES]


def _read(home: Path, embedder: Embedder) -> tuple[dict[str, Any], list[Any]]:
    """Everything, then the searches (which record accesses: read last, flushed on close)."""
    m = _open(home, embedder)
    try:
        seen = _everything(m)
    finally:
        m.close()
    m = _open(home, embedder)
    try:
        return seen, _searches(m)
    finally:
        m.close()


@pytest.mark.parametrize("as_tar", [False, True])
def test_a_bundle_imports_into_a_fresh_home_identically(
    source: Path, bundle: Path, embedder: Embedder, tmp_path: Path, as_tar: bool
) -> None:
    path = bundle
    if as_tar:
        path = tmp_path / "maya.tar"
        with _open(source, embedder) as m:
            assert m.export_cube(path, user_id=USER).files == 1 + len(_manifest(bundle)["files"])
        assert tarfile.is_tarfile(path)
    target = tmp_path / "target"
    with _open(target, embedder) as m:
        report = m.import_cube(path)
        assert m.import_cube(path).action == "skipped"  # idempotent: identical data
    assert report.action == "imported" and not report.reembedded and report.dropped == []
    assert report.parametric == ["v1"] and len(report.activation) == 1
    want, got = _read(source, embedder), _read(target, embedder)
    assert got[0] == want[0]
    assert got[1] == want[1]  # ids, order and scores
    held = got[0]["tiers"]
    assert any((ACTIVATION, report.activation[0], True) in h for h in held.values())
    assert 1 <= sum((PARAMETRIC, "v1", True) in h for h in held.values()) <= 2

    with _open(target, embedder) as m:  # searched since (more accesses): nothing to add
        accessed = _dump(m).tables["memories"]
        assert m.import_cube(path).action == "skipped"
        assert _dump(m).tables["memories"] == accessed  # the target's own use is kept


def _manifest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / MANIFEST).read_text())
    return data


def _resign(root: Path) -> None:
    """Recompute a bundle's file list (as a writer of another model's bundle would)."""
    data = _manifest(root)
    for key in ("format", "format_version", "files"):
        data.pop(key)
    write_manifest(root, data)


def _tampered(bundle: Path, dest: Path, how: str) -> Path:
    root = dest / how
    shutil.copytree(bundle, root)
    if how == "tampered":
        memories = root / TEXT / "memories.jsonl"
        memories.write_text(memories.read_text().replace("Porto", "Lisbo"))
    elif how == "missing":
        (root / TEXT / "versions.jsonl").unlink()
    elif how == "extra":
        (root / PARAMETRIC / "v1" / "notes.txt").write_text("hello")
    elif how == "newer":
        data = _manifest(root)
        data["format_version"] = 2
        (root / MANIFEST).write_text(json.dumps(data))
    elif how == "escaping":
        data = _manifest(root)
        data["files"]["../outside.txt"] = {"bytes": 1, "sha256": "0" * 64}
        (root / MANIFEST).write_text(json.dumps(data))
    elif how == "table":  # every file checks out, the table's digest does not
        memories = root / TEXT / "memories.jsonl"
        memories.write_text(memories.read_text().replace("Porto", "Lisbo"))
        data = _manifest(root)
        tables = data.pop("tables")
        for key in ("format", "format_version", "files"):
            data.pop(key)
        write_manifest(root, {**data, "tables": tables})
    return root


def _evil_tar(bundle: Path, dest: Path, member: str) -> Path:
    path = dest / f"evil-{len(member)}.tar"
    with tarfile.open(path, "w") as tar:
        for file in sorted(bundle.rglob("*")):
            tar.add(file, arcname=file.relative_to(bundle).as_posix(), recursive=False)
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 5
            tar.addfile(info, io.BytesIO(b"owned"))
    return path


@pytest.mark.parametrize(
    "how, error, message",
    [
        ("tampered", BundleError, "memories.jsonl of bundle .* fails its SHA-256|wrong size"),
        ("missing", BundleError, "file text/versions.jsonl of bundle .* is missing"),
        ("extra", BundleError, "file parametric/v1/notes.txt .* is not in its manifest"),
        ("newer", BundleFormatError, "format version 2; this Engram reads up to 1"),
        ("escaping", BundleError, "'../outside.txt' escapes the bundle"),
        ("table", BundleError, "table memories of bundle .* does not match its manifest"),
        ("../../evil.txt", BundleError, "tar member '../../evil.txt' escapes the bundle"),
        ("/tmp/evil.txt", BundleError, "tar member '/tmp/evil.txt' escapes the bundle"),
        ("link", BundleError, "tar member 'link' is a link or device"),
    ],
)
def test_a_bad_bundle_is_refused_and_nothing_is_written(
    bundle: Path, embedder: Embedder, tmp_path: Path, how: str, error: type, message: str
) -> None:
    bad = _evil_tar(bundle, tmp_path, how) if "evil" in how or how == "link" else None
    bad = bad or _tampered(bundle, tmp_path / "bad", how)
    target = tmp_path / "target"
    with _open(target, embedder) as m:
        with pytest.raises(error, match=message):
            m.import_cube(bad)
        assert m.owners() == [] and m.store.artifacts() == []
    assert not (target / "kv").exists() or not any((target / "kv").iterdir())
    assert not (target / "lora").exists() or not any((target / "lora").rglob("*"))
    assert not [p for p in target.iterdir() if p.name.startswith(".bundle-")]
    assert not (tmp_path / "evil.txt").exists()


def test_another_embedder_at_the_target_re_embeds(
    source: Path, bundle: Path, embedder: Embedder, tmp_path: Path
) -> None:
    other = HashEmbedder(16)
    target = Memory(home=tmp_path / "target", embedder=other, lora=LORA)
    try:
        report = target.import_cube(bundle)
        assert report.reembedded and "re-embedded" in report.notes[0]
        assert "all-MiniLM-L6-v2+conv-v2 (384-d)" in report.notes[0]
        hits = target.search("Tomas dog", user_id=USER, k=3)
        assert hits and all(h.memory for h in hits)
        with _open(source, embedder) as m:
            want = _everything(m)
        got = _everything(target)
        assert got["histories"] == want["histories"]
        assert _unread(got["items"]) == _unread(want["items"])  # the source was searched since
        assert target.import_cube(bundle).action == "skipped"  # re-embedding is deterministic
    finally:
        target.close()


def test_blocks_of_another_model_are_left_out_with_a_note(
    bundle: Path, embedder: Embedder, tmp_path: Path
) -> None:
    root = tmp_path / "other-model"
    shutil.copytree(bundle, root)
    (block,) = (root / ACTIVATION).iterdir()
    data = json.loads((block / "manifest.json").read_text())
    data["model_fingerprint"] = "f" * 64
    (block / "manifest.json").write_text(json.dumps(data))
    models = _manifest(root)
    models["models"][ACTIVATION][block.name] = "f" * 64
    (root / MANIFEST).write_text(json.dumps(models))
    _resign(root)
    with _open(tmp_path / "target", embedder) as m:
        report = m.import_cube(root)
        assert report.activation == [] and report.parametric == ["v1"]
        assert report.dropped == [
            f"activation {block.name}: built for model ffffffffffff, not for the configured "
            f"kv.model ({_manifest(bundle)['models'][ACTIVATION][block.name][:12]})"
        ]
        assert m.kv.ls(user_id=USER) == [] and m.store.artifacts(ACTIVATION) == []
        assert [a.version for a in m.lora.ls(user_id=USER)] == [1]


def test_an_erased_memory_never_travels_in_a_bundle(embedder: Embedder, tmp_path: Path) -> None:
    from engram.lm import load_model

    m = _open(tmp_path / "home", embedder)
    try:
        ada, bo = (m.add(t, user_id="alice")[0].id for t in ("Ada lives in Borovale.", "Bo sings."))
        (secret,) = (m.add(SECRET, user_id="alice")[0].id,)
        m.update(secret, SECRET.replace("hides", "moved"), user_id="alice")
        m.kv.build(user_id="alice", ids=[ada, secret])
        kept = m.kv.build(user_id="alice", ids=[ada])
        m.lora.train(user_id="alice")
        m.delete(secret, hard=True, user_id="alice")
        report = m.export_cube(tmp_path / "alice.tar", user_id="alice")
    finally:
        m.close()
    assert report.activation == [kept.key] and report.parametric == []
    _, tokenizer = load_model(None)

    def token_ids(text: str) -> re.Pattern[bytes]:  # as JSON, whatever the indentation
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][1:-1]
        return re.compile(rb"(?<![0-9])" + rb",\s*".join(str(t).encode() for t in ids))

    data = (tmp_path / "alice.tar").read_bytes()
    assert token_ids("Ada lives in Borovale.").search(data)  # the scan sees token ids
    assert not token_ids(SECRET).search(data)
    with tarfile.open(tmp_path / "alice.tar") as tar:
        names = tar.getnames()
    assert b"Borovale" in data and f"{ACTIVATION}/{kept.key}/manifest.json" in names
    for needle in (b"Quokkabottom", b"quokkabottom", b"Zephyrine", secret.encode()):
        assert needle not in data, needle


def test_the_cli_exports_and_imports_a_cube(
    bundle: Path, source: Path, embedder: Embedder, tmp_path: Path
) -> None:
    from engram.cli import app

    out = tmp_path / "cli.tar"
    args = ["--home", str(source), "--json", "cube", "export", "-u", USER, str(out), "--tar"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["action"] == "exported" and tarfile.is_tarfile(out)
    target = tmp_path / "target"
    with _open(target, embedder):  # the target's embedder recorded, as the CLI's default
        pass
    result = runner.invoke(app, ["--home", str(target), "--json", "cube", "import", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["owner"] == OWNER
    result = runner.invoke(app, ["--home", str(target), "cube", "import", str(out)])
    assert result.exit_code == 0 and "skipped" in result.stdout, result.output
    result = runner.invoke(app, ["--home", str(target), "--json", "cube", "import", str(bundle)])
    assert result.exit_code == 0, result.output  # an older export: the target has it all
    assert json.loads(result.stdout)["action"] == "skipped"
    result = runner.invoke(app, ["--home", str(target), "--json", "cube", "import", str(tmp_path)])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["code"] == "bundle_invalid"


def test_async_memory_has_the_bundle_verbs(
    bundle: Path, embedder: Embedder, tmp_path: Path
) -> None:
    import asyncio

    async def run() -> tuple[Any, Any]:
        am = AsyncMemory(memory=_open(tmp_path / "target", embedder))
        try:
            got = await am.import_cube(bundle)
            return got, await am.export_cube(tmp_path / "again", user_id=USER)
        finally:
            await am.close()

    imported, exported = asyncio.run(run())
    assert imported.action == "imported" and exported.memories == imported.memories
    assert _manifest(tmp_path / "again")["tables"] == _manifest(bundle)["tables"]


def test_a_bundle_imports_into_postgresql(
    source: Path, bundle: Path, embedder: Embedder, tmp_path: Path
) -> None:
    from store_contract._pg import fresh_database, started_server

    with started_server() as server:
        url = fresh_database(server)
        target = Memory(home=tmp_path, embedder=embedder, lora=LORA, database_url=url)
        try:
            assert target.import_cube(bundle).action == "imported"
            assert target.import_cube(bundle).action == "skipped"
            got = _everything(target)
        finally:
            target.close()
    with _open(source, embedder) as m:
        want = _everything(m)
    assert got["histories"] == want["histories"] and got["tiers"] == want["tiers"]
    assert _unread(got["items"]) == _unread(want["items"])  # the source was searched since
    assert (got["kv"], got["lora"], got["policy"]) == (want["kv"], want["lora"], want["policy"])


def test_the_api_doc_example_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """docs/api.md's bundle example, as written (ENGRAM_HOME is a temporary directory)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    section = text[text.index("## Cube bundles") :]
    section = section[: section.index("\n## ", 1)]  # up to the next section
    [code] = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    exec(compile(code, "docs/api.md", "exec"), {})  # noqa: S102 - the docs' own code


def test_a_conflicting_artifact_refuses_the_whole_import(
    bundle: Path, embedder: Embedder, tmp_path: Path
) -> None:
    """The KV block is placed before the adapter conflicts: it is removed again."""
    target = tmp_path / "target"
    stray = target / "lora" / "user%3Amaya-tomas" / "v1"
    stray.mkdir(parents=True)
    (stray / "manifest.json").write_text("{}")
    with _open(target, embedder) as m:
        with pytest.raises(BundleConflictError, match="v1 exists with other content"):
            m.import_cube(bundle)
        assert m.owners() == [] and m.store.artifacts() == [] and m.kv.ls() == []
    assert [p.name for p in (target / "lora" / "user%3Amaya-tomas").iterdir()] == ["v1"]


def _newer(m: Memory) -> list[str]:
    """Changes after an export: two new memories, a correction, a label, a policy."""
    items = m.get_all(user_id=USER, limit=3).items
    added = [
        m.add("Maya adopted a second dog named Pixel in 2025", user_id=USER),
        m.add("Tomas started learning the cello", user_id=USER),
    ]
    m.update(items[2].id, "Maya rides a blue road bicycle", reason="repainted", user_id=USER)
    m.feedback("Which instrument does Tomas play?", cited=[added[1][0].id], user_id=USER)
    m.set_retention_policy(user_id=USER, memory_type="turn", max_active=400)
    return [a[0].id for a in added]


def _incremental(bundle: Path, embedder: Embedder, tmp_path: Path, target: Memory) -> None:
    """The target imports the bundle; a copy of the cube changes and is exported again;
    the target imports that newer export: it adds only what changed, and then holds the
    very rows of the copy."""
    assert target.import_cube(bundle).action == "imported"
    jobs = len(_dump(target).tables["jobs"])
    with _open(tmp_path / "copy", embedder) as m:
        m.import_cube(bundle)
        new_ids = _newer(m)
        m.export_cube(tmp_path / "newer.tar", user_id=USER)
        want = _dump(m)
    report = target.import_cube(tmp_path / "newer.tar")
    assert report.action == "updated", report
    assert report.added == {
        "memories": 2,
        "memories_updated": 1,
        "versions": 3,  # one per new memory, one for the correction
        "feedback_queries": 1,
        "feedback": 1,
        "rerankers": 1,  # retrained on the new label: replaces the held one
        "retention_policies": 1,  # set later: replaces the held one
        "jobs": len(want.tables["jobs"]) - jobs,  # the new memories' extraction jobs
    }
    assert report.added["jobs"] > 0
    assert _dump(target).digests() == want.digests()
    assert {h.id for h in target.search("second dog Pixel", user_id=USER, k=3)} >= {new_ids[0]}
    assert target.import_cube(tmp_path / "newer.tar").action == "skipped"
    assert target.import_cube(bundle).action == "skipped"  # older: it has nothing new


def test_a_newer_export_adds_only_what_changed(
    bundle: Path, embedder: Embedder, tmp_path: Path
) -> None:
    with _open(tmp_path / "target", embedder) as target:
        _incremental(bundle, embedder, tmp_path, target)


def test_a_newer_export_adds_only_what_changed_on_postgresql(
    bundle: Path, embedder: Embedder, tmp_path: Path
) -> None:
    from store_contract._pg import fresh_database, started_server

    with started_server() as server:
        url = fresh_database(server)
        target = Memory(home=tmp_path / "t", embedder=embedder, lora=LORA, database_url=url)
        try:
            _incremental(bundle, embedder, tmp_path, target)
        finally:
            target.close()


def test_a_cube_changed_in_both_places_is_refused_and_kept(
    bundle: Path, embedder: Embedder, tmp_path: Path
) -> None:
    with _open(tmp_path / "copy", embedder) as m:
        m.import_cube(bundle)
        first = m.get_all(user_id=USER, limit=1).items[0]
        m.update(first.id, "Maya moved to Braga", user_id=USER)
        m.export_cube(tmp_path / "theirs", user_id=USER)
    with _open(tmp_path / "target", embedder) as m:
        m.import_cube(bundle)
        m.update(first.id, "Maya moved to Faro", user_id=USER)
        m.add("Tomas bought a kayak", user_id=USER)
        before = _dump(m)
        with pytest.raises(BundleConflictError, match=f"memory {first.id} was changed both"):
            m.import_cube(tmp_path / "theirs")
        assert _dump(m).digests() == before.digests()
        assert m.get(first.id, user_id=USER).memory == "Maya moved to Faro"


def test_the_same_turns_under_other_ids_are_a_conflict(
    bundle: Path, embedder: Embedder, tmp_path: Path
) -> None:
    """Two homes that imported the same conversation on their own hold its turns under
    other memory ids: merging them is fuse's work, not an import's."""
    with _open(tmp_path / "target", embedder) as m:
        import_file(m, SAMPLE)
        before = _dump(m)
        with pytest.raises(BundleConflictError, match="which this home holds as memory"):
            m.import_cube(bundle)
        assert _dump(m).digests() == before.digests() and m.kv.ls() == []


def test_a_locomo_format_conversation_round_trips(embedder: Embedder, tmp_path: Path) -> None:
    """A generated conversation in the LoCoMo format (the project's development set):
    every question finds the same memories with the same scores after export and import,
    and every memory has the same history and retention state."""
    from engram.bench.devset.generate import dumps, generate
    from engram.importers.locomo import read_locomo

    data = tmp_path / "devset.json"
    data.write_text(dumps(generate(seed=5, conversations=1)))
    [conversation] = read_locomo(data)
    with Memory(home=tmp_path / "a", embedder=embedder) as m:
        import_file(m, data)
        owner = m.owners()[0]
        report = m.export_cube(tmp_path / "conv.tar", **Scope.owner_kwargs(owner))
    assert report.memories > 50
    questions = [q.question for q in conversation.questions]

    def seen(home: Path) -> tuple[Any, ...]:
        with Memory(home=home, embedder=embedder) as m:
            who = Scope.owner_kwargs(owner)
            items = m.get_all(limit=1000, include_archived=True, **who).items
            return (
                [[(h.id, round(h.score, 6)) for h in m.search(q, k=10, **who)] for q in questions],
                {i.id: [v.model_dump(mode="json") for v in m.history(i.id, **who)] for i in items},
                [
                    m.retention(i.id, **who).model_dump(exclude={"retrievability", "at"})
                    for i in items
                ],
            )

    want = seen(tmp_path / "a")
    with Memory(home=tmp_path / "b", embedder=embedder) as m:
        assert m.import_cube(tmp_path / "conv.tar").action == "imported"
    got = seen(tmp_path / "b")
    assert len(questions) > 10 and got == want
