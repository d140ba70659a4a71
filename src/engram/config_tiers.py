"""The settings sections of the derived tiers and what runs on them: LoRA adapters, KV
caches, answers and chat, and the scheduler that moves memories between tiers. Part of
engram.config (re-exported there), kept apart so each file stays small."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from engram.config_section import Section as _Section
from engram.errors import ConfigError


class LoRAConfig(_Section):
    """Parametric memory: LoRA adapters taught a cube's facts (`engram lora ...`)."""

    base_model: str | None = Field(
        default="smollm2-135m-instruct",
        description="The model the adapters are trained on: a registered name (`engram "
        "models ls`, pulled on first use as answer.auto_pull allows), a checkpoint directory, "
        "or 'engram-lm' (the packaged tiny LM, for tests; also None).",
    )
    rank: int = Field(default=16, gt=0, le=1024, description="LoRA rank r.")
    alpha: float = Field(default=32.0, gt=0, description="LoRA alpha (scale = alpha / rank).")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="LoRA dropout.")
    target_modules: str = Field(
        default="all-linear",
        description="Modules that get adapters: 'all-linear' or comma-separated names.",
    )
    learning_rate: float = Field(default=2e-3, gt=0, description="Peak AdamW learning rate.")
    epochs: int = Field(default=8, gt=0, le=1000, description="Passes over each new batch.")
    batch_size: int = Field(default=16, gt=0, le=4096, description="Sequences per step.")
    max_length: int = Field(default=64, gt=1, description="Longest training sequence (tokens).")
    seed: int = Field(default=0, description="Seed for adapter init, shuffling and replay.")
    safeguards: list[str] = Field(
        default_factory=lambda: ["replay", "distill", "lr-rewarm"],
        description="Continual-learning safeguards applied to every new batch, composed in "
        "order (see docs/parametric.md); [] is naive sequential LoRA.",
    )


class KVConfig(_Section):
    """Activation memory: stored, compressed KV caches (`engram kv ...`)."""

    model: str | None = Field(
        default="smollm2-135m-instruct",
        description="The model `engram kv build` builds caches for: a registered name "
        "(`engram models ls`, pulled on first use as answer.auto_pull allows), a checkpoint "
        "directory, or 'engram-lm' (the packaged tiny LM, for tests; also None). The kv "
        "route of answer builds for answer.model.",
    )
    method: str = Field(
        default="kivi:bits=4",
        description="Compression chain, e.g. 'snapkv:keep=0.5+kivi:bits=4'; 'none' keeps "
        "the model's dtype (see docs/activation.md).",
    )
    ram_budget_bytes: int = Field(
        default=256 << 20, ge=0, description="Bytes of KV blocks kept in the in-RAM LRU tier."
    )
    chunk_tokens: int = Field(
        default=256, gt=0, description="Tokens per chunk of the chained prefix hash keys."
    )
    compose: bool = Field(
        default=False,
        description="The kv route assembles a prompt from one stored block per memory "
        "(re-positioned, part recomputed) instead of one block per whole prompt: reused "
        "across questions, but approximate (see docs/activation.md for its accuracy).",
    )
    recompute: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="Share of the memory tokens recomputed when blocks are composed: those "
        "whose keys and values deviate most from a full prefill (CacheBlend).",
    )


class AnswerConfig(_Section):
    """`Memory.answer`: a question answered from the owner's memories (docs/answer.md)."""

    model: str = Field(
        default="smollm2-135m-instruct",
        description="The local model that answers: a registered name (`engram models ls`), a "
        "checkpoint directory, a hub id in the local Hugging Face cache, or 'engram-lm' (the "
        "packaged tiny LM, for tests). The lora route uses its adapter's base model instead.",
    )
    auto_pull: bool = Field(
        default=True,
        description="Pull a registered model (answer.model, kv.model, lora.base_model) on "
        "first use when it is not cached (as `engram models pull` does); off: fail and name "
        "that command.",
    )
    provider: Literal["local", "llm"] = Field(
        default="local",
        description="Who writes the text route's answer: 'local' (answer.model) or 'llm' "
        "(the model of the `llm` section, e.g. an OpenAI-compatible endpoint).",
    )
    router: str = Field(
        default="rules",
        description="The registered router that picks a route for route='auto'.",
    )
    k: int = Field(default=5, gt=0, le=1000, description="Memories put into the prompt.")
    max_tokens: int = Field(
        default=48, gt=0, le=4096, description="Longest answer, in tokens, by default."
    )
    max_context_tokens: int = Field(
        default=2048,
        gt=0,
        description="Most prompt plus answer tokens; the least relevant memories are left "
        "out until the prompt fits (and never more than the model's positions).",
    )
    lora_match: float = Field(
        default=0.6,
        gt=0,
        le=1,
        description="route='auto' takes the lora route when this share of the question's "
        "content words appears in one fact the owner's adapter learned.",
    )
    device: str = Field(default="cpu", description="torch device of the local model.")


