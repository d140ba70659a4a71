"""The extractor registry: every built-in extractor, selectable by name."""

from __future__ import annotations

from engram.errors import ConfigError
from engram.extract.base import (
    Extractor,
)
from engram.extract.dates import DateEvents
from engram.extract.dedup import NearDuplicates
from engram.extract.llm import LLMExtractor
from engram.extract.session_summary import SessionSummary
from engram.extract.topic_summary import TopicSummary

EXTRACTORS: dict[str, type[Extractor]] = {}


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Make an extractor selectable by name in `extract.extractors`."""
    EXTRACTORS[cls.name] = cls
    return cls


for _cls in (SessionSummary, TopicSummary, DateEvents, NearDuplicates, LLMExtractor):
    register_extractor(_cls)


def build_extractors(names: list[str]) -> dict[str, Extractor]:
    unknown = [n for n in names if n not in EXTRACTORS]
    if unknown:
        raise ConfigError(f"unknown extractors {unknown}; known: {sorted(EXTRACTORS)}")
    return {name: EXTRACTORS[name]() for name in names}
