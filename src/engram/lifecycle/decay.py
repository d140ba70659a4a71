"""Decay laws: how a memory's retrievability R falls with the time since its last use.

Every law shares one convention: `strength` is a half-life in days, so R(0) = 1 and
R(strength) = 0.5 whatever the curve, and strengths stay comparable across laws. A law is
one small class overriding `retrievability`; the base owns the recall rule (the spacing
effect) and the registry, read by config parsing and construction alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np

from engram.errors import ConfigError


@dataclass(frozen=True)
class DecayLaw:
    """A forgetting curve plus the strengthening rule of a successful recall."""

    def retrievability(self, elapsed_days: Any, strength_days: Any) -> Any:
        """R in (0, 1] after `elapsed_days` without use (scalars or numpy arrays)."""
        raise NotImplementedError

    def strengthen(
        self, strength_days: float, retrievability: float, growth: float, spacing: float
    ) -> float:
        """Strength after a successful recall at `retrievability`. The gain grows as R
        drops (spacing effect: recalling what was nearly forgotten helps most; recalling
        what was just used adds almost nothing): S' = S * (1 + growth * (e^(spacing *
        (1 - R)) - 1)), the shape of FSRS's stability increase."""
        r = min(max(float(retrievability), 0.0), 1.0)
        return strength_days * (1.0 + growth * float(np.expm1(spacing * (1.0 - r))))


DECAY_LAWS: dict[str, type[DecayLaw]] = {}

L = TypeVar("L", bound=type[DecayLaw])


def register_decay_law(name: str) -> Callable[[L], L]:
    """Class decorator: make a law selectable as `retention.decay = "<name>"`."""

    def register(cls: L) -> L:
        DECAY_LAWS[name] = cls
        return cls

    return register


def build_decay_law(spec: str) -> DecayLaw:
    """'power' or 'power:exponent=0.3' -> the law; ConfigError naming what is wrong."""
    name, _, params = spec.partition(":")
    cls = DECAY_LAWS.get(name.strip())
    if cls is None:
        raise ConfigError(f"unknown decay law {name!r}; known: {', '.join(sorted(DECAY_LAWS))}")
    known = {f.name for f in fields(cls)}
    kwargs: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in params.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in known:
            raise ConfigError(
                f"decay law {name!r}: bad parameter {part!r}; it takes {sorted(known) or 'none'}"
            )
        try:
            kwargs[key] = float(value)
        except ValueError as err:
            raise ConfigError(f"decay law {name!r}: {key} must be a number") from err
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ConfigError(f"decay law {name!r}: {err}") from err


# The built-in strategies register themselves on import; importing them here (after the
# registry exists) makes every entry point see them, whichever module it imports first.
from engram.lifecycle import exponential, hyperbolic, power  # noqa: E402, F401, I001
