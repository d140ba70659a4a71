"""Settings, layered: defaults < config file (TOML) < environment (ENGRAM_*) < arguments.

The file is `ENGRAM_CONFIG` if set, else `$ENGRAM_HOME/config.toml` if it exists.
Nested settings use `__` in the environment: `ENGRAM_EMBEDDER__MODEL=/path/to/model`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from engram.config_section import Section as _Section
from engram.config_tiers import AnswerConfig as AnswerConfig
from engram.config_tiers import ChatConfig as ChatConfig
from engram.config_tiers import KVConfig as KVConfig
from engram.config_tiers import LoRAConfig as LoRAConfig
from engram.config_tiers import SchedulerAdapterConfig as SchedulerAdapterConfig
from engram.config_tiers import SchedulerConfig as SchedulerConfig
from engram.config_tiers import SchedulerDecayConfig as SchedulerDecayConfig
from engram.config_tiers import SchedulerKVConfig as SchedulerKVConfig
from engram.errors import ConfigError

DEFAULT_HOME = Path("~/.engram")


class EmbedderConfig(_Section):
    """Which embedding model turns text into vectors."""

    provider: str = Field(
        default="local",
        description="A registered embedder: 'local' (numpy encoder for small batches, "
        "sentence-transformers for bulk), 'numpy-bert', 'sentence-transformers', or 'openai' "
        "(any OpenAI-compatible /v1/embeddings endpoint).",
    )
    model: str | None = Field(
        default=None,
        description="Local model path or endpoint model name. None: the packaged "
        "all-MiniLM-L6-v2 (offline).",
    )
    base_url: str | None = Field(default=None, description="Endpoint URL for 'openai'.")
    api_key: str | None = Field(default=None, description="API key for 'openai'.")
    dimensions: int | None = Field(
        default=None, gt=0, description="Vector size, required for 'openai' unless probed."
    )
    batch_size: int = Field(default=32, gt=0, le=4096, description="Texts per forward pass.")
    bulk_threads: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="'local': torch threads for bulk batches (0: torch's default, i.e. "
        "OMP_NUM_THREADS, which `engram serve` sets to all cores but one so that queries "
        "keep a core during a bulk add).",
    )
    small_batch: int = Field(
        default=16,
        ge=0,
        le=4096,
        description="'local': batches of up to this many texts (a query, a message) run on "
        "the numpy encoder without importing torch; larger ones on sentence-transformers. "
        "0: always sentence-transformers.",
    )
    adapter: str = Field(
        default="auto",
        description="A low-rank weight delta for the local encoder: 'conv-v2' or 'conv-v1' "
        "(packaged: tuned on generated conversations, docs/retrieval.md), an adapter file, "
        "'none', or 'auto' (conv-v2 on the packaged model, except for a store whose vectors "
        "were made without it).",
    )
    coalesce: bool = Field(
        default=True,
        description="Concurrent callers share model calls (queued texts go as one batch).",
    )
    cache_size: int = Field(
        default=8192, ge=0, description="Embeddings kept in the in-process LRU cache."
    )
    device: str = Field(default="cpu", description="torch device for local models.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="Compute precision of local models; auto = bf16 where the CPU/GPU has it.",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="HTTP timeout for 'openai'.")


class SearchConfig(_Section):
    """Retrieval defaults."""

    pipeline: str = Field(
        default="hybrid", description="Name of the registered retrieval pipeline to use."
    )
    reranker: str = Field(
        default="online",
        description="Name of the registered reranker that learns the owner's feedback weights "
        "on top of the pipeline's score: 'online' (a small RankNet step per report) or "
        "'fixed' (reports are recorded, the round default weights never move).",
    )
    default_k: int = Field(default=10, gt=0, le=1000, description="Hits returned by default.")
    max_k: int = Field(default=1000, gt=0, description="Largest k a caller may ask for.")
    candidates: int = Field(
        default=100, gt=0, description="Candidates each retriever feeds into fusion."
    )
    track_access: bool = Field(
        default=True, description="Count search hits as accesses (buffered, flushed lazily)."
    )

    @model_validator(mode="after")
    def _default_within_max(self) -> SearchConfig:
        if self.default_k > self.max_k:
            raise ValueError(f"default_k ({self.default_k}) must not exceed max_k ({self.max_k})")
        return self


class LimitsConfig(_Section):
    """Input limits enforced at every public entry."""

    max_text_chars: int = Field(default=32_000, gt=0, description="Longest memory text.")
    max_query_chars: int = Field(default=4_096, gt=0, description="Longest search query.")
    max_batch: int = Field(default=10_000, gt=0, description="Most messages in one add.")
    max_metadata_bytes: int = Field(default=16_384, gt=0, description="Largest metadata JSON.")
    add_chunk: int = Field(
        default=128,
        gt=0,
        description="Messages embedded and committed together in one add; a larger add is "
        "written in chunks, each its own transaction, so other owners' writes and searches "
        "interleave.",
    )


class SQLiteConfig(_Section):
    """Embedded store tuning."""

    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="FULL survives power loss; NORMAL (WAL) survives a process kill only.",
    )
    busy_timeout_s: float = Field(default=30.0, gt=0, description="Wait for a writer lock.")


class PostgresConfig(_Section):
    """The PostgreSQL store (a `postgresql://` database_url); see docs/postgres.md."""

    pool_min_size: int = Field(default=1, ge=0, description="Connections each process keeps open.")
    pool_max_size: int = Field(
        default=8, gt=0, description="Most connections one process opens to the database."
    )
    connect_timeout_s: float = Field(
        default=30.0, gt=0, description="Wait for a free pooled connection before failing."
    )
    app_role: str = Field(
        default="engram_app",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The role every query runs as (SET LOCAL ROLE): not the tables' owner, "
        "so row-level security holds it to one owner's rows. Created by the migrations.",
    )
    exact_search_max: int = Field(
        default=20_000,
        ge=0,
        description="Cubes with at most this many active memories are searched exactly, "
        "from a snapshot each process caches; larger ones on candidates the database finds "
        "(HNSW nearest neighbours + full text).",
    )
    search_candidates: int = Field(
        default=200,
        gt=0,
        le=1000,
        description="Nearest-neighbour and full-text candidates each (united) that a search "
        "of a large cube scores.",
    )
    hnsw_ef_search: int = Field(
        default=400,
        gt=0,
        le=1000,
        description="HNSW search list for a large cube's candidates (pgvector hnsw.ef_search; "
        "neighbours of other owners are filtered out after it).",
    )


class ServerConfig(_Section):
    """`engram serve`: REST + MCP + web page."""

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8765, ge=0, le=65535, description="TCP port (0: any free one).")
    max_body_bytes: int = Field(
        default=1_048_576, gt=0, description="Largest request body; larger ones get 413."
    )
    rate_limit_per_s: float = Field(
        default=50.0, ge=0, description="Requests per second per key, sustained (0: no limit)."
    )
    rate_limit_burst: int = Field(
        default=100, gt=0, description="Requests a key may make at once before the rate applies."
    )
    auth_failure_rate_per_s: float = Field(
        default=0.2,
        ge=0,
        description="Failed authentications per second per client address, sustained; past "
        "it the address gets 429 before any key lookup (0: no limit).",
    )
    auth_failure_burst: int = Field(
        default=20,
        gt=0,
        description="Failed authentications a client address may make at once before the "
        "rate applies.",
    )
    idempotency_ttl_s: float = Field(
        default=86_400.0,
        gt=0,
        description="How long a write's Idempotency-Key and its stored response are kept.",
    )


class RetentionPolicy(_Section):
    """Retention rules for one memory type of an owner ('*': every type). Unset fields
    inherit: owner type < owner '*' < config type < config '*'."""

    max_active: int | None = Field(
        default=None,
        gt=0,
        description="Capacity budget: most active memories of the type ('*': of the owner "
        "in all); gc archives the weakest beyond it. None: no budget.",
    )
    ttl_days: float | None = Field(
        default=None, gt=0, description="gc archives memories older than this. None: no TTL."
    )
    min_retrievability: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="gc archives memories whose retrievability fell below this (forgotten). "
        "None: never by decay alone.",
    )
    importance: float | None = Field(
        default=None,
        ge=0,
        description="Weight of the type when ranking the weakest (metadata 'importance' "
        "overrides per memory). None: 1.0.",
    )


class WorkingMemoryConfig(_Section):
    """The short-term buffer: the most recent turns of each session."""

    size: int = Field(
        default=20, ge=0, description="Memories per session kept in the buffer (0: no buffer)."
    )
    types: list[str] = Field(
        default_factory=lambda: ["turn"], description="Memory types that enter the buffer."
    )
    replacement: str = Field(
        default="fifo", description="Replacement policy when the buffer is full: fifo, lru."
    )


class ConsolidationConfig(_Section):
    """Promotion of what recurs to long-term memory (run by gc)."""

    min_recalls: int = Field(
        default=2, ge=1, description="Promote a memory cited/used or reinforced this often."
    )
    duplicate_similarity: float = Field(
        default=0.92,
        gt=0,
        le=1,
        description="Cosine at which two memories count as near-duplicates.",
    )
    min_sessions: int = Field(
        default=2,
        ge=2,
        description="Promote a memory with near-duplicates in at least this many sessions "
        "(its own included).",
    )
    min_words: int = Field(
        default=4,
        ge=0,
        description="Only memories of at least this many words count as near-duplicates "
        "(so 'thanks!' said in every session is not promoted).",
    )
    strength_days: float = Field(
        default=90.0, gt=0, description="Promoted memories get at least this strength."
    )


class RetentionConfig(_Section):
    """Decay, recall, policies, working memory and consolidation (engram.lifecycle)."""

    decay: str = Field(
        default="power",
        description="Decay law: exponential, power, hyperbolic; parameters as "
        "'power:exponent=0.3'.",
    )
    initial_strength_days: float = Field(
        default=14.0, gt=0, description="Strength (half-life in days) of a new memory."
    )
    max_strength_days: float = Field(
        default=3650.0, gt=0, description="Strength never grows past this."
    )
    growth: float = Field(
        default=1.5, ge=0, description="Strength gain of a recall (see docs/lifecycle.md)."
    )
    spacing: float = Field(
        default=1.0,
        ge=0,
        description="How much more a recall strengthens a nearly forgotten memory.",
    )
    wrong_factor: float = Field(
        default=0.5, gt=0, le=1, description="Strength is multiplied by this when marked wrong."
    )
    expire_on_search: bool = Field(
        default=True, description="A search first archives the owner's expired memories."
    )
    policies: dict[str, RetentionPolicy] = Field(
        default_factory=dict,
        description="Policies by memory type ('*': all types); owners override them "
        "with Memory.set_retention_policy.",
    )
    working: WorkingMemoryConfig = Field(default_factory=WorkingMemoryConfig)
    consolidation: ConsolidationConfig = Field(default_factory=ConsolidationConfig)


class LLMConfig(_Section):
    """The optional language model for extraction (`engram.llm`); none by default."""

    provider: str = Field(
        default="none",
        description="'none' (offline extractors only), 'openai' (any OpenAI-compatible "
        "/v1/chat/completions endpoint) or 'transformers' (a local causal LM).",
    )
    model: str | None = Field(
        default=None,
        description="Endpoint model name, or local checkpoint path (None: the packaged "
        "Engram LM, for plumbing tests only).",
    )
    base_url: str | None = Field(default=None, description="Endpoint URL for 'openai'.")
    api_key: str | None = Field(default=None, description="API key for 'openai'.")
    timeout_s: float = Field(default=60.0, gt=0, description="HTTP timeout per request.")
    max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of timeouts, 429 and 5xx answers."
    )
    max_tokens: int = Field(default=1024, gt=0, description="Longest answer, in tokens.")
    json_mode: bool = Field(
        default=True,
        description="Ask the endpoint for a JSON object (response_format); turn off for "
        "servers that reject it.",
    )
    device: str = Field(default="cpu", description="torch device for 'transformers'.")


class ExtractConfig(_Section):
    """Derived memories (summaries, dated events, merged duplicates, LLM facts) built by
    background jobs after `add` (`engram.extract`, `engram jobs`)."""

    enqueue: bool = Field(
        default=True,
        description="add/add_batch queue extraction jobs for the sessions they touched "
        "(one row per session and extractor; extraction itself runs later).",
    )
    worker: Literal["thread", "off"] = Field(
        default="off",
        description="'thread': a background thread of this process runs queued jobs; "
        "'off': they run on `engram jobs run` / `Memory.run_jobs()`.",
    )
    extractors: list[str] = Field(
        default_factory=lambda: ["session-summary", "topic-summary", "dates", "llm", "dedup"],
        description="Registered extractors to queue; 'llm' only when llm.provider is set.",
    )
    max_attempts: int = Field(default=3, ge=1, le=100, description="Runs before a job fails.")
    backoff_s: float = Field(
        default=5.0, ge=0, description="A failed run is retried after backoff_s * 2^(n-1)."
    )
    lease_s: float = Field(
        default=600.0, gt=0, description="A running job whose worker died is retried after this."
    )
    session_min_turns: int = Field(
        default=4, ge=1, description="Sessions with fewer turns get no session summary."
    )
    summary_turns: int = Field(
        default=3, ge=1, le=50, description="Turns quoted in a session or topic summary."
    )
    topic_min_turns: int = Field(
        default=40, ge=2, description="Owners with fewer turns get no topic summaries."
    )
    topic_size: int = Field(
        default=25, ge=2, description="Average turns per topic (topics = turns / topic_size)."
    )
    dedup_threshold: float = Field(
        default=0.95, gt=0, le=1, description="Cosine at which derived memories are merged."
    )
    dedup_types: list[str] = Field(
        default_factory=lambda: ["fact", "preference", "event"],
        description="Memory types the near-duplicate merger looks at.",
    )
    llm_turns: int = Field(default=20, ge=1, le=500, description="Turns per extraction prompt.")
    llm_neighbors: int = Field(
        default=5, ge=1, le=50, description="Similar memories shown with each candidate."
    )
    answer_retries: int = Field(
        default=2, ge=0, le=10, description="Re-asks after a malformed LLM answer."
    )


class _FileSource(PydanticBaseSettingsSource):
    """Reads the TOML config file chosen by arguments or environment."""

    def __init__(self, settings_cls: type[BaseSettings], init_kwargs: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = _read_config_file(init_kwargs)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _path_like(value: Any, what: str) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(f"invalid Engram configuration: {what} must be a path, got {value!r}")
    return Path(value).expanduser()


def _config_path(init_kwargs: dict[str, Any]) -> Path | None:
    explicit = init_kwargs.get("config_file") or os.environ.get("ENGRAM_CONFIG")
    if explicit:
        path = _path_like(explicit, "config_file")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    home = init_kwargs.get("home") or os.environ.get("ENGRAM_HOME") or DEFAULT_HOME
    candidate = _path_like(home, "home") / "config.toml"
    return candidate if candidate.is_file() else None


def _read_config_file(init_kwargs: dict[str, Any]) -> dict[str, Any]:
    path = _config_path(init_kwargs)
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err


class EngramConfig(BaseSettings):
    """All of Engram's settings. Unknown keys are refused."""

    model_config = SettingsConfigDict(
        env_prefix="ENGRAM_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Field(default=DEFAULT_HOME, description="Directory for the embedded store.")
    config_file: Path | None = Field(default=None, description="TOML file with settings.")
    artifacts_dir: Path | None = Field(
        default=None,
        description="Where KV blocks (kv/) and LoRA adapters (lora/) are kept. Default: the "
        "home. Servers and workers sharing one database point this at one shared directory "
        "(a network or cluster volume) to see each other's blocks and adapters.",
    )
    database_url: str | None = Field(
        default=None,
        description="Store location (env ENGRAM_DATABASE_URL): sqlite:///path/to.db, or "
        "postgresql://user:pass@host/db (also postgres://) for the PostgreSQL store, which "
        "needs the 'postgres' extra. Default: $ENGRAM_HOME/engram.db.",
    )
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    sqlite: SQLiteConfig = Field(default_factory=SQLiteConfig)
    postgres: PostgresConfig = Field(default_factory=PostgresConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    kv: KVConfig = Field(default_factory=KVConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    answer: AnswerConfig = Field(default_factory=AnswerConfig)
    chat: ChatConfig = Field(default_factory=ChatConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("artifacts_dir")
    @classmethod
    def _expand_artifacts(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        from engram.store.factory import check_url  # the one list of schemes

        try:
            return None if value is None else check_url(value)
        except ConfigError as err:  # pydantic reports ValueErrors as field problems
            raise ValueError(str(err)) from err

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs = getattr(init_settings, "init_kwargs", {})
        return (init_settings, env_settings, _FileSource(settings_cls, init_kwargs))

    @property
    def artifacts(self) -> Path:
        """The directory holding kv/ and lora/: `artifacts_dir`, else the home."""
        return self.artifacts_dir if self.artifacts_dir is not None else self.home

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file this config points at."""
        if self.database_url and self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///")).expanduser()
        return self.home / "engram.db"


def load_config(**overrides: Any) -> EngramConfig:
    """Build the config from all layers; raise ConfigError with every problem listed."""
    try:
        return EngramConfig(**overrides)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid Engram configuration: {problems}") from err
