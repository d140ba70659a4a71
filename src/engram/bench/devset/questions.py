"""Question wording: each fact asked with words its evidence does not use (a synonym or a
description instead of the statement's own words), so word overlap alone cannot find it,
while a person reading the conversation could still answer."""

from __future__ import annotations

import random
from typing import Any

from engram.bench.devset.people import MULTI_HOP, OPEN_DOMAIN, TEMPORAL, Fact

ATTRIBUTE_QUESTIONS: dict[str, tuple[str, ...]] = {
    "dog": ("What is the name of {p}'s dog?", "What did {p} name the canine they adopted?"),
    "cat": ("What is {p}'s cat called?", "What name did {p} give the feline?"),
    "employer": ("Which company employs {p}?", "Who does {p} work for at the moment?"),
    "occupation": ("What does {p} do for a living?", "What is {p}'s profession?"),
    "hometown": ("Where is {p} originally from?", "In which town was {p} raised?"),
    "residence": ("Where does {p} currently reside?", "Which town is {p}'s home these days?"),
    "instrument": ("Which musical instrument does {p} play?",),
    "dish": ("What is {p}'s favourite food?", "Which meal does {p} love most?"),
    "allergy": ("What is {p} allergic to?", "What triggers {p}'s allergic reaction?"),
    "car": ("What vehicle does {p} drive?", "Which car does {p} own?"),
    "sibling": ("What is the name of {p}'s older sibling?",),
    "best_friend": ("Who is {p}'s closest childhood friend?",),
    "club": ("Which group or class did {p} sign up for?",),
    "book": ("Which novel is {p} reading?", "What book has {p} hooked?"),
    "show": ("Which TV series did {p} watch?", "What programme is {p} watching?"),
    "coffee": ("What drink does {p} order at the café?", "How does {p} take their coffee?"),
    "language": ("Which foreign language is {p} studying?",),
    "team": ("Which sports team does {p} support?", "Who does {p} cheer for in sport?"),
    "birth_month": ("In which month was {p} born?", "When is {p}'s birthday?"),
    "colour": ("What is {p}'s favourite colour?",),
    "partner": ("Who is {p} dating?", "What is the name of {p}'s partner?"),
    "major": ("What did {p} major in at college?", "What subject was {p}'s degree in?"),
    "commute": ("How does {p} travel to work?", "What transport gets {p} to the office?"),
    "relative": ("What is the name of {p}'s {rel}?", "What is {p}'s {rel} called?"),
    "fear": ("What is {p} scared of?", "What phobia does {p} have?"),
}

RELATION_WORDS = {"coworker": "colleague", "roommate": "housemate", "neighbour": "next-door "
                  "neighbour", "grandma": "grandmother", "stepdad": "stepfather"}
HOP_QUESTIONS: dict[str, tuple[str, ...]] = {
    "job": ("Which company hired {p}'s {rel}?", "Where does {p}'s {rel} work now?"),
    "moved": ("Which town did {p}'s {rel} relocate to?", "Where does {p}'s {rel} live now?"),
    "pet": ("What is the name of the pet belonging to {p}'s {rel}?",),
    "hobby": ("Which instrument is {p}'s {rel} learning?",),
    "trip": ("Which mountain did {p}'s {rel} go trekking on?",),
}

EVENT_QUESTIONS: dict[str, str] = {
    "half_marathon": "When did {p} run a half marathon?",
    "concert": "When did {p} see {x} perform?",
    "dentist": "When did {p} have dental surgery?",
    "tattoo": "When did {p} get a tattoo?",
    "interview": "On what date did {p} interview with {x}?",
    "puncture": "When did {p} get a puncture cycling?",
    "hike": "When did {p} climb {x}?",
    "food_poisoning": "When did {p} get food poisoning?",
    "locked_out": "When was {p} locked out of their home?",
    "promotion": "When was {p} promoted?",
    "wedding": "When was {x}'s wedding that {p} attended?",
    "driving_test": "When did {p} pass the exam for a driving licence?",
    "phone": "When did {p} crack their phone?",
    "shelter": "When did {p} volunteer at an animal shelter?",
    "pottery": "When did {p} take a pottery class?",
    "power_cut": "When did {p}'s neighbourhood lose power?",
    "fox": "When did {p} spot a fox in town?",
    "wallet": "When did {p} lose their wallet?",
    "haircut": "When did {p} get a new hairstyle?",
    "bake_off": "When did {p} take part in a baking competition?",
}

