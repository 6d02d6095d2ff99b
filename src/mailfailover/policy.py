"""What the mailer does around one driver's sends: its rate limit and its brownout bar.

A :class:`DriverPolicy` is not a driver setting the driver reads: ``rate``, ``rate_mode`` and
``slow_after`` may be written in any driver's ``settings:`` (bundled or plugin); the
configuration loader takes them out before the driver is built and gives them to the mailer,
which applies them in the failover core (:mod:`mailfailover._failover`).

* ``rate`` (:class:`~mailfailover.ratelimit.Rate`): at most that many sends per period
  through the driver, counted in the mailer's state store (so shared by every process on it).
  With ``rate_mode="spill"`` (the default) a message over the limit goes to the next driver,
  recorded as a ``skipped`` attempt with ``reason="rate limited"`` and not counted against
  the driver's health; with ``rate_mode="wait"`` it waits for the driver's next slot, up to
  the send's deadline.
* ``slow_after`` (seconds): a send that took longer is delivered (never re-sent) but counts
  against the driver's health as a failure with ``reason="slow"``; after
  ``failure_threshold`` of them in a row the driver cools down and messages go to the next
  one until a probe comes back fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from .ratelimit import RATE_MODES, Rate, RateMode

__all__ = ["POLICY_KEYS", "DriverPolicy"]

#: The keys a driver's ``settings:`` may hold for the mailer rather than for the driver.
POLICY_KEYS = ("rate", "rate_mode", "slow_after")
MAX_SLOW_AFTER = 3600.0


def _rate(value: Rate | str | None) -> Rate | None:
    if value is None or isinstance(value, Rate):
        return value
    return Rate.parse(value)


@attrs.frozen
class DriverPolicy:
    """One driver's rate limit and brownout bar (every part optional)."""

    rate: Rate | None = attrs.field(default=None, converter=_rate)
    rate_mode: RateMode = attrs.field(default="spill")
    slow_after: float | None = attrs.field(default=None)

    @rate_mode.validator
    def _check_mode(self, _: object, value: str) -> None:
        if value not in RATE_MODES:
            raise ValueError(f"rate_mode must be one of {', '.join(RATE_MODES)}")

    @slow_after.validator
    def _check_slow(self, _: object, value: float | None) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("slow_after must be a number of seconds")
        if not math.isfinite(value) or not 0 < value <= MAX_SLOW_AFTER:
            raise ValueError(
                f"slow_after must be more than 0 and at most {MAX_SLOW_AFTER:g} seconds"
            )

    @property
    def active(self) -> bool:
        """True when the policy changes anything."""
        return self.rate is not None or self.slow_after is not None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> DriverPolicy:
        """Read the policy keys of a driver's settings (others are ignored)."""
        slow = settings.get("slow_after")
        if isinstance(slow, str):
            try:
                slow = float(slow.strip())
            except ValueError:
                raise ValueError("slow_after must be a number of seconds") from None
        mode = settings.get("rate_mode")
        rate = settings.get("rate")
        if rate is not None and not isinstance(rate, str):
            raise ValueError("rate must be text such as 14/s, 1000/min or 50000/h")
        return cls(rate=rate, rate_mode="spill" if mode is None else mode, slow_after=slow)

    def describe(self) -> str:
        parts = []
        if self.rate is not None:
            parts.append(f"rate {self.rate} ({self.rate_mode})")
        if self.slow_after is not None:
            parts.append(f"slow after {self.slow_after:g} s")
        return ", ".join(parts) or "none"
