"""Every continual-learning safeguard on a tiny random Llama: what each one promises."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import torch

from engram.bench.parametric_data import GENERAL_TEXTS, batches
from engram.config import LoRAConfig
from engram.errors import ValidationError
from engram.parametric.examples import examples_for
from engram.parametric.host import AdapterHost
from engram.parametric.learner import ContinualLearner
from engram.parametric.registry import AdapterManifest, AdapterRegistry, model_fingerprint
from engram.parametric.safeguards import (
    SAFEGUARDS,
    BatchRun,
    EMABalance,
    GeneralDistillation,
    GeneralReplay,
    LRRewarm,
    MemoryReplay,
    OrthogonalLoRA,
    OrthogonalSubspace,
    SpacedReplay,
    build_safeguards,
)
from engram.parametric.safeguards.general import margin_loss
from engram.parametric.tiny import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
torch.set_num_threads(1)

FACTS = batches(3, 3, seed=11)
QUICK = LoRAConfig(rank=4, alpha=8, learning_rate=5e-3, epochs=3, safeguards=[])


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    texts = [e.prompt + e.completion for b in FACTS for e in examples_for(b)]
    return tiny_tokenizer(texts + GENERAL_TEXTS, vocab_size=300)


def model(tokenizer: Any, seed: int = 0) -> torch.nn.Module:
    return tiny_model(tokenizer, hidden=32, layers=2, heads=2, seed=seed)


def learner(tokenizer: Any, *safeguards: Any, **settings: Any) -> ContinualLearner:
    return ContinualLearner(
        model(tokenizer), tokenizer, QUICK.model_copy(update=settings), safeguards, GENERAL_TEXTS
    )


def _logits(m: torch.nn.Module, tokenizer: Any) -> torch.Tensor:
    batch = tokenizer([f.statement for f in FACTS[0]], return_tensors="pt", padding=True)
    with torch.no_grad():
        return m(**batch).logits


def _reloaded(tmp_path: Any, tokenizer: Any, lrn: ContinualLearner) -> torch.nn.Module:
    """The exported adapter, saved and loaded onto a fresh copy of the base model."""
    base = model(tokenizer)
    config, state = lrn.export()
    manifest = AdapterManifest("o", 0, lrn.method, "tiny", model_fingerprint(base), [])
    host = AdapterHost(base, tokenizer)
    host.load(AdapterRegistry(tmp_path).save(manifest, config, state))
    return host.model


def test_registry_names_every_safeguard_and_refuses_unknown_ones() -> None:
    assert set(SAFEGUARDS) == {
        "replay",
        "gere",
        "distill",
        "olora",
        "osf",
        "ema",
        "lr-rewarm",
        "spaced",
    }
    built = build_safeguards(["replay", "ema"], {"ema": {"beta": 0.5}})
    assert [s.name for s in built] == ["replay", "ema"] and built[1].beta == 0.5
    with pytest.raises(ValidationError, match="unknown safeguard"):
        build_safeguards(["nope"])
    with pytest.raises(ValidationError, match="bad safeguard options"):
        build_safeguards(["ema"], {"ema": {"gamma": 1}})
    with pytest.raises(ValidationError, match="at most one"):
        ContinualLearner(
            torch.nn.Linear(2, 2), None, QUICK, [OrthogonalLoRA(), OrthogonalSubspace()]
        )


def test_replay_mixes_earlier_facts_in(tokenizer: Any) -> None:
    lrn = learner(tokenizer, MemoryReplay(ratio=0.5))
    lrn.learn(FACTS[0])
    assert lrn.reports[0].replayed == 0
    lrn.learn(FACTS[1])
    assert lrn.reports[1].replayed == 3  # half of 6 new examples
    run = BatchRun(2, FACTS[2], examples_for(FACTS[2]), lrn, rng=random.Random(0))
    lrn.batches.append(FACTS[2])
    MemoryReplay(ratio=10).before_batch(run)
    earlier = {f.memory_id for b in FACTS[:2] for f in b}
    assert run.replay_per_epoch == 12 and {e.memory_id for e in run.replay_pool} == earlier


def test_gere_margin_loss_is_zero_inside_the_bands_only() -> None:
    h0 = torch.tensor([2.0, -2.0, 0.1])
    assert margin_loss(h0, h0, 1.0) == 0
    assert margin_loss(torch.tensor([1.5, -1.5, 0.9]), h0, 1.0) == 0
    assert margin_loss(torch.tensor([0.5, -2.0, 0.1]), h0, 1.0) == pytest.approx(0.5 / 3)
    assert margin_loss(torch.tensor([2.0, -2.0, -1.3]), h0, 1.0) == pytest.approx(0.3 / 3)


def test_gere_replays_general_text_and_penalises_drift(tokenizer: Any) -> None:
    gere = GeneralReplay(samples=4, chunk=2, threshold=0.0)
    lrn = learner(tokenizer, gere)
    run = BatchRun(0, FACTS[0], examples_for(FACTS[0]), lrn)
    lrn.batches.append(FACTS[0])
    lrn._ensure_adapter()
    gere.before_batch(run)
    assert [e.completion for e in run.replay] == GENERAL_TEXTS[:4]
    at_start = gere.penalty(run)
    assert at_start is not None
    with torch.no_grad():  # move the adapter off zero: hidden states leave their bands
        for name, p in lrn.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    moved = gere.penalty(run)
    assert moved is not None and float(moved.detach()) > float(at_start.detach()) + 1e-3
    with pytest.raises(ValidationError, match="general texts"):
        ContinualLearner(model(tokenizer), tokenizer, QUICK, [GeneralReplay()]).learn(FACTS[0])


def _general_kl(lrn: ContinualLearner, tokenizer: Any) -> float:
    """Mean KL(base || taught model) over the next-token distributions of general text."""
    batch = tokenizer(GENERAL_TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        with lrn.model.disable_adapter():
            p = torch.log_softmax(lrn.model(**batch).logits, -1)
        q = torch.log_softmax(lrn.model(**batch).logits, -1)
    kl = (p.exp() * (p - q)).sum(-1)
    return float(kl[batch["attention_mask"].bool()].mean())


def test_distill_holds_general_text_predictions_to_the_base_model(tokenizer: Any) -> None:
    hard = {"epochs": 12, "learning_rate": 2e-2, "batch_size": 2}
    plain = learner(tokenizer, **hard)
    held = learner(tokenizer, GeneralDistillation(weight=10.0, samples=16, chunk=4), **hard)
    for lrn in (plain, held):
        lrn.learn(FACTS[0])
    drift_plain, drift_held = _general_kl(plain, tokenizer), _general_kl(held, tokenizer)
    assert drift_plain > 0.005  # the facts moved the unguarded model on ordinary text
    assert drift_held < 0.5 * drift_plain, (drift_held, drift_plain)
    # the guarded model still learned its facts: their loss fell from the base model's
    base = learner(tokenizer)
    base._ensure_adapter()
    assert _fact_loss(held, tokenizer) < _fact_loss(base, tokenizer) - 0.5


def _fact_loss(lrn: ContinualLearner, tokenizer: Any) -> float:
    from engram.parametric.evaluation import probe, score_examples

    scores = score_examples(lrn.model, tokenizer, [probe(f) for f in FACTS[0]])
    return -sum(s.mean_logprob for s in scores) / len(scores)


def test_distill_penalty_is_zero_at_the_base_and_refuses_bad_setups(tokenizer: Any) -> None:
    distill = GeneralDistillation(samples=4, chunk=2)
    lrn = learner(tokenizer, distill)
    run = BatchRun(0, FACTS[0], examples_for(FACTS[0]), lrn, rng=random.Random(0))
    lrn._ensure_adapter()
    distill.before_batch(run)
    at_start = distill.penalty(run)
    assert at_start is not None and abs(float(at_start)) < 1e-6  # LoRA starts as identity
    with torch.no_grad():
        for name, p in lrn.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    moved = distill.penalty(run)
    assert moved is not None and float(moved.detach()) > 1e-3
    moved.backward()  # the penalty trains the adapter
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lrn.trainable())
    with pytest.raises(ValidationError, match="weight > 0"):
        GeneralDistillation(weight=0)
    with pytest.raises(ValidationError, match="general texts"):
        ContinualLearner(model(tokenizer), tokenizer, QUICK, [GeneralDistillation()]).learn(
            FACTS[0]
        )


def test_olora_keeps_earlier_adapters_frozen_and_exports_their_exact_sum(
    tmp_path: Any, tokenizer: Any
) -> None:
    olora = OrthogonalLoRA(weight=1.0)
    lrn = learner(tokenizer, olora)
    lrn.learn(FACTS[0])
    first = {n: p.detach().clone() for n, p in lrn.model.named_parameters() if ".b0." in n}
    lrn.learn(FACTS[1])
    assert sorted(lrn.model.peft_config) == ["b0", "b1"]
    for name, p in lrn.model.named_parameters():
        if ".b0." in name:
            assert torch.equal(p, first[name]), name
    run = BatchRun(1, FACTS[1], [], lrn)
    penalty = olora.penalty(run)
    assert penalty is not None and float(penalty.detach()) > 0
    merged = _reloaded(tmp_path, tokenizer, lrn)
    assert torch.allclose(_logits(merged, tokenizer), _logits(lrn.model, tokenizer), atol=1e-5)


def test_olora_penalty_pushes_subspaces_apart(tokenizer: Any) -> None:
    def overlap(weight: float) -> float:
        olora = OrthogonalLoRA(weight=weight)
        lrn = learner(tokenizer, olora, epochs=6)
        lrn.learn(FACTS[0])
        lrn.learn(FACTS[1])
        penalty = olora.penalty(BatchRun(1, FACTS[1], [], lrn))
        return float(penalty.detach()) / weight if penalty is not None else 0.0

    assert overlap(5.0) < overlap(1e-6)


def test_osf_updates_only_low_singular_directions_and_exports_exactly(
    tmp_path: Any, tokenizer: Any
) -> None:
    osf = OrthogonalSubspace(preserve=0.5, step=0.25)
    lrn = learner(tokenizer, osf, learning_rate=2e-2)
    lrn.learn(FACTS[0])
    name = "model.layers.0.self_attn.q_proj"
    w0 = osf._original[name]
    delta = dict(lrn.base.named_modules())[name].weight.detach() - w0
    u, s, vh = torch.linalg.svd(w0)
    k = w0.shape[0] // 2
    assert delta.norm() > 1e-4
    top = u[:, :k].T @ delta @ vh[:k].T  # change inside the preserved top-k subspace
    # the gradient is projected out of that subspace; Adam's per-coordinate scaling of the
    # projected gradient lets a trace back in
    assert top.norm() < 0.02 * delta.norm()
    lrn.learn(FACTS[1])
    merged = _reloaded(tmp_path, tokenizer, lrn)
    assert torch.allclose(_logits(merged, tokenizer), _logits(lrn.model, tokenizer), atol=1e-4)


def test_ema_balance_moves_only_part_of_the_way(tokenizer: Any) -> None:
    def change(beta: float | None) -> float:
        guards = [EMABalance(beta)] if beta is not None else []
        lrn = learner(tokenizer, *guards, learning_rate=2e-2)
        lrn.learn(FACTS[0])
        before = [p.detach().clone() for p in lrn.trainable()]
        lrn.learn(FACTS[1])
        return sum(
            float((p.detach() - b).norm()) for p, b in zip(lrn.trainable(), before, strict=True)
        )

    free, balanced = change(None), change(0.9)
    assert 0 < balanced < 0.8 * free
    assert change(0.0) == pytest.approx(free, rel=1e-5)  # beta 0: EMA is the last iterate


def test_lr_rewarm_warms_up_then_decays_every_batch() -> None:
    guard = LRRewarm(warmup=0.2, min_ratio=0.1)
    run = BatchRun(0, [], [], None, total_steps=10)  # type: ignore[arg-type]
    factors = []
    for step in range(10):
        run.step = step
        factors.append(guard.lr_factor(run))
    assert factors[:2] == [0.5, 1.0]
    assert all(a >= b for a, b in zip(factors[1:], factors[2:], strict=False))
    assert factors[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    run.step = 0
    assert LRRewarm(warmup=0.0).lr_factor(run) == 1.0
    with pytest.raises(ValidationError):
        LRRewarm(warmup=1.5)


def test_spaced_replay_follows_the_forgetting_curve(tokenizer: Any) -> None:
    spaced = SpacedReplay(strength=1.0, growth=3.0, retention=0.5)
    assert spaced.interval(1.0) == pytest.approx(math.log(2))
    lrn = learner(tokenizer, spaced)
    replayed = []
    for i in range(3):
        lrn.learn(FACTS[i])
        replayed.append(lrn.reports[-1].replayed)
    # batch 1 replays batch 0 (due after ln 2 batches); batch 2 replays batch 1 only:
    # batch 0's strength tripled, so its next replay is ln 2 * 3 ≈ 2.1 batches later.
    assert replayed == [0, 6, 6]
    ids = [{f.memory_id for f in batch} for batch in FACTS]
    assert set(spaced.due(3)) == ids[2]  # batch 1 was replayed at 2: strength 3 now
    assert set(spaced.due(4)) == ids[0] | ids[2]  # batch 0: 3 batches since its replay > 2.08


def test_composed_safeguards_run_together(tokenizer: Any) -> None:
    names = ["replay", "gere", "distill", "ema", "lr-rewarm", "spaced"]
    lrn = learner(tokenizer, *build_safeguards(names))
    for batch in FACTS[:2]:
        report = lrn.learn(batch)
        assert math.isfinite(report.final_loss)
    assert lrn.method == "lora+" + "+".join(names)
    assert set(lrn.safeguard.hyperparameters()) == set(names)
