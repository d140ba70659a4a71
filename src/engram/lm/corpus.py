"""The training text of the project LM, generated from a seed (never LoCoMo).

Four sources: multi-session dialogues about invented people, fact statements with
question/answer pairs, key/value lists followed by lookups (so the model learns to copy
from its context), and the docstrings of the Python standard library on this machine.
"""

from __future__ import annotations

import ast
import hashlib
import pkgutil
import random
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_ONSETS = "b c d f g h k l m n p r s t v z br dr gr kr pr tr st sh th".split()
_VOWELS = "a e i o u a e i o y ai ei ou".split()
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "th", "x", "nd", "rk"]

JOBS = "baker nurse carpenter teacher pilot chemist librarian farmer painter welder".split()
JOBS += "plumber tailor dentist architect translator gardener jeweler beekeeper".split()
PETS = "cat dog parrot rabbit turtle hamster goat pony ferret canary".split()
HOBBIES = ["rowing", "chess", "pottery", "hiking", "knitting", "fishing", "baking bread"]
HOBBIES += ["painting", "birdwatching", "rock climbing", "gardening", "singing", "cycling"]
COLORS = "red blue green yellow purple orange black white grey silver".split()
FOODS = "soup noodles dumplings pie curry salad stew pancakes rice figs".split()
PLACES = "mill bakery clinic school harbor library workshop farm studio market".split()
MONTHS = "January February March April May June July August September October November December"
MONTHS_L = MONTHS.split()
ATTRIBUTES = ["code", "room number", "password", "badge", "locker", "color", "ticket"]


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


@dataclass
class Person:
    """An invented person with a handful of facts the corpus talks about."""

    first: str
    last: str
    job: str
    employer: str
    city: str
    pet: str
    pet_name: str
    hobby: str
    birthday: str
    color: str
    food: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def invent_person(rng: random.Random) -> Person:
    """A person whose every fact is drawn from `rng`."""
    return Person(
        first=_word(rng, rng.randint(1, 2)),
        last=_word(rng, 2),
        job=rng.choice(JOBS),
        employer=f"the {_word(rng, 2)} {rng.choice(PLACES)}",
        city=_word(rng, rng.randint(2, 3)),
        pet=rng.choice(PETS),
        pet_name=_word(rng, rng.randint(1, 2)),
        hobby=rng.choice(HOBBIES),
        birthday=f"{rng.choice(MONTHS_L)} {rng.randint(1, 28)}",
        color=rng.choice(COLORS),
        food=rng.choice(FOODS),
    )


def facts_and_questions(p: Person) -> list[tuple[str, str, str]]:
    """(statement, question, answer) triples about one person."""
    n = p.name
    return [
        (f"{n} works as {_a(p.job)}.", f"What is the job of {n}?", _a(p.job)),
        (f"{n} works at {p.employer}.", f"Where does {n} work?", f"at {p.employer}"),
        (f"{n} lives in {p.city}.", f"Where does {n} live?", f"in {p.city}"),
        (
            f"{n} has a {p.pet} named {p.pet_name}.",
            f"What is the name of {n}'s {p.pet}?",
            p.pet_name,
        ),
        (f"{n} likes {p.hobby}.", f"What does {n} like to do?", p.hobby),
        (f"The birthday of {n} is {p.birthday}.", f"When is the birthday of {n}?", p.birthday),
        (
            f"The favorite color of {n} is {p.color}.",
            f"What is the favorite color of {n}?",
            p.color,
        ),
        (f"{n} loves {p.food}.", f"What food does {n} love?", p.food),
    ]


def fact_document(rng: random.Random) -> str:
    """A few people's facts, then questions about them in a different order."""
    people = [invent_person(rng) for _ in range(rng.randint(1, 4))]
    triples = [t for p in people for t in rng.sample(facts_and_questions(p), rng.randint(3, 8))]
    rng.shuffle(triples)
    lines = [" ".join(t[0] for t in triples)]
    for _, question, answer in rng.sample(triples, min(len(triples), rng.randint(2, 6))):
        lines.append(f"Q: {question} A: {answer}.")
    return "\n".join(lines)


def random_value(rng: random.Random) -> str:
    """A value the model cannot guess, only copy: digits, an invented word or a code."""
    kind = rng.randrange(4)
    if kind == 0:
        return str(rng.randint(10, 9999))
    if kind == 1:
        return _word(rng, rng.randint(1, 3))
    if kind == 2:
        return rng.choice(COLORS)
    letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(2))
    return f"{letters}{rng.randint(1, 99)}"


