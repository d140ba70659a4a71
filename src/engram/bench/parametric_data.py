"""Synthetic facts about invented people (no model can know them) and general text."""

from __future__ import annotations

import random

from engram.parametric.examples import Fact
from engram.parametric.general_text import GENERAL_TEXTS

__all__ = ["GENERAL_TEXTS", "batches", "generate_facts"]

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "gr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "n", "r", "l", "s", "th", "x"]

# (prompt template, question template, answer kind)
_RELATIONS = [
    ("{s} lives in", "Where does {s} live?", "place"),
    ("{s} works as a", "What does {s} work as?", "job"),
    ("{s} was born in", "What year was {s} born?", "year"),
    ("The pet of {s} is called", "What is the name of the pet of {s}?", "name"),
    ("{s} plays the", "What instrument does {s} play?", "instrument"),
]
_JOBS = [
    "baker",
    "pilot",
    "nurse",
    "farmer",
    "painter",
    "teacher",
    "lawyer",
    "sailor",
    "miner",
    "tailor",
    "poet",
    "judge",
    "chemist",
    "glazier",
    "cooper",
    "weaver",
]
_INSTRUMENTS = ["harp", "violin", "flute", "drum", "cello", "lute", "oboe", "horn", "piano"]


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
    )


def _answer(rng: random.Random, kind: str) -> str:
    if kind == "place":
        return _word(rng, 2).capitalize() + rng.choice(["ton", "vale", "ford", "holm"])
    if kind == "job":
        return rng.choice(_JOBS)
    if kind == "year":
        return str(rng.randint(1850, 2010))
    if kind == "instrument":
        return rng.choice(_INSTRUMENTS)
    return _word(rng, 2).capitalize()


def generate_facts(n: int, seed: int = 0, prefix: str = "f") -> list[Fact]:
    """`n` facts, each about a different invented person, with a question form."""
    rng = random.Random(seed)
    facts: list[Fact] = []
    names: set[str] = set()
    while len(facts) < n:
        name = f"{_word(rng, 2).capitalize()} {_word(rng, 2).capitalize()}"
        if name in names:
            continue
        names.add(name)
        prompt, question, kind = _RELATIONS[len(facts) % len(_RELATIONS)]
        facts.append(
            Fact(
                f"{prefix}{len(facts)}",
                prompt.format(s=name),
                _answer(rng, kind),
                question.format(s=name),
            )
        )
    return facts


def batches(n_batches: int, per_batch: int, seed: int = 0) -> list[list[Fact]]:
    facts = generate_facts(n_batches * per_batch, seed)
    return [facts[i * per_batch : (i + 1) * per_batch] for i in range(n_batches)]
