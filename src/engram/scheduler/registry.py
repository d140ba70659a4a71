"""The one registry of scheduling policies, read by config validation and construction.

Importing a policy module registers it; the built-in ones are imported here on first use,
so `engram.config` can check names without importing numpy or torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engram.errors import ConfigError

if TYPE_CHECKING:
    from engram.scheduler.policy import SchedulePolicy

POLICIES: dict[str, type[SchedulePolicy]] = {}


def register_policy(cls: type[SchedulePolicy]) -> type[SchedulePolicy]:
    """Make a policy selectable by name in `scheduler.policies` (a class decorator)."""
    POLICIES[cls.name] = cls
    return cls


def _builtins() -> None:
    from engram.scheduler import cold_decay, confirmed_to_adapter, hot_to_kv  # noqa: F401


def check_policies(names: list[str]) -> list[str]:
    """`names` if each is registered and none repeats; else ConfigError naming the known."""
    _builtins()
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ConfigError(f"unknown scheduler policies {unknown}; known: {sorted(POLICIES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"scheduler policies repeat a name: {names}")
    return names


def build_policies(names: list[str]) -> list[SchedulePolicy]:
    return [POLICIES[name]() for name in check_policies(names)]
