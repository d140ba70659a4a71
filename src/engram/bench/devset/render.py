"""Registers: how a speaker writes. Lowercase texting with slang, typo-prone quick replies,
long rambling turns, plain prose; and the small talk that fills the turns between facts.

Only a template's own words are restyled: slot values (names, dates, answers) pass through
untouched, apart from lowercasing, so every answer stays readable in its evidence turn.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from engram.bench.devset import vocab
from engram.bench.devset.vocab import Namer

_SLOT = re.compile(r"(\{\w+\})")
_WORD = re.compile(r"[A-Za-z]{4,}")


@dataclass(frozen=True)
class Register:
    lowercase: bool
    slang: bool
    typo_rate: float  # share of template words (4+ letters) given one typo
    ramble: float  # chance a turn is padded with small talk before and after


REGISTERS = {
    "texter": Register(lowercase=True, slang=True, typo_rate=0.05, ramble=0.05),
    "rambler": Register(lowercase=False, slang=False, typo_rate=0.01, ramble=0.7),
    "sloppy": Register(lowercase=True, slang=False, typo_rate=0.12, ramble=0.2),
    "plain": Register(lowercase=False, slang=False, typo_rate=0.0, ramble=0.15),
}

SLANG = {
    r"\byou\b": "u", r"\byour\b": "ur", r"\bare\b": "r", r"\bright now\b": "rn",
    r"\bto be honest\b": "tbh", r"\bbecause\b": "bc", r"\bthough\b": "tho",
    r"\breally\b": "rly", r"\bpeople\b": "ppl", r"\bplease\b": "pls", r"\bokay\b": "ok",
    r"\bgoing to\b": "gonna", r"\bwant to\b": "wanna", r"\bI don't know\b": "idk",
    r"\bthanks\b": "thx", r"\bsee you\b": "cya", r"\bwith\b": "w/",
}

GREETINGS = ("hey! how's your week going?", "hiya, long time no chat", "morning! you around?",
             "heyyy", "yo, what's new?", "hello hello", "you alive? haven't heard from you")
REPLIES = ("haha no way", "omg that's amazing", "ugh, sorry to hear that", "nice, good for you",
           "wait really?", "lol classic", "that sounds rough", "so jealous right now",
           "ha, typical", "aw that's sweet", "hmm, fair enough", "same to be honest",
           "no way, tell me more", "I don't know how you do it", "you're a legend",
           "that's wild", "oof", "love that for you", "makes sense", "haha okay okay")
CLOSINGS = ("gotta run, talk soon", "ok bedtime for me, night!", "catch you later",
            "speak soon x", "right, dinner's ready, see you", "thanks for the chat, bye")
WEATHER = ("grey and drizzly", "weirdly warm", "freezing", "windy enough to lose an umbrella",
           "perfect, blue skies")
SNACKS = ("toast", "noodles", "pastries", "soup", "chips", "pancakes", "curry", "ice cream")
ANIMALS = ("goat", "peacock", "tortoise", "ferret", "goose", "hedgehog")
TOPICS = ("deep sea squid", "medieval plumbing", "the history of ketchup", "volcanoes",
          "ants that farm fungus", "lighthouse keepers", "competitive yo-yo")
SMALL_TALK = (
    "the weather here has been {weather} all week",
    "I've been craving {snack} since lunch",
    "did you see the thing about the {town} bridge closing?",
    "my neighbour's {animal} keeps getting into our yard somehow",
    "work was fine, nothing exciting really",
    "can't believe it's already {month}",
    "I need to clean the flat, it's a disaster zone",
    "thinking of repainting the hallway but can't be bothered",
    "the market in {town} had really good {snack} today",
    "traffic was a nightmare this morning",
    "just watched a documentary about {topic}, so weird",
    "{name} from the corner shop says hi by the way",
    "got caught in the rain without a coat, classic me",
    "making tea, want one? lol",
    "what are you up to this weekend?",
    "how's everyone at home?",
    "sorry for the slow reply, crazy day",
    "random thought but do you still have that blue umbrella of mine",
    "I keep meaning to call my mum back and then forgetting",
    "we should grab {snack} sometime soon",
    "the wifi here is so slow I want to scream",
    "did you ever try that place in {town}? everyone talks about it",
)
CONNECTIVES = ("anyway, ", "oh and ", "btw ", "also ", "so yeah, ", "")


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 2)
    kind = rng.randrange(3)
    if kind == 0:  # swap two neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:  # drop one
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]  # double one


def _restyle(text: str, register: Register, rng: random.Random) -> str:
    if register.slang:
        for pattern, short in SLANG.items():
            text = re.sub(pattern, short, text, flags=re.IGNORECASE)
    if register.lowercase:
        text = text.lower()
    if register.typo_rate:
        text = _WORD.sub(
            lambda m: _typo(m.group(0), rng) if rng.random() < register.typo_rate else m.group(0),
            text,
        )
    return text


def fill(template: str, slots: dict[str, str], register: Register, rng: random.Random) -> str:
    """The template in the speaker's register, slot values left intact (not capitalised:
    `sentences` does that once the turn is put together)."""
    parts = []
    for piece in _SLOT.split(template):
        if _SLOT.fullmatch(piece):
            value = slots[piece[1:-1]]
            parts.append(value.lower() if register.lowercase else value)
        else:
            parts.append(_restyle(piece, register, rng))
    return "".join(parts)


def sentences(parts: list[str], register: Register) -> str:
    """Join sentences with '. ' unless one already ends in punctuation."""
    text = ""
    for part in parts:
        if not part:
            continue
        if not register.lowercase:
            part = part[0].upper() + part[1:]
        text = part if not text else f"{text}{'' if text[-1] in '.!?' else '.'} {part}"
    return text


def small_talk(rng: random.Random, namer: Namer) -> str:
    slots = {
        "weather": rng.choice(WEATHER), "snack": rng.choice(SNACKS),
        "animal": rng.choice(ANIMALS), "topic": rng.choice(TOPICS),
        "month": rng.choice(vocab.MONTHS),
    }
    template = rng.choice(SMALL_TALK)
    if "{town}" in template:
        slots["town"] = namer.town()
    if "{name}" in template:
        slots["name"] = namer.person()
    return template.format(**slots)


def filler(rng: random.Random, namer: Namer, register: Register, position: str) -> str:
    """A turn with no fact in it: a greeting, a closing, or a reaction and/or small talk."""
    if position == "first":
        template = rng.choice(GREETINGS)
    elif position == "last":
        template = rng.choice(CLOSINGS)
    else:
        roll = rng.random()
        if roll < 0.35:
            chosen = [rng.choice(REPLIES)]
        elif roll < 0.75:
            chosen = [small_talk(rng, namer)]
        else:
            chosen = [rng.choice(REPLIES), small_talk(rng, namer)]
        if rng.random() < register.ramble:
            chosen += [small_talk(rng, namer), small_talk(rng, namer)]
        return sentences([fill(c, {}, register, rng) for c in chosen], register)
    return sentences([fill(template, {}, register, rng)], register)


def statement(template: str, slots: dict[str, str], register: Register, rng: random.Random,
              namer: Namer) -> str:
    """A fact-bearing turn: the statement, sometimes buried in small talk (rambling)."""
    text = fill(template, slots, register, rng)
    if rng.random() >= register.ramble:
        return sentences([text], register)
    before = [fill(small_talk(rng, namer), {}, register, rng) for _ in range(rng.randint(1, 3))]
    after = [fill(small_talk(rng, namer), {}, register, rng) for _ in range(rng.randint(0, 2))]
    connective = rng.choice(CONNECTIVES)
    if connective and not template.startswith("{"):
        text = connective + text  # a name keeps its capital
    return sentences([*before, text, *after], register)
