"""How Engram reads and writes times: one parsing rule for every surface (Python API,
REST, MCP, imports), and naive UTC ISO-8601 text with microseconds on disk (sorts as text)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from engram.errors import ValidationError

EXAMPLE = "2023-05-08T13:56:00"


def iso(value: datetime) -> str:
    """Timestamps are stored as naive UTC ISO-8601 with microseconds (sortable as text);
    naive input is taken as UTC. OverflowError when the UTC time is out of range."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds")


def parse_time(value: Any, what: str) -> datetime | None:
    """An ISO-8601 string or a datetime (naive means UTC), or None. Numbers are refused:
    12 could be seconds or milliseconds since 1970, or nothing meant as a time at all."""
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        raise ValidationError(
            f"{what} must be an ISO-8601 string or a datetime, not the number {value!r}: "
            f"numbers are ambiguous (Unix seconds? milliseconds?); write e.g. {EXAMPLE!r}"
        )
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as err:
            raise ValidationError(f"{what} {value!r} is not an ISO-8601 date-time") from err
    if not isinstance(value, datetime):
        raise ValidationError(
            f"{what} must be an ISO-8601 string or a datetime, got {type(value).__name__}"
        )
    try:
        iso(value)
    except OverflowError as err:
        raise ValidationError(f"{what} {value.isoformat()} is outside the UTC range") from err
    return value


@overload
def from_iso(value: str) -> datetime: ...
@overload
def from_iso(value: None) -> None: ...
@overload
def from_iso(value: str | None) -> datetime | None: ...
def from_iso(value: str | None) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (None stays None)."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def utc_now() -> str:
    """The current time, as stored."""
    return iso(datetime.now(UTC))