def key_value_items(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """n (attribute, key, value) triples with distinct keys."""
    items: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    while len(items) < n:
        key = f"{_word(rng, rng.randint(1, 2))} {_word(rng, 2)}"
        if key not in seen:
            seen.add(key)
            items.append((rng.choice(ATTRIBUTES), key, random_value(rng)))
    return items


def kv_statement(attribute: str, key: str, value: str) -> str:
    return f"The {attribute} of {key} is {value}."


def kv_question(attribute: str, key: str) -> str:
    return f"Q: What is the {attribute} of {key}? A:"


def kv_document(rng: random.Random) -> str:
    """Key/value statements, optional filler, then lookups answered by copying."""
    items = key_value_items(rng, rng.randint(2, 12))
    lines = [kv_statement(*item) for item in items]
    if rng.random() < 0.3:
        lines.insert(rng.randrange(len(lines) + 1), fact_document(rng).split("\n")[0])
    asked = rng.randint((len(items) + 1) // 2, len(items))
    for attribute, key, value in rng.sample(items, asked):
        lines.append(f"{kv_question(attribute, key)} {value}.")
    return "\n".join(lines)


_OPENERS = [
    "Hi {b}! Guess what, I adopted a {pet} named {pet_name}.",
    "Hey {b}, I started a new job as {a_job} at {employer}.",
    "Good morning {b}! I spent the weekend {hobby_ing}.",
    "Hello {b}. We finally moved to {city} last week.",
    "{b}, I cooked {food} for the whole family yesterday.",
]
_REPLIES = [
    "That is wonderful, {a}! Tell me more.",
    "Oh nice! How is it going so far?",
    "I am so happy for you, {a}.",
    "Really? I did not expect that at all.",
    "Sounds great. I should try that too.",
]
_FOLLOWUPS = [
    "How is {pet_name} the {pet} doing, {a}?",
    "Do you still like working at {employer}?",
    "Are you still into {hobby}?",
    "How do you like living in {city}?",
]
_ANSWERS = [
    "{pet_name} is great, thanks for asking! The {pet} sleeps all day.",
    "Yes, {employer} is a good place. Being {a_job} suits me.",
    "Of course, {hobby} is still my favorite thing to do.",
    "{city} is lovely, especially in {month}.",
]


def dialogue_document(rng: random.Random) -> str:
    """Two invented people talking over several dated sessions, with recall questions."""
    a, b = invent_person(rng), invent_person(rng)
    year = rng.randint(1990, 2030)
    fill = vars(a) | {
        "a": a.first,
        "b": b.first,
        "hobby_ing": a.hobby,
        "a_job": _a(a.job),
        "month": rng.choice(MONTHS_L),
    }
    lines: list[str] = []
    months = sorted(rng.sample(range(12), rng.randint(2, 4)))
    for session, month in enumerate(months, start=1):
        lines.append(f"Session {session} ({MONTHS_L[month]} {rng.randint(1, 28)}, {year})")
        speaker = [a.first, b.first]
        turn = rng.randrange(len(_OPENERS))
        lines.append(f"{a.first}: {_OPENERS[turn].format(**fill)}")
        lines.append(f"{b.first}: {rng.choice(_REPLIES).format(**fill)}")
        for _ in range(rng.randint(1, 3)):
            k = rng.randrange(len(_FOLLOWUPS))
            lines.append(f"{speaker[1]}: {_FOLLOWUPS[k].format(**fill)}")
            lines.append(f"{speaker[0]}: {_ANSWERS[k].format(**fill)}")
        lines.append("")
    triples = facts_and_questions(a)
    picked = [triples[i] for i in (0, 1, 2, 3, 4)]
    for _, question, answer in rng.sample(picked, rng.randint(1, 3)):
        lines.append(f"Q: {question} A: {answer}.")
    return "\n".join(lines)


_SKIP_TOP = {"test", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages"}


def _stdlib_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(dotted name, source file) of every stdlib module under `root`, sorted by name."""
    stack: list[tuple[str, Path]] = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        infos = sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name)
        for info in reversed(infos):
            if not prefix and (info.name in _SKIP_TOP or info.name.startswith("_")):
                continue
            if info.ispkg:
                stack.append((f"{prefix}{info.name}.", folder / info.name))
                init = folder / info.name / "__init__.py"
                if init.is_file():
                    yield f"{prefix}{info.name}", init
            else:
                path = folder / f"{info.name}.py"
                if path.is_file():
                    yield f"{prefix}{info.name}", path


def stdlib_docstrings(limit_chars: int | None = None) -> list[str]:
    """Module, class and function docstrings of the stdlib, read with `ast` (nothing is
    imported, so no module runs code), in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    total = 0
    for name, path in sorted(_stdlib_files(root)):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in [tree, *ast.walk(tree)]:
            if not isinstance(
                node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
            ):
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) < 40:
                continue
            title = name if isinstance(node, ast.Module) else f"{name}.{node.name}"
            docs.append(f"{title}\n{doc}")
            total += len(docs[-1])
            if limit_chars is not None and total >= limit_chars:
                return list(dict.fromkeys(docs))
    return list(dict.fromkeys(docs))


@dataclass
class Corpus:
    """Training and validation documents, tagged by source."""

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    sources: dict[str, dict[str, int]] = field(default_factory=dict)

    def digest(self) -> str:
        h = hashlib.sha256()
        for split in (self.train, self.val):
            for doc in split:
                h.update(doc.encode())
                h.update(b"\x00")
            h.update(b"\x01")
        return h.hexdigest()


GENERATORS = {"facts": fact_document, "kv": kv_document, "dialogue": dialogue_document}


def build_corpus(
    seed: int, *, counts: dict[str, int], docstring_chars: int | None, val_every: int = 20
) -> Corpus:
    """Deterministic corpus: `counts[name]` documents of each generator plus stdlib
    docstrings; every `val_every`-th document of each source is held out for validation."""
    unknown = set(counts) - set(GENERATORS)
    if unknown:
        raise ValueError(f"unknown corpus generators: {sorted(unknown)}")
    corpus = Corpus()
    per_source: dict[str, list[str]] = {}
    for i, (name, make) in enumerate(sorted(GENERATORS.items())):
        rng = random.Random(seed * 1000 + i)
        per_source[name] = [make(rng) for _ in range(counts.get(name, 0))]
    per_source["stdlib"] = stdlib_docstrings(docstring_chars)
    for name, docs in per_source.items():
        train = [d for j, d in enumerate(docs) if j % val_every != val_every - 1]
        val = [d for j, d in enumerate(docs) if j % val_every == val_every - 1]
        corpus.train += train
        corpus.val += val
        corpus.sources[name] = {
            "docs": len(docs),
            "chars": sum(map(len, docs)),
            "val_docs": len(val),
        }
    rng = random.Random(seed)
    rng.shuffle(corpus.train)
    rng.shuffle(corpus.val)
    return corpus
