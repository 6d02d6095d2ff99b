"""What the status page shows beside ``mailer.health()``: recent attempts, last successes.

:class:`Activity` subscribes to the mailer's attempt hook and keeps, in this process, the
last 100 attempts (driver, outcome, bounded reason, elapsed time and the recipients'
domains — never an address, subject, body or provider message) and each driver's last
success and last failure (wall-clock times). Under ``mailfailover serve`` each worker
process keeps its own.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from .._labels import attempt_outcome, attempt_reason
from ..mailer import Attempt, FailoverMailer
from ..message import Message, parse_mailbox

__all__ = ["RECENT", "Activity"]

#: How many attempts are kept.
RECENT = 100
_MAX_DOMAINS = 3


def _domains(message: Message) -> list[str]:
    domains: list[str] = []
    for address in message.to:
        try:
            domain = parse_mailbox(address).domain.lower()
        except ValueError:  # pragma: no cover - a Message holds only valid addresses
            continue
        if domain not in domains:
            domains.append(domain)
    return domains[:_MAX_DOMAINS]


class Activity:
    """A mailer's recent attempts and each driver's last success, in this process."""

    def __init__(self, size: int = RECENT, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)
        self._last_success: dict[str, float] = {}
        self._last_failure: dict[str, float] = {}

    def follow(self, mailer: FailoverMailer) -> Callable[[], None]:
        """Record ``mailer``'s attempts from now on; returns a function that stops it."""
        return mailer.add_hooks(self.record)

    def record(self, message: Message, attempt: Attempt) -> None:
        now = self._clock()
        outcome = attempt_outcome(attempt)
        entry = {
            "time": round(now, 3),
            "driver": attempt.driver,
            "outcome": outcome,
            "reason": attempt_reason(attempt),
            "elapsed": round(max(attempt.elapsed, 0.0), 4),
            "domains": _domains(message),
        }
        with self._lock:
            self._recent.append(entry)
            if outcome == "sent":
                self._last_success[attempt.driver] = now
            elif outcome in ("unavailable", "rejected"):
                self._last_failure[attempt.driver] = now

    def recent(self) -> list[dict[str, Any]]:
        """The kept attempts, newest first."""
        with self._lock:
            return [dict(entry) for entry in reversed(self._recent)]

    def last_success(self, driver: str) -> float | None:
        with self._lock:
            return self._last_success.get(driver)

    def last_failure(self, driver: str) -> float | None:
        with self._lock:
            return self._last_failure.get(driver)
