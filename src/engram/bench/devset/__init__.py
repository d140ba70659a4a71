"""A generated development set: LoCoMo-format conversations about invented people, with
single-hop, multi-hop, temporal and open-domain questions and their evidence turns."""

from engram.bench.devset.generate import generate, summary, write

__all__ = ["generate", "summary", "write"]
