"""A small fixed set of ordinary sentences: GeRe's general replay samples and the text
perplexity drift is measured on when the caller brings none of its own."""

from __future__ import annotations

import functools

GENERAL_TEXTS = [
    "The sun rises in the east and sets in the west.",
    "Water boils at one hundred degrees at sea level.",
    "A week has seven days and a year has twelve months.",
    "Cats and dogs are common pets in many homes.",
    "The library opens at nine and closes in the evening.",
    "Bread is made from flour, water, salt and yeast.",
    "Rain falls from clouds when the air is full of water.",
    "The train to the city leaves every hour from the station.",
    "Children walk to school in the morning with their friends.",
    "A river flows from the mountains down to the sea.",
    "The market sells fresh fruit, vegetables and fish.",
    "Winter is cold and summer is warm in most of the north.",
    "She read a book in the garden while the tea was cooling.",
    "He wrote a letter to his brother and sent it by post.",
    "The museum shows old paintings and ancient coins.",
    "Birds build nests in spring and fly south in autumn.",
]


def general_pool(size: int = 512, words: int = 40) -> list[str]:
    """GENERAL_TEXTS, then standard-library docstrings cut to `words` words, `size` in all:
    the ordinary text safeguards replay (GeRe takes the first few) and distill from. The
    docstrings are read from this machine's Python with `ast`; none are shipped."""
    docs = docstring_texts(words, limit_chars=2000 * size)
    return list(dict.fromkeys([*GENERAL_TEXTS, *docs]))[:size]


@functools.cache
def _docstring_texts(words: int, limit_chars: int) -> tuple[str, ...]:
    from engram.lm.corpus import stdlib_docstrings

    return tuple(" ".join(d.split()[:words]) for d in stdlib_docstrings(limit_chars=limit_chars))


def docstring_texts(words: int, limit_chars: int) -> list[str]:
    """Standard-library docstrings (about `limit_chars` of them), each cut to `words` words;
    parsed once per process."""
    return list(_docstring_texts(words, limit_chars))
