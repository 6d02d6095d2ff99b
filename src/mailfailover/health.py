"""Per-driver health: a small circuit breaker.

A driver is *healthy* until it fails ``failure_threshold`` times in a row with
:class:`~mailfailover.errors.ProviderUnavailable`; it is then *cooling down* for ``cooldown``
seconds, and skipped. A provider that says when to come back (``Retry-After``, a rate-limit
reset) is cooled down for at least that long at once, whatever the threshold, and so is a
provider that timed out: every further try would cost every message a whole timeout. When the
cooldown is over the next real message is the *probe*: one send at a time may try the
driver; success makes it healthy again (and, in the failover strategy, primary again),
failure starts a new cooldown.

The breaker holds no lock of its own: :class:`~mailfailover.mailer.FailoverMailer` calls it
under its lock, never during I/O.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["Breaker", "DriverHealth", "State"]


class State(str, enum.Enum):
    HEALTHY = "healthy"
    COOLING_DOWN = "cooling_down"
    PROBING = "probing"


@attrs.frozen
class DriverHealth:
    """A snapshot of one driver's state, as :meth:`FailoverMailer.health` reports it."""

    name: str
    state: State
    consecutive_failures: int
    cooldown_remaining: float
    sent: int
    failed: int
    last_error: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "cooldown_remaining": round(self.cooldown_remaining, 3),
            "sent": self.sent,
            "failed": self.failed,
            "last_error": self.last_error,
        }


@attrs.define
class Breaker:
    """The mutable health record of one driver."""

    failure_threshold: int
    cooldown: float
    consecutive_failures: int = 0
    #: Monotonic time until which the driver is skipped (None: not cooling down).
    until: float | None = None
    #: When the current cooldown started, to try the longest-cooled driver first.
    opened_at: float | None = None
    probing: bool = False
    sent: int = 0
    failed: int = 0
    last_error: str | None = None

    def acquire(self, now: float) -> bool:
        """True when a send may use the driver now; claims the probe after a cooldown."""
        if self.until is None:
            return True
        if now < self.until or self.probing:
            return False
        self.probing = True
        return True

    def force(self) -> None:
        """Use the driver although it is cooling down (every driver is)."""
        self.probing = True

    def success(self) -> None:
        self.consecutive_failures = 0
        self.until = self.opened_at = None
        self.probing = False
        self.sent += 1

    def answered(self) -> None:
        """The provider answered (it rejected the message): it is up."""
        self.consecutive_failures = 0
        self.until = self.opened_at = None
        self.probing = False

    def release(self) -> None:
        """The driver was claimed but not used (it could not carry the message)."""
        self.probing = False

    def failure(
        self, now: float, reason: str, retry_after: float | None, *, trip: bool = False
    ) -> None:
        """Count a failure; ``trip`` starts the cooldown at once, whatever the threshold."""
        self.consecutive_failures += 1
        self.failed += 1
        self.last_error = reason
        was_probe = self.probing
        self.probing = False
        tripped = trip or was_probe or self.consecutive_failures >= self.failure_threshold
        wait = max(self.cooldown if tripped else 0.0, retry_after or 0.0)
        if wait > 0:
            self.until = now + wait
            if self.opened_at is None or was_probe:
                self.opened_at = now

    def snapshot(self, name: str, now: float) -> DriverHealth:
        if self.until is None:
            state, remaining = State.HEALTHY, 0.0
        elif self.probing:
            state, remaining = State.PROBING, 0.0
        else:
            state, remaining = State.COOLING_DOWN, max(self.until - now, 0.0)
        return DriverHealth(
            name=name,
            state=state,
            consecutive_failures=self.consecutive_failures,
            cooldown_remaining=remaining,
            sent=self.sent,
            failed=self.failed,
            last_error=self.last_error,
        )
