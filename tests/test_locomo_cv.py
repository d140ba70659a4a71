"""`engram bench locomo --cv` scores weights from precomputed part signals: those scores
must rank memories exactly as the hybrid pipeline does, or the cross-validated numbers
would describe another retriever."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from engram import Memory
from engram.bench import locomo_cv
from engram.bench.locomo import ingest, ranked_turns
from engram.cli import app
from engram.embed import Embedder
from engram.importers.locomo import read_locomo
from engram.scope import Scope

SAMPLE = Path(str(resources.files("engram") / "data" / "sample_conversation.json"))


def test_signals_rank_as_the_pipeline_does(tmp_path: Path, embedder: Embedder) -> None:
    [conv] = read_locomo(SAMPLE)
    with Memory(home=tmp_path, embedder=embedder, search={"track_access": False}) as memory:
        ingest(memory, [conv])
        signals = locomo_cv.signals(memory, conv, 0)
        weights, mask = locomo_cv.shipped_weights(), locomo_cv.calibrated_mask()
        order = np.argsort(-signals.scores(weights, mask), axis=1, kind="stable")[:, :10]
        cube = memory.cube(Scope.of(user_id=conv.sample_id))
        assert cube is not None
        snapshot = memory.store.snapshot(cube.id)
        items = memory.store.by_keys(cube.id, snapshot.keys.tolist())
        turns = [items[int(k)].provenance.source_id for k in snapshot.keys]
        questions = [q for q in conv.questions if q.evidence]
        assert len(questions) == len(order) > 5
        for q, rows in zip(questions, order, strict=True):
            hits = memory.search(q.question, user_id=conv.sample_id, k=10, pipeline="hybrid")
            assert [turns[r] for r in rows] == ranked_turns(hits, 10), q.question
    found = signals.hits(weights, mask)
    assert found.shape == (len(questions), len(locomo_cv.KS))
    assert np.all(found[:, 0] <= found[:, 1])  # R@5 never above R@10


def test_tuning_never_lowers_the_training_objective(tmp_path: Path, embedder: Embedder) -> None:
    [conv] = read_locomo(SAMPLE)
    with Memory(home=tmp_path, embedder=embedder, search={"track_access": False}) as memory:
        ingest(memory, [conv])
        signals = locomo_cv.signals(memory, conv, 0)
    mask, start = locomo_cv.calibrated_mask(), locomo_cv.shipped_weights()
    before = locomo_cv.objective(locomo_cv.recall([signals], start, mask))
    tuned = locomo_cv.tune([signals], start, mask, frozen=[0])
    assert tuned[0] == start[0]  # frozen
    assert locomo_cv.objective(locomo_cv.recall([signals], tuned, mask)) >= before


@pytest.mark.parametrize(("n", "folds"), [(10, 5), (3, 3), (7, 2)])
def test_folds_cover_every_conversation_once(n: int, folds: int) -> None:
    groups = locomo_cv.folds_of(n, folds)
    assert len(groups) == folds and sorted(i for g in groups for i in g) == list(range(n))


def test_bad_folds_are_refused_before_any_work(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["bench", "locomo", "--data", str(SAMPLE), "--cv", "--results", str(tmp_path)]
    done = runner.invoke(app, [*args, "--folds", "2"])  # the sample has one conversation
    assert done.exit_code == 2 and "folds must be between 2 and" in done.output
    done = runner.invoke(app, [*args, "--folds", "1", "--convs", "0"])
    assert done.exit_code == 2 and "--folds" in done.output
    assert not list(tmp_path.glob("*.json")), json.dumps([str(p) for p in tmp_path.iterdir()])
