"""Decay laws and working-memory replacement policies, each registered one checked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from engram.errors import ConfigError
from engram.lifecycle import (
    DECAY_LAWS,
    REPLACEMENT_POLICIES,
    PowerDecay,
    build_decay_law,
    build_replacement,
)
from engram.store.base import RetentionRow
from engram.types import MemoryState

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("name", sorted(DECAY_LAWS))
def test_law_decays_monotonically_with_half_life_strength(name: str) -> None:
    law = build_decay_law(name)
    t = np.linspace(0, 400, 801)
    r = law.retrievability(t, 14.0)
    assert r[0] == pytest.approx(1.0)
    assert float(law.retrievability(14.0, 14.0)) == pytest.approx(0.5)  # strength = half-life
    assert np.all(np.diff(r) < 0)  # strictly decreasing in time
    assert np.all((r > 0) & (r <= 1))
    stronger = law.retrievability(t[1:], 60.0)
    assert np.all(stronger > r[1:])  # a stronger memory is more retrievable at every age


@pytest.mark.parametrize("name", sorted(DECAY_LAWS))
def test_recall_gain_grows_as_retrievability_drops(name: str) -> None:
    law = build_decay_law(name)
    gains = [law.strengthen(10.0, r, growth=1.5, spacing=1.0) for r in (1.0, 0.9, 0.5, 0.1)]
    assert gains[0] == pytest.approx(10.0)  # recalled at once: no rest, no gain
    assert all(a < b for a, b in zip(gains, gains[1:], strict=False))  # spacing effect
    # a recall when half forgotten roughly doubles the half-life with these settings
    assert 1.8 < gains[2] / 10.0 < 2.2


def test_laws_differ_in_their_tails() -> None:
    exp, power, hyper = (build_decay_law(n) for n in ("exponential", "power", "hyperbolic"))
    late = 200.0
    assert exp.retrievability(late, 14.0) < hyper.retrievability(late, 14.0)
    assert hyper.retrievability(late, 14.0) < power.retrievability(late, 14.0)


def test_decay_law_parameters_are_parsed_and_checked() -> None:
    law = build_decay_law("power:exponent=0.3")
    assert isinstance(law, PowerDecay) and law.exponent == 0.3
    assert float(law.retrievability(7.0, 7.0)) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="unknown decay law"):
        build_decay_law("linear")
    with pytest.raises(ConfigError, match="bad parameter"):
        build_decay_law("power:slope=2")
    with pytest.raises(ConfigError, match="must be a number"):
        build_decay_law("power:exponent=x")
    with pytest.raises(ConfigError, match="positive"):
        build_decay_law("power:exponent=0")
    with pytest.raises(ConfigError, match="unknown working-memory replacement"):
        build_replacement("random")


def _row(key: int, session: str | None, used: datetime | None = None) -> RetentionRow:
    return RetentionRow(
        key=key,
        id=f"m{key}",
        type="turn",
        state=MemoryState.ACTIVE,
        tier="working",
        session_id=session,
        created_at=T0 + timedelta(minutes=key),
        strength=None,
        last_recalled_at=None,
        recall_count=0,
        pinned=False,
        expires_at=None,
        importance=None,
        access_count=0,
        last_accessed_at=used,
    )


def test_fifo_keeps_the_last_n_of_each_session() -> None:
    rows = [_row(k, "a") for k in range(1, 6)] + [_row(k, "b") for k in range(6, 8)]
    gone = build_replacement("fifo").displaced(rows, 3)
    assert [r.key for r in gone] == [1, 2]  # session b (2 rows) is within its buffer


def test_lru_keeps_what_was_used_lately() -> None:
    rows = [_row(k, "a") for k in range(1, 6)]
    rows[0] = _row(1, "a", used=T0 + timedelta(days=1))  # the oldest turn was found yesterday
    gone = build_replacement("lru").displaced(rows, 3)
    assert sorted(r.key for r in gone) == [2, 3]


@pytest.mark.parametrize("name", sorted(REPLACEMENT_POLICIES))
def test_every_policy_keeps_at_most_size_and_empties_at_zero(name: str) -> None:
    policy = build_replacement(name)
    rows = [_row(k, None) for k in range(1, 10)]
    assert len(rows) - len(policy.displaced(rows, 4)) == 4
    assert len(policy.displaced(rows, 0)) == len(rows)
    assert policy.displaced(rows, 20) == []
