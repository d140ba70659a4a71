"""Seeded vocabularies: invented names, places and things built from syllables, plus the
plain word lists (instruments, languages, colours) that facts draw their values from.

Every invented word comes from a `Namer`, which never hands out the same word twice in a
conversation, so an answer is never also a distractor's name by accident.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta

ONSETS = ("b", "br", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
          "th", "sh", "kr", "tr", "dr", "gl", "pl", "w", "j", "c", "st", "fl", "l", "m")
VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ia")
CODAS = ("", "", "n", "l", "r", "s", "th", "x", "m", "nd", "rk", "st", "v", "lle", "ck")
PLACE_SUFFIXES = ("ford", "mere", "wick", "by", "holt", "ton", "stead", "haven", "moor",
                  "bridge", "field", "port", "dale", "well")
COMPANY_SUFFIXES = ("Labs", "Logistics", "Bakery", "Studios", "Dynamics", "& Sons",
                    "Analytics", "Outfitters", "Printworks", "Robotics", "Pharma", "Media")
CLUB_KINDS = ("climbing gym", "rowing club", "chess club", "choir", "running crew",
              "book club", "pottery studio", "salsa class", "cycling club", "quiz team")
TEAM_MASCOTS = ("Otters", "Comets", "Herons", "Foxes", "Pilots", "Rams", "Lynx", "Mariners")
TITLE_ADJECTIVES = ("Silent", "Crooked", "Hollow", "Paper", "Amber", "Last", "Glass",
                    "Salt", "Winter", "Borrowed", "Velvet", "Iron", "Quiet", "Second")
TITLE_NOUNS = ("Orchard", "Lantern", "Harbour", "Machine", "Kingdom", "Letters", "Tide",
               "Garden", "Station", "Crown", "Signal", "Meadow", "Ledger", "Engine")
DISH_STYLES = ("smoked", "garlicky", "slow-cooked", "crispy", "spicy", "lemony", "creamy")
DISH_BASES = ("lentil soup", "mushroom risotto", "pork dumplings", "fish tacos",
              "chickpea curry", "beef ramen", "aubergine lasagne", "shrimp fried rice")

OCCUPATIONS = ("dental hygienist", "welder", "tram driver", "florist", "tax adviser",
               "sound engineer", "physiotherapist", "locksmith", "pastry chef", "surveyor",
               "librarian", "paramedic", "zookeeper", "translator", "carpenter")
INSTRUMENTS = ("cello", "banjo", "ukulele", "trombone", "harp", "accordion", "clarinet",
               "mandolin", "saxophone", "drums", "violin", "bass guitar")
LANGUAGES = ("Portuguese", "Finnish", "Korean", "Welsh", "Turkish", "Dutch", "Greek",
             "Japanese", "Polish", "Swahili", "Icelandic", "Hungarian")
ALLERGIES = ("peanuts", "shellfish", "pollen", "penicillin", "kiwi", "dust mites",
             "sesame", "bee stings", "latex", "strawberries")
COLOURS = ("teal", "mustard yellow", "burgundy", "sage green", "lilac", "navy", "coral",
           "charcoal", "terracotta", "mint")
COFFEES = ("oat flat white", "double espresso", "iced americano", "cortado",
           "chai latte", "mocha with extra shot", "black filter coffee", "matcha latte")
COMMUTES = ("bike", "tram", "ferry", "scooter", "bus", "train", "carpool")
FEARS = ("heights", "spiders", "deep water", "wasps", "lifts", "thunderstorms", "clowns")
MAJORS = ("marine biology", "art history", "civil engineering", "philosophy", "chemistry",
          "economics", "linguistics", "geology", "nursing", "architecture")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CAR_MODELS = ("K7", "Vista", "Roamer", "S3", "Trekka", "Mini-L", "Estate 9", "Zephyr")


class Namer:
    """Invented words for one conversation, each handed out once."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _unique(self, make: Callable[[], str]) -> str:
        for _ in range(1000):
            word = make()
            if word.lower() not in self.used:
                self.used.add(word.lower())
                return word
        raise RuntimeError("vocabulary exhausted")  # 30*11*15 stems: never in practice

    def _stem(self, syllables: int) -> str:
        parts = [self.rng.choice(ONSETS) + self.rng.choice(VOWELS) for _ in range(syllables)]
        return ("".join(parts) + self.rng.choice(CODAS)).capitalize()

    def person(self) -> str:
        return self._unique(lambda: self._stem(self.rng.choice((2, 2, 3))))

    def pet(self) -> str:
        return self._unique(lambda: self._stem(self.rng.choice((1, 2))))

    def town(self) -> str:
        return self._unique(lambda: self._stem(self.rng.choice((1, 2)))
                            + self.rng.choice(PLACE_SUFFIXES))

    def company(self) -> str:
        return self._unique(lambda: f"{self._stem(2)} {self.rng.choice(COMPANY_SUFFIXES)}")

    def club(self) -> str:
        return self._unique(lambda: f"{self._stem(2)} {self.rng.choice(CLUB_KINDS)}")

    def team(self) -> str:
        return self._unique(lambda: f"{self.town()} {self.rng.choice(TEAM_MASCOTS)}")

    def title(self) -> str:
        return self._unique(lambda: f"The {self.rng.choice(TITLE_ADJECTIVES)} "
                            f"{self.rng.choice(TITLE_NOUNS)}")

    def band(self) -> str:
        return self._unique(lambda: f"{self._stem(2)} {self.rng.choice(TITLE_NOUNS)}s")

    def car(self) -> str:
        return self._unique(lambda: f"{self._stem(2)} {self.rng.choice(CAR_MODELS)}")

    def dish(self) -> str:
        return self._unique(lambda: f"{self.rng.choice(DISH_STYLES)} "
                            f"{self.rng.choice(DISH_BASES)}")

    def mountain(self) -> str:
        return self._unique(lambda: f"Mount {self._stem(2)}")

    def pick(self, options: tuple[str, ...]) -> str:
        """A plain word from a list, not reused while unused ones remain."""
        fresh = [o for o in options if o.lower() not in self.used]
        word = self.rng.choice(fresh or list(options))
        self.used.add(word.lower())
        return word


def session_dates(rng: random.Random, sessions: int) -> list[tuple[date, str]]:
    """Increasing session dates 2-20 days apart, each with a LoCoMo-style time of day:
    (date, '1:56 pm on 8 May, 2023')."""
    day = date(2021, 1, 1) + timedelta(days=rng.randrange(3 * 365))
    out = []
    for _ in range(sessions):
        day += timedelta(days=rng.randint(2, 20))
        hour, minute = rng.randint(7, 22), rng.randrange(60)
        clock = f"{(hour - 1) % 12 + 1}:{minute:02d} {'pm' if hour >= 12 else 'am'}"
        out.append((day, f"{clock} on {day.day} {MONTHS[day.month - 1]}, {day.year}"))
    return out


def day_text(day: date) -> str:
    """'7 May 2023', the answer format of temporal questions."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"
