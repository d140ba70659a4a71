"""Absolute time expressions in a query ("on 9 November, 2022", "in May 2023", "July 24,
2023", "in 2021") as a date range, without an LLM."""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta

_MONTHS = {calendar.month_abbr[i].lower(): i for i in range(1, 13)}  # "jan" -> 1
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?"  # noqa: E501
_YEAR = r"((?:19|20)\d{2})"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_PATTERNS = [
    ("dmy", re.compile(rf"\b{_DAY}\s+{_MONTH},?\s+{_YEAR}\b", re.I)),
    ("mdy", re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.I)),
    ("my", re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b", re.I)),
    # a bare year only after a preposition: "in 2021", not "room 2012" or "2000 steps"
    (
        "y",
        re.compile(
            rf"\b(?:in|during|since|of|from|by|before|after|until|throughout)\s+{_YEAR}\b", re.I
        ),
    ),
]


def _month(name: str) -> int:
    return _MONTHS[name[:3].lower()]


def time_ranges(text: str) -> list[tuple[date, date]]:
    """Every absolute date range the text mentions (most specific match per position)."""
    taken: list[tuple[int, int]] = []
    ranges: list[tuple[date, date]] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            span = match.span()
            if any(s < span[1] and span[0] < e for s, e in taken):
                continue
            taken.append(span)  # an impossible date ("31 February") is no date at all
            found = _range(kind, match.groups())
            if found is not None:
                ranges.append(found)
    return ranges


def _range(kind: str, groups: tuple[str, ...]) -> tuple[date, date] | None:
    try:
        if kind == "dmy":
            day = date(int(groups[2]), _month(groups[1]), int(groups[0]))
            return day, day
        if kind == "mdy":
            day = date(int(groups[2]), _month(groups[0]), int(groups[1]))
            return day, day
        if kind == "my":
            year, month = int(groups[1]), _month(groups[0])
            last = calendar.monthrange(year, month)[1]
            return date(year, month, 1), date(year, month, last)
        year = int(groups[0])
        return date(year, 1, 1), date(year, 12, 31)
    except (ValueError, KeyError):
        return None


def days(value: date) -> float:
    """Days since 1970-01-01 (the unit of CubeSnapshot.times)."""
    return float((value - date(1970, 1, 1)) / timedelta(days=1))
