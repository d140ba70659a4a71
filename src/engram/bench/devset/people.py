"""The fact model: what each invented person says about themselves, and in which session.

A `Fact` is one answerable thing (a question's ground truth): the `Line`s that state it
(its evidence), any earlier lines it overrides (a correction), and the slots its question
needs. Statement wording lives here; question wording, deliberately different, lives in
questions.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from engram.bench.devset import vocab
from engram.bench.devset.vocab import Namer

SINGLE_HOP, MULTI_HOP, TEMPORAL, OPEN_DOMAIN = 4, 1, 2, 3


@dataclass(frozen=True)
class Line:
    """One statement: a template with {slots}, said by person 0 or 1 in a session."""

    person: int
    session: int
    template: str
    slots: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass
class Fact:
    kind: str
    category: int
    person: int
    answer: str
    evidence: list[Line]
    superseded: list[Line] = field(default_factory=list)
    slots: dict[str, str] = field(default_factory=dict)
    when: str | None = None  # temporal: the relative phrase the evidence uses


@dataclass(frozen=True)
class Attribute:
    """A fact about the speaker: how to invent its value, say it, and (when it can change)
    say that it changed."""

    value: Callable[[Namer], str]
    says: tuple[str, ...]
    updates: tuple[str, ...] = ()


def _pick(options: tuple[str, ...]) -> Callable[[Namer], str]:
    return lambda namer: namer.pick(options)


ATTRIBUTES: dict[str, Attribute] = {
    "dog": Attribute(lambda n: n.pet(), (
        "we adopted a puppy and we're calling him {v}",
        "{v} (the pup) chewed through my charger cable again",
        "my furry boy {v} needs a walk every two hours, exhausting")),
    "cat": Attribute(lambda n: n.pet(), (
        "the kitten finally has a name, {v}",
        "{v} knocked my mug off the desk this morning, little gremlin",
        "our new furball {v} sleeps on my keyboard all day")),
    "employer": Attribute(lambda n: n.company(), (
        "first week at {v} done, the badge photo is terrible",
        "things at {v} are hectic, three deadlines this week",
        "my manager at {v} wants everyone in the office on fridays now"), (
        "big news, i handed in my notice at {old}, starting at {v} next month",
        "left {old} for good, signed the contract with {v} yesterday")),
    "occupation": Attribute(_pick(vocab.OCCUPATIONS), (
        "been a {v} for six years now and it still surprises me",
        "long shift today, being a {v} is not for the faint hearted")),
    "hometown": Attribute(lambda n: n.town(), (
        "I grew up in {v}, tiny place, one bakery",
        "back in {v} where I was a kid we had snow every winter")),
    "residence": Attribute(lambda n: n.town(), (
        "we just signed the lease on a flat in {v}",
        "the neighbours here in {v} are lovely, brought us soup"), (
        "we're packing boxes again, moving out of {old} to {v} this weekend",
        "update: no longer in {old}, the new place in {v} has a garden")),
    "instrument": Attribute(_pick(vocab.INSTRUMENTS), (
        "practising {v} for an hour every night, fingers hurt",
        "my {v} teacher says my scales are getting cleaner"), (
        "gave up on the {old}, switched to {v} and it clicks way better",)),
    "dish": Attribute(lambda n: n.dish(), (
        "I could eat {v} every single day honestly",
        "made {v} again, that's my comfort food")),
    "allergy": Attribute(_pick(vocab.ALLERGIES), (
        "I break out in hives from {v}, had to leave the party early",
        "carrying my epipen because of {v}, can't risk it")),
    "car": Attribute(lambda n: n.car(), (
        "finally bought a secondhand {v}, it smells like old crisps",
        "the {v} made a grinding noise on the motorway, great"), (
        "sold the {old}, picked up a {v} instead, much smoother ride",)),
    "sibling": Attribute(lambda n: n.person(), (
        "my big sister {v} called, she's coming for easter",
        "{v}, my older sis, still bosses me around at 40")),
    "best_friend": Attribute(lambda n: n.person(), (
        "{v} and I have been mates since we were five",
        "my oldest pal {v} is the only one who gets my jokes")),
    "club": Attribute(lambda n: n.club(), (
        "joined the {v}, first session thursday",
        "went to {v} again, made two new friends there")),
    "book": Attribute(lambda n: n.title(), (
        "can't put down {v}, stayed up till 2am",
        "halfway through {v} and the twist got me")),
    "show": Attribute(lambda n: n.title(), (
        "binged all of {v} on the sofa this weekend",
        "the new season of {v} is so good, no spoilers pls")),
    "coffee": Attribute(_pick(vocab.COFFEES), (
        "my usual order is a {v}, the barista knows me now",
        "third {v} of the day, send help"), (
        "cut back on caffeine, it's a {v} now instead of the {old}",)),
    "language": Attribute(_pick(vocab.LANGUAGES), (
        "duolingo streak at 40 days, {v} grammar is brutal",
        "trying to learn {v} before the trip, the verbs are wild")),
    "team": Attribute(lambda n: n.team(), (
        "the {v} lost AGAIN, why do I do this to myself",
        "got a scarf for the {v}, wearing it to every match")),
    "birth_month": Attribute(_pick(vocab.MONTHS), (
        "my bday's in {v}, thinking of a picnic",
        "{v} babies are the best, just saying, it's my birthday month")),
    "colour": Attribute(_pick(vocab.COLOURS), (
        "painted the bedroom {v}, it's my fave",
        "everything I own is {v} at this point lol")),
    "partner": Attribute(lambda n: n.person(), (
        "{v} (my girlfriend) made pancakes this morning",
        "date night with {v}, we tried the new tapas place")),
    "major": Attribute(_pick(vocab.MAJORS), (
        "back when I studied {v} at uni we had 9am lectures every day",
        "my {v} degree is finally useful, someone asked me a question about it")),
    "commute": Attribute(_pick(vocab.COMMUTES), (
        "took the {v} in this morning, packed as usual",
        "the {v} ride in is the only quiet part of my day"), (
        "no more {old} for me, I take the {v} in now, way less stress",)),
    "fear": Attribute(_pick(vocab.FEARS), (
        "I'm honestly terrified of {v}, always have been",
        "nope nope nope, {v} freak me out so much")),
}
CHANGEABLE = tuple(name for name, a in ATTRIBUTES.items() if a.updates)

# relation word in the introduction -> second facts about that relation (kind, statements)
RELATIONS = ("brother", "cousin", "roommate", "coworker", "neighbour", "uncle",
             "aunt", "niece", "nephew", "godson", "grandma", "stepdad")
SECOND_HOPS: dict[str, tuple[Callable[[Namer], str], tuple[str, ...]]] = {
    "job": (lambda n: n.company(), (
        "{n} got hired at {v}, we went out to celebrate",
        "{n} says the people at {v} are nice but the pay is meh")),
    "moved": (lambda n: n.town(), (
        "{n} packed up and relocated to {v}, I miss having them close",
        "helped {n} carry a sofa up four floors in {v}, my back")),
    "pet": (lambda n: n.pet(), (
        "{n} brought home a parrot called {v}, it swears",
        "{n}'s new rabbit {v} already ate a cable")),
    "hobby": (_pick(vocab.INSTRUMENTS), (
        "{n} picked up the {v}, the whole building can hear",
        "{n} is taking {v} lessons twice a week now")),
    "trip": (lambda n: n.mountain(), (
        "{n} is off trekking up {v}, sent me pics from the top",
        "{n} came back from {v} with a sunburn")),
}
INTRODUCTIONS = (
    "my {rel} {n} is staying on our sofa this week",
    "had lunch with {n}, my {rel}, they never change",
    "{n} (my {rel}) keeps sending me memes at 3am",
)

# event: (statement templates with {when} and maybe {x}, extra-slot maker or None)
EVENTS: dict[str, tuple[tuple[str, ...], Callable[[Namer], str] | None]] = {
    "half_marathon": (("did my first 21k {when}, legs are jelly",), None),
    "concert": (("saw {x} live {when}, still buzzing",), lambda n: n.band()),
    "dentist": (("had a root canal {when}, face still numb",), None),
    "tattoo": (("got inked {when}, a tiny fox on my wrist",), None),
    "interview": (("{when} I met the hiring panel over at {x}, fingers crossed",),
                  lambda n: n.company()),
    "puncture": (("my bike tyre went flat on the way home {when}, walked 4 miles",), None),
    "hike": (("we reached the top of {x} {when}, views were unreal",), lambda n: n.mountain()),
    "food_poisoning": (("{when} I was sick all night after some dodgy prawns",), None),
    "locked_out": (("{when} I left my keys inside and had to call a locksmith",), None),
    "promotion": (("my boss bumped me up to team lead {when}",), None),
    "wedding": (("{x} got married {when}, I danced at the reception till my feet bled",),
                lambda n: n.person()),
    "driving_test": (("passed my road test {when}!!! first try, L plates in the bin",), None),
    "phone": (("dropped my phone {when} and the screen shattered",), None),
    "shelter": (("{when} I helped out at the dog rescue all day, so many puppies",), None),
    "pottery": (("{when} I went to my first ceramics workshop, made a wonky bowl",), None),
    "power_cut": (("the electricity went out on our whole road {when}, candles everywhere",), None),
    "fox": (("a little red vixen was strolling down the high street {when}",), None),
    "wallet": (("{when} my purse got nicked on the bus, cancelled all my cards",), None),
    "haircut": (("{when} I finally chopped it all off at the barber, my head feels cold",), None),
    "bake_off": (("{when} I entered a cake contest at the village fete and came second",), None),
}

# preference: statement templates (the question asks about a case never mentioned)
PREFERENCES: dict[str, tuple[str, ...]] = {
    "crowds": ("honestly packed places make me want to crawl out of my skin",),
    "cold": ("give me snow and grey skies over a heatwave any day",),
    "vegetarian": ("haven't touched meat in eight years, don't miss it",),
    "early": ("up at 5 every day, I love the house before anyone wakes",),
    "flying": ("I'd take a three day train before I get on a plane again",),
    "homebody": ("perfect friday is me, a blanket and zero people",),
    "spicy": ("I put chili flakes on literally everything, the hotter the better",),
    "sport_tv": ("watching games on telly bores me to tears",),
    "reader": ("I get through like three novels a week",),
    "zero_waste": ("been trying to go plastic free, bulk jars for everything",),
    "horror": ("scary movies give me nightmares for weeks",),
    "outdoors": ("happiest when I'm out in the woods with a tent",),
    "sweets": ("not a dessert person at all, sugar makes me queasy",),
    "history": ("museums are my happy place, especially the ancient stuff",),
    "night_owl": ("my brain only switches on after midnight",),
    "gardening": ("spent all sunday with my hands in the soil, tomatoes coming along",),
    "loud": ("my ears can't take thumping bass anymore",),
    "puzzles": ("finished a 2000 piece jigsaw, so satisfying",),
}


@dataclass
class Plan:
    """Everything the two speakers will state, and the facts questions are asked about."""

    names: tuple[str, str]
    dates: list[date]
    facts: list[Fact] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    def add(self, fact: Fact) -> None:
        self.facts.append(fact)
        known = {id(line) for line in self.lines}
        self.lines += [x for x in (*fact.superseded, *fact.evidence) if id(x) not in known]


def relative_day(rng: random.Random, day: date) -> tuple[str, date]:
    """A phrase anchored on the session date, and the day it names."""
    back = rng.choice((0, 1, 1, 2, 3, 4, 5, 6, 7))
    if back == 0:
        return rng.choice(("this morning", "earlier today")), day
    if back == 1:
        return "yesterday", day - timedelta(days=1)
    if back == 7:
        return "a week ago", day - timedelta(days=7)
    if rng.random() < 0.5:
        return f"{('two', 'three', 'four', 'five', 'six')[back - 2]} days ago", day - timedelta(
            days=back
        )
    then = day - timedelta(days=back)
    return f"last {vocab.WEEKDAYS[then.weekday()]}", then


def plan(rng: random.Random, namer: Namer, sessions: int, dates: list[date]) -> Plan:
    """Facts for both speakers, spread over the sessions."""
    result = Plan((namer.person(), namer.person()), dates)
    for person in (0, 1):
        _attributes(rng, namer, result, person, sessions)
        _relations(rng, namer, result, person, sessions)
        _events(rng, namer, result, person, dates)
        for pref in rng.sample(sorted(PREFERENCES), rng.randint(6, 9)):
            line = Line(person, rng.randrange(sessions), rng.choice(PREFERENCES[pref]))
            result.add(Fact(pref, OPEN_DOMAIN, person, "", [line]))
    return result


def _attributes(rng: random.Random, namer: Namer, out: Plan, person: int, sessions: int) -> None:
    kinds = rng.sample(sorted(ATTRIBUTES), rng.randint(17, 22))
    changed = {k for k in kinds if k in CHANGEABLE and rng.random() < 0.8}
    for kind in kinds:
        attr = ATTRIBUTES[kind]
        value = attr.value(namer)
        if kind not in changed or sessions < 3:
            line = Line(person, rng.randrange(sessions), rng.choice(attr.says), {"v": value})
            out.add(Fact(kind, SINGLE_HOP, person, value, [line]))
            continue
        first, later = sorted(rng.sample(range(sessions), 2))
        old = Line(person, first, rng.choice(attr.says), {"v": value})
        new_value = attr.value(namer)
        new = Line(person, later, rng.choice(attr.updates), {"v": new_value, "old": value})
        out.add(Fact(kind, SINGLE_HOP, person, new_value, [new], superseded=[old]))


def _relations(rng: random.Random, namer: Namer, out: Plan, person: int, sessions: int) -> None:
    for rel in rng.sample(RELATIONS, rng.randint(8, 11)):
        name = namer.person()
        hop = rng.choice(sorted(SECOND_HOPS))
        make, says = SECOND_HOPS[hop]
        value = make(namer)
        first, second = sorted(rng.sample(range(sessions), 2))
        intro = Line(person, first, rng.choice(INTRODUCTIONS), {"rel": rel, "n": name})
        fact_line = Line(person, second, rng.choice(says), {"n": name, "v": value})
        out.add(Fact(hop, MULTI_HOP, person, value, [intro, fact_line], slots={"rel": rel}))
        out.add(Fact("relative", SINGLE_HOP, person, name, [intro], slots={"rel": rel}))


def _events(rng: random.Random, namer: Namer, out: Plan, person: int, dates: list[date]) -> None:
    for event in rng.sample(sorted(EVENTS), rng.randint(12, 17)):
        says, extra = EVENTS[event]
        session = rng.randrange(len(dates))
        phrase, day = relative_day(rng, dates[session])
        slots = {"when": phrase}
        if extra is not None:
            slots["x"] = extra(namer)
        line = Line(person, session, rng.choice(says), slots)
        out.add(Fact(event, TEMPORAL, person, vocab.day_text(day), [line],
                     slots={k: v for k, v in slots.items() if k == "x"}, when=phrase))