# preference: (question about a case never mentioned, likely answer)
PREFERENCE_QUESTIONS: dict[str, tuple[str, str]] = {
    "crowds": ("Would {p} enjoy a sold-out stadium show?", "Probably not; {p} hates crowds."),
    "cold": ("Would {p} rather holiday in Lapland or on a tropical beach?",
             "Lapland; {p} prefers cold weather."),
    "vegetarian": ("Would {p} order the steak at a dinner party?",
                   "No; {p} is vegetarian."),
    "early": ("Is {p} a morning person?", "Yes; {p} gets up at dawn."),
    "flying": ("Would {p} book a flight for a weekend abroad?",
               "Unlikely; {p} avoids air travel."),
    "homebody": ("Would {p} like a big surprise party?", "Probably not; {p} prefers quiet "
                 "evenings alone."),
    "spicy": ("Would {p} enjoy a fiery vindaloo?", "Yes; {p} loves hot food."),
    "sport_tv": ("Would {p} want tickets to watch the football final on a big screen?",
                 "Probably not; {p} finds televised sport boring."),
    "reader": ("Would a bookshop gift card suit {p}?", "Yes; {p} is an avid reader."),
    "zero_waste": ("Would {p} appreciate a reusable shopping bag?",
                   "Yes; {p} is cutting out plastic."),
    "horror": ("Would {p} want to see a slasher film?", "No; frightening films upset {p}."),
    "outdoors": ("Would {p} enjoy a camping weekend?", "Yes; {p} loves nature and camping."),
    "sweets": ("Would {p} like a box of chocolates?", "Probably not; {p} dislikes sugary "
               "things."),
    "history": ("Would {p} enjoy a tour of a medieval castle?",
                "Yes; {p} loves the past and museums."),
    "night_owl": ("Would {p} enjoy a 6am yoga class?", "No; {p} is a night owl."),
    "gardening": ("Would {p} like a set of trowels as a gift?",
                  "Yes; {p} grows vegetables."),
    "loud": ("Would {p} enjoy a techno rave?", "Probably not; loud music bothers {p}."),
    "puzzles": ("Would {p} like a crossword book?", "Yes; {p} enjoys puzzles."),
}


def question(fact: Fact, names: tuple[str, str], rng: random.Random,
             evidence: list[str], superseded: list[str]) -> dict[str, Any]:
    """The LoCoMo qa item for a fact (plus `kind`, and `when`/`superseded` where they apply:
    extra keys the reader ignores and the tests check)."""
    slots = {"p": names[fact.person], **fact.slots}
    if "rel" in slots:
        slots["rel"] = RELATION_WORDS.get(slots["rel"], slots["rel"])
    answer = fact.answer
    if fact.category == OPEN_DOMAIN:
        template, answer = PREFERENCE_QUESTIONS[fact.kind]
        answer = answer.format(**slots)
    elif fact.category == TEMPORAL:
        template = EVENT_QUESTIONS[fact.kind]
    elif fact.category == MULTI_HOP:
        template = rng.choice(HOP_QUESTIONS[fact.kind])
    else:
        template = rng.choice(ATTRIBUTE_QUESTIONS[fact.kind])
    item: dict[str, Any] = {
        "question": template.format(**slots),
        "answer": answer,
        "evidence": evidence,
        "category": fact.category,
        "kind": fact.kind,
    }
    if fact.when is not None:
        item["when"] = fact.when
    if superseded:
        item["superseded"] = superseded
    return item