class ChatConfig(_Section):
    """`POST /v1/chat/completions` on `engram serve`: OpenAI-compatible chat with the
    owner's memories (docs/server.md#openai-compatible-chat)."""

    max_messages: int = Field(
        default=100, gt=0, le=10_000, description="Most messages in one chat request."
    )
    max_tokens: int = Field(
        default=256,
        gt=0,
        le=4096,
        description="Longest reply, in tokens, when the request names no max_tokens.",
    )
    store: bool = Field(
        default=True,
        description="Store the last user message and the reply as memories of the owner, "
        "unless the request sends `X-Engram-Store: false` (or true, when this is off).",
    )


class SchedulerKVConfig(_Section):
    """`hot-to-kv`: the hot set of an owner's memories as KV blocks, one per memory."""

    budget_bytes: int = Field(
        default=32 << 20, ge=0, description="KV bytes per owner the scheduler may fill."
    )
    min_heat: float = Field(
        default=3.0, gt=0, description="Least heat (recent retrievals + citations) for a block."
    )
    bytes_per_char: float = Field(
        default=6000.0,
        gt=0,
        description="Block bytes per text character, to plan a block not built yet (the "
        "owner's own blocks give the ratio once there are some). Measured at kivi:bits=4 on "
        "one short memory (still in KIVI's full-precision window): 5,700 for SmolLM2-135M, "
        "500 for the packaged tiny LM.",
    )


class SchedulerAdapterConfig(_Section):
    """`confirmed-to-adapter`: long-lived, confirmed, stable facts to the next adapter batch."""

    min_age_days: float = Field(default=7.0, ge=0, description="Least age of a memory.")
    min_confirmations: int = Field(
        default=3, ge=1, description="Least cited/used feedback reports or recalls."
    )
    stable_days: float = Field(
        default=7.0, ge=0, description="Days its text must have stayed unchanged."
    )
    max_text_changes: int = Field(
        default=1, ge=0, description="Most text changes across its versions."
    )
    min_batch: int = Field(
        default=1, ge=1, le=10_000, description="Fewest facts worth an adapter batch."
    )


class SchedulerDecayConfig(_Section):
    """`cold-decay`: weak, cold memories archived through retention's archive path."""

    max_retrievability: float = Field(
        default=0.05, gt=0, lt=1, description="Archive below this retrievability R."
    )
    cold_days: float = Field(
        default=30.0, ge=0, description="Days without a retrieval or recall before it may go."
    )


class SchedulerConfig(_Section):
    """The scheduler that moves memories between tiers (`m.schedule`, `engram tiers`)."""

    policies: list[str] = Field(
        default_factory=lambda: ["hot-to-kv", "confirmed-to-adapter", "cold-decay"],
        description="Registered scheduling policies, applied in order (see docs/scheduler.md).",
    )
    heat_half_life_days: float = Field(
        default=7.0, gt=0, description="Heat halves for each this many days without use."
    )
    citation_weight: float = Field(
        default=2.0, ge=0, description="Retrievals one cited/used feedback report counts as."
    )
    kv: SchedulerKVConfig = Field(default_factory=SchedulerKVConfig)
    adapter: SchedulerAdapterConfig = Field(default_factory=SchedulerAdapterConfig)
    decay: SchedulerDecayConfig = Field(default_factory=SchedulerDecayConfig)

    @field_validator("policies")
    @classmethod
    def _known_policies(cls, value: list[str]) -> list[str]:
        from engram.scheduler.registry import check_policies  # the one registry

        try:
            return check_policies(value)
        except ConfigError as err:  # pydantic reports ValueErrors as field problems
            raise ValueError(str(err)) from err
