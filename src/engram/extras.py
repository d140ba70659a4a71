"""Optional extras: which modules each needs, and a clear error naming the one to install."""

from __future__ import annotations

from importlib.util import find_spec

from engram.errors import MissingExtraError

DISTRIBUTION = "engram-os"

# extra -> the top-level modules it installs (kept in step with pyproject.toml by a test)
EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("fastapi", "uvicorn", "mcp"),
    "activation": ("gguf", "accelerate"),
    "parametric": ("peft",),
    "postgres": ("psycopg", "pgvector"),
}


def missing(extra: str) -> list[str]:
    return [name for name in EXTRAS[extra] if find_spec(name) is None]


def require_extra(extra: str, what: str) -> None:
    """MissingExtraError, naming the pip command, when `extra`'s modules are absent."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra ({', '.join(absent)} not installed): "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )
