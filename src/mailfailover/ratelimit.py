"""Rate limits per driver: ``rate: 14/s`` keeps a provider under its sending limit.

The limiter is GCRA (the generic cell rate algorithm, a token bucket kept as one number: the
theoretical arrival time of the next allowed send). With the default ``burst`` of 1 the
sends are spaced at least ``per / count`` apart, so a provider never sees more than ``count``
sends in any window of ``per`` seconds — the guarantee a provider's own limit is written in.
A larger ``burst`` lets that many go at once after a quiet spell, at the price of that
guarantee. The state is one float per driver in the state store, updated atomically, so
every process sharing the store shares the budget.
"""

from __future__ import annotations

import json
import re
from typing import Literal

import attrs

from .state import StateStore, Unchanged

__all__ = ["RATE_MODES", "Rate", "RateLimiter", "RateMode"]

RateMode = Literal["spill", "wait"]
RATE_MODES: tuple[RateMode, ...] = ("spill", "wait")

_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*$")


@attrs.frozen
class Rate:
    """``count`` sends per ``per`` seconds; parse ``"14/s"``, ``"1000/min"``, ``"5/10s"``."""

    count: int = attrs.field(validator=attrs.validators.gt(0))
    per: float = attrs.field(converter=float)

    @per.validator
    def _check_per(self, _: object, value: float) -> None:
        if not 0 < value < float("inf"):
            raise ValueError("a rate's period must be a positive, finite number of seconds")

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Read ``N/unit`` or ``N/<number>unit``; unit is s, min, h or d (and their names)."""
        match = _RATE.match(text.lower()) if isinstance(text, str) else None
        unit = _UNITS.get(match.group(3)) if match else None
        if match is None or unit is None:
            raise ValueError(
                "a rate looks like 14/s, 1000/min, 50000/h or 5/10s (count per period)"
            )
        count = int(match.group(1))
        if count < 1:
            raise ValueError("a rate allows at least 1 send per period")
        return cls(count, float(match.group(2) or 1) * unit)

    @property
    def interval(self) -> float:
        """Seconds between two sends at the steady rate."""
        return self.per / self.count

    def __str__(self) -> str:
        return f"{self.count}/{self.per:g}s"


class RateLimiter:
    """One driver's budget in a store: :meth:`reserve` a slot now or within ``max_wait``."""

    def __init__(self, store: StateStore, key: str, rate: Rate, *, burst: int = 1) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.store = store
        self.key = f"rate:{key}"
        self.rate = rate
        self.burst = burst

    def reserve(self, max_wait: float = 0.0) -> float | None:
        """Claim the next slot if it comes within ``max_wait`` seconds.

        Returns the seconds to wait before sending (0.0: send now), or None when the next
        slot is further away than ``max_wait`` — nothing is claimed then, so a message that
        spills to another driver costs this one no budget.
        """
        interval = self.rate.interval
        tolerance = (self.burst - 1) * interval
        now = self.store.now()

        def claim(old: bytes | None) -> tuple[bytes | Unchanged, float | None]:
            tat = max(_read_tat(old), now)
            wait = max(tat - tolerance - now, 0.0)
            if wait > max_wait:
                return Unchanged(), None
            return json.dumps(tat + interval).encode(), wait

        # The key can lapse once the budget is full again: nothing of value is lost.
        return self.store.update(self.key, claim, ttl=self.rate.per + tolerance + interval)

    def wait(self) -> float:
        """Seconds until the next slot, claiming nothing (0.0: one is free now)."""
        tolerance = (self.burst - 1) * self.rate.interval
        now = self.store.now()
        return max(_read_tat(self.store.get(self.key)) - tolerance - now, 0.0)


def _read_tat(raw: bytes | None) -> float:
    """The stored theoretical arrival time; garbage counts as none (a full budget)."""
    if raw is None:
        return 0.0
    try:
        value = float(json.loads(raw))
    except (ValueError, TypeError):
        return 0.0
    return value if value == value and abs(value) != float("inf") else 0.0
