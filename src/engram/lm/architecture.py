"""The shape of the project LM: a small Llama (RoPE, RMSNorm, grouped-query attention)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import LlamaConfig


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights besides the seed: model shape, corpus size,
    optimisation. `FULL` builds the shipped checkpoint, `QUICK` a toy for tests."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    seq_len: int
    batch_size: int
    steps: int
    lr: float
    warmup_steps: int
    facts_docs: int  # documents per corpus generator
    kv_docs: int
    dialogue_docs: int
    docstring_chars: int | None  # None: every stdlib docstring
    max_position_embeddings: int = 4096
    weight_decay: float = 0.1
    min_lr_ratio: float = 0.1
    val_windows: int = 64
    threads: int = 2  # torch.set_num_threads while building

    def llama_config(self, bos_id: int, eos_id: int, pad_id: int) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )

    def corpus_counts(self) -> dict[str, int]:
        return {"facts": self.facts_docs, "kv": self.kv_docs, "dialogue": self.dialogue_docs}

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


FULL = Recipe(
    vocab_size=4096,
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=32,
    seq_len=512,
    batch_size=4,
    steps=400,
    lr=2e-3,
    warmup_steps=30,
    # key/value lookups dominate: copying from the context is what the probes measure
    facts_docs=2000,
    kv_docs=8000,
    dialogue_docs=1500,
    docstring_chars=1_200_000,
)

QUICK = Recipe(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    seq_len=64,
    batch_size=4,
    steps=20,
    lr=3e-3,
    warmup_steps=2,
    facts_docs=60,
    kv_docs=60,
    dialogue_docs=60,
    docstring_chars=20_000,
    val_windows=8,
    threads=1,  # toy matrices: a second thread only adds synchronisation
)
