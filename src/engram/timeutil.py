"""How Engram writes times down: naive UTC ISO-8601 text with microseconds (sorts as text)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime) -> str:
    """Timestamps are stored as naive UTC ISO-8601 with microseconds (sortable as text);
    naive input is taken as UTC. OverflowError when the UTC time is out of range."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds")


def from_iso(value: str | None) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (None stays None)."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def utc_now() -> str:
    """The current time, as stored."""
    return iso(datetime.now(UTC))
