"""What `Memory.answer` returns: the answer, the memories it was given (with provenance and
their place in the prompt), the route and why, and where the time went."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engram.types import SearchHit


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UsedMemory(SearchHit):
    """A retrieved memory put into the prompt: the search hit, and where it went."""

    position: int = Field(
        description="Its place in the prompt's list of memories, 0 first: the most relevant "
        "memories sit at both ends (see docs/answer.md#prompt)."
    )


class AnswerTimings(_Frozen):
    """Milliseconds spent in each stage of one answer."""

    retrieval_ms: float = Field(description="Searching the owner's memories (0: lora).")
    load_ms: float = Field(description="Loading the model (0 when it was loaded before).")
    kv_ms: float = Field(description="kv route: finding, or building and storing, the block.")
    prefill_ms: float | None = Field(
        description="The forward pass over the prompt tokens not read from a KV block, up to "
        "the first answer token (None: an endpoint answered)."
    )
    ttft_ms: float | None = Field(
        description="From the call to the first answer token, model loading excluded "
        "(None: an endpoint answered)."
    )
    generate_ms: float = Field(description="From the first answer token to the last.")
    total_ms: float = Field(description="The whole call, model loading included.")


class KVUse(_Frozen):
    """The stored KV block the kv route read the memories from."""

    key: str = Field(description="The block's key; composed: the key of the head block.")
    hit: bool = Field(description="True: every block was stored already; False: built now.")
    reused_tokens: int = Field(description="Prompt tokens read from blocks, not computed.")
    method: str = Field(description="Its compression chain ('' for none).")
    composed: int = Field(
        default=0, description="Memory blocks the prompt was assembled from (0: one block)."
    )
    built: int = Field(default=0, description="Of those, built now (a memory's first use).")
    recomputed_tokens: int = Field(
        default=0, description="Memory tokens recomputed to restore attention across memories."
    )


class AdapterUse(_Frozen):
    """The LoRA adapter the lora route answered with."""

    version: int
    base_model: str
    matched_memory_id: str | None = Field(
        default=None, description="route='auto': the learned fact the question matched."
    )


class AnswerResult(_Frozen):
    """One question answered from an owner's memories."""

    answer: str = Field(description="The model's answer.")
    question: str
    route: str = Field(description="The route taken: text, kv or lora.")
    reason: str = Field(description="Why this route: the auto router's rule, or 'asked for'.")
    model: str = Field(description="The model (or endpoint model) that answered.")
    memories: list[UsedMemory] = Field(
        description="The memories in the prompt, most relevant first ([] for lora)."
    )
    prompt_tokens: int | None = Field(description="Prompt length (None: an endpoint answered).")
    cached_tokens: int = Field(description="Prompt tokens read from a stored KV block.")
    completion_tokens: int | None = Field(description="Answer tokens generated.")
    timings: AnswerTimings
    kv: KVUse | None = None
    adapter: AdapterUse | None = None
