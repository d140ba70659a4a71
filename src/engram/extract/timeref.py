"""Relative time expressions ("yesterday", "two weeks ago", "last Friday", "next month")
resolved against the date they were said on, as date ranges. Absolute dates come from
`engram.text.timeexpr`. Pure functions, no LLM."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from engram.text.timeexpr import time_ranges

_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "a couple of": 2, "a couple": 2, "a few": 3, "several": 3,
}  # fmt: skip
_WEEKDAYS = [d.lower() for d in calendar.day_name]  # monday ... sunday
_NUM = r"(\d{1,2}|a couple of|a couple|a few|several|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"  # noqa: E501
_UNIT = r"(day|week|month|year)s?"
_DAYS = {
    "the day before yesterday": -2,
    "the day after tomorrow": 2,
    "yesterday": -1,
    "last night": -1,
    "today": 0,
    "tonight": 0,
    "this morning": 0,
    "this afternoon": 0,
    "this evening": 0,
    "tomorrow": 1,
}
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("day", re.compile(r"\b(" + "|".join(sorted(_DAYS, key=len, reverse=True)) + r")\b", re.I)),
    ("ago", re.compile(rf"\b{_NUM}\s+{_UNIT}\s+ago\b", re.I)),
    ("in", re.compile(rf"\bin\s+{_NUM}\s+{_UNIT}\b", re.I)),
    ("rel", re.compile(r"\b(last|next|this|past)\s+(week|weekend|month|year)\b", re.I)),
    ("wd", re.compile(rf"\b(last|next|this|on)\s+({'|'.join(_WEEKDAYS)})\b", re.I)),
]


@dataclass(frozen=True)
class TimeRef:
    """A time expression found in a text and the dates it stands for."""

    expression: str
    start: date
    end: date
    approximate: bool = False

    def describe(self) -> str:
        """'On 7 May 2023', 'In May 2023', 'In 2023', 'Between 1 May 2023 and 7 May 2023'."""
        text = self._range()
        return f"{text} (approximately)" if self.approximate else text

    def _range(self) -> str:
        s, e = self.start, self.end
        if s == e:
            return f"On {_d(s)}"
        if s.day == 1 and e == _month_end(s):
            return f"In {s:%B %Y}"
        if (s.month, s.day, e.month, e.day) == (1, 1, 12, 31) and s.year == e.year:
            return f"In {s.year}"
        return f"Between {_d(s)} and {_d(e)}"


def resolve(text: str, said_on: date) -> list[TimeRef]:
    """Every time expression of `text` as dates, relative ones against `said_on`."""
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, TimeRef]] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            span = match.span()
            if any(s < span[1] and span[0] < e for s, e in taken):
                continue
            ref = _resolve(kind, match, said_on)
            if ref is not None:
                taken.append(span)
                found.append((span[0], ref))
    found.sort(key=lambda x: x[0])
    refs = [ref for _, ref in found]
    for start, end in time_ranges(text):  # absolute dates said outright
        refs.append(TimeRef("date", start, end))
    return refs


def _resolve(kind: str, match: re.Match[str], d: date) -> TimeRef | None:
    expr = match.group(0)
    if kind == "day":
        day = d + timedelta(days=_DAYS[match.group(1).lower()])
        return TimeRef(expr, day, day)
    if kind in ("ago", "in"):
        raw = match.group(1).lower()
        n = int(raw) if raw.isdigit() else _NUMBERS[raw]
        sign = -1 if kind == "ago" else 1
        approx = raw in ("a few", "several", "a couple", "a couple of")
        return _shifted(expr, d, match.group(2).lower(), sign * n, approx)
    if kind == "rel":
        which, unit = match.group(1).lower(), match.group(2).lower()
        step = {"last": -1, "past": -1, "next": 1, "this": 0}[which]
        if unit == "weekend":
            saturday = d + timedelta(days=(5 - d.weekday()) + 7 * step)
            if step < 0 and d.weekday() >= 5:  # said on a weekend: "last weekend" is before
                saturday = d - timedelta(days=d.weekday() - 5 + 7)
            return TimeRef(expr, saturday, saturday + timedelta(days=1))
        return _shifted(expr, d, unit, step, False, whole=True)
    which, weekday = match.group(1).lower(), _WEEKDAYS.index(match.group(2).lower())
    back = (d.weekday() - weekday) % 7  # days since the most recent such weekday (0: today)
    if which == "last":
        delta = -(back or 7)
    elif which == "on":  # chats mostly report: the most recent one, today included
        delta = -back
    elif which == "next":
        delta = (weekday - d.weekday()) % 7 or 7
    else:  # this: in the current Monday-to-Sunday week
        delta = weekday - d.weekday()
    day = d + timedelta(days=delta)
    return TimeRef(expr, day, day)


def _shifted(
    expr: str, d: date, unit: str, n: int, approx: bool, whole: bool = False
) -> TimeRef | None:
    try:
        if unit == "day":
            day = d + timedelta(days=n)
            return TimeRef(expr, day, day, approx)
        if unit == "week":
            day = d + timedelta(weeks=n)
            monday = day - timedelta(days=day.weekday())
            if whole:
                return TimeRef(expr, monday, monday + timedelta(days=6), approx)
            return TimeRef(expr, day, day, approx)
        if unit == "month":
            index = d.year * 12 + d.month - 1 + n
            first = date(index // 12, index % 12 + 1, 1)
            return TimeRef(expr, first, _month_end(first), approx)
        first = date(d.year + n, 1, 1)
        return TimeRef(expr, first, date(first.year, 12, 31), approx)
    except (ValueError, OverflowError):
        return None


def _month_end(day: date) -> date:
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def _d(day: date) -> str:
    return f"{day.day} {day:%B %Y}"
