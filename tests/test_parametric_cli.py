"""`engram lora ...` end to end on a tiny checkpoint saved to disk, and the benchmark's
JSON shape on a reduced run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from engram import Memory
from engram.bench.parametric_data import GENERAL_TEXTS, batches
from engram.embed import Embedder
from engram.parametric.examples import examples_for
from engram.parametric.tiny import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
torch.set_num_threads(1)

FACTS = batches(2, 4, seed=3)
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [e.prompt + e.completion for b in FACTS for e in examples_for(b)] + GENERAL_TEXTS
    tokenizer = tiny_tokenizer(texts, vocab_size=300)
    folder = tmp_path_factory.mktemp("tiny-lm")
    tiny_model(tokenizer, hidden=64, layers=2, heads=2).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def lora(home: Path, *args: str) -> Any:
    result = runner.invoke(app(), ["--home", str(home), "--json", "lora", *args])
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip() else None)


def app() -> Any:
    from engram.cli import app as engram_app

    return engram_app


def _add(home: Path, embedder: Embedder, facts: list[Any]) -> None:
    with Memory(home=home, embedder=embedder) as memory:
        for f in facts:
            meta = {"fact": {"prompt": f.prompt, "answer": f.answer, "question": f.question}}
            memory.add(f.statement, user_id="alice", metadata=meta, memory_type="fact")


@pytest.mark.slow
def test_train_continue_eval_ask_merge(
    tmp_path: Path, checkpoint: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_LORA__LEARNING_RATE", "5e-3")
    monkeypatch.setenv("ENGRAM_LORA__BASE_MODEL", str(checkpoint))
    monkeypatch.setenv("ENGRAM_LORA__RANK", "8")
    home = tmp_path / "store"
    _add(home, embedder, FACTS[0])
    code, v1 = lora(home, "train", "-u", "alice", "--epochs", "30", "--naive")
    assert code == 0, v1
    assert v1["version"] == 1 and len(v1["memory_ids"]) == 4 and v1["method"] == "lora"
    assert v1["hyperparameters"]["learning_rate"] == 5e-3
    assert Path(v1["path"]).is_relative_to(home / "lora")
    code, err = lora(home, "train", "-u", "alice")
    assert code == 2 and "not learned yet" in err["error"]["message"]

    _add(home, embedder, FACTS[1])
    code, v2 = lora(home, "train", "-u", "alice", "--epochs", "30", "--safeguard", "replay")
    assert code == 0, v2
    assert v2["parents"] == [1] and len(v2["memory_ids"]) == 8
    assert v2["method"] == "lora+replay"

    code, listed = lora(home, "ls", "-u", "alice")
    assert [a["version"] for a in listed["adapters"]] == [1, 2]

    code, ev = lora(home, "eval", "-u", "alice")
    assert code == 0, ev
    assert ev["memories"] == 8 and ev["recall_with"] >= 0.5 > ev["recall_without"]

    code, asked = lora(home, "ask", FACTS[0][0].prompt, "-u", "alice", "--max-tokens", "4")
    assert code == 0 and asked["with_adapter"] != asked["without_adapter"]

    code, merged = lora(home, "merge", "-u", "alice", "--versions", "1,2")
    assert code == 0, merged
    assert merged["version"] == 3 and merged["parents"] == [1, 2]
    assert merged["method"] == "merge:cat" and merged["hyperparameters"]["exact"] is True
    code, err = lora(home, "merge", "-u", "alice", "--versions", "1,2", "--combination", "avg")
    assert code == 2 and "unknown combination" in err["error"]["message"]
    code, err = lora(home, "ls")
    assert [a["owner"] for a in err["adapters"]] == ["user:alice"] * 3


def test_commands_need_an_owner_and_an_adapter(tmp_path: Path) -> None:
    code, err = lora(tmp_path, "eval")
    assert code == 2 and "--user or --agent" in err["error"]["message"]
    code, err = lora(tmp_path, "ask", "hello", "-u", "bob")
    assert code == 1 and "no adapter" in err["error"]["message"]


@pytest.mark.slow
def test_bench_json_has_the_issue_shape(tmp_path: Path) -> None:
    from engram.bench.parametric import BenchConfig, run

    config = BenchConfig(
        batches=2, facts_per_batch=3, epochs=2, eval_texts=3, methods=("naive", "olora")
    )
    result = run("tiny", config)
    names = [m["name"] for m in result["methods"]]
    assert names == ["joint", "naive", "olora", "retrieval"]
    keys = {
        "name",
        "avg_recall",
        "recall_vs_joint_pct",
        "bwt",
        "forgetting",
        "ppl_drift_pct",
        "train_s_per_batch",
        "adapter_bytes",
    }
    assert all(set(m) == keys for m in result["methods"])
    retrieval = result["methods"][-1]
    assert retrieval["avg_recall"] > 50 and retrieval["ppl_drift_pct"] == 0
    assert len(result["details"]["naive"]["matrix"]["rows"]) == 2
    joint_row = result["details"]["joint"]["matrix"]["rows"][-1]  # over every batch it saw
    assert result["methods"][0]["avg_recall"] == round(sum(joint_row) / len(joint_row), 2)
    assert result["methods"][2]["adapter_bytes"] > result["methods"][1]["adapter_bytes"] > 0


@pytest.mark.slow
def test_bench_jobs_train_side_by_side_with_the_same_numbers() -> None:
    from engram.bench.parametric import BenchConfig, run

    config = BenchConfig(
        batches=2,
        facts_per_batch=3,
        epochs=3,
        eval_texts=3,
        replay_texts=8,
        methods=("naive", "replay+distill"),
    )
    alone, parallel = run("tiny", config, jobs=1), run("tiny", config, jobs=2)
    assert parallel["config"]["jobs"] == 2
    for name in ("joint", "naive", "replay+distill"):
        rows = [r["details"][name]["matrix"]["rows"] for r in (alone, parallel)]
        assert rows[0] == rows[1], name
    drift = [[m["ppl_drift_pct"] for m in r["methods"]] for r in (alone, parallel)]
    assert drift[0] == pytest.approx(drift[1], abs=1e-6)


@pytest.mark.slow
def test_train_with_the_default_safeguards_holds_general_text(
    tmp_path: Path, checkpoint: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_LORA__BASE_MODEL", str(checkpoint))
    home = tmp_path / "store"
    _add(home, embedder, FACTS[0])
    code, v1 = lora(home, "train", "-u", "alice", "--epochs", "30")
    assert code == 0, v1
    assert v1["method"] == "lora+replay+distill+lr-rewarm"
    assert v1["safeguards"]["distill"] == {"weight": 1.0, "samples": 1024, "chunk": 8}
    code, ev = lora(home, "eval", "-u", "alice")
    assert code == 0, ev
    assert ev["recall_with"] > ev["recall_without"]
