"""Query analysis without an LLM: word terms for lexical search."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)

# Function words that match nearly every memory; BM25 would score them near zero anyway,
# dropping them keeps FTS5 from walking their long posting lists.
STOPWORDS = frozenset(
    """a an and are as at be been being but by did do does doing for from had has have having
    he her hers him his i if in into is it its me my of on or our ours she so than that the
    their theirs them then there these they this those to was we were what when where which
    who whom why will with would you your yours s t d ll m re ve""".split()  # + contractions
)


def query_terms(text: str, max_terms: int = 64) -> list[str]:
    """Distinct lower-cased words of `text`, stopwords removed (all kept if nothing is left)."""
    words = [w.lower() for w in _WORD.findall(text)]
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))[:max_terms]
