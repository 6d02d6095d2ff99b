"""What a send returns: :class:`Attempt` and :class:`SendResult`, and their vocabularies.

These sit in the model layer (with :mod:`~mailfailover.message`, :mod:`~mailfailover.errors`
and :mod:`~mailfailover.driver`) so that :class:`~mailfailover.errors.AllProvidersFailed`
can carry its attempts without importing the mailer. Nothing here imports anything above
the driver API.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import attrs

from .driver import Receipt
from .errors import DeliveryError, ProviderUnavailable

__all__ = ["OUTCOMES", "STRATEGIES", "Attempt", "Outcome", "SendResult", "Strategy"]

#: How the mailer orders its drivers (see :class:`~mailfailover.FailoverMailer`).
Strategy = Literal["failover", "round_robin"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)

#: What one driver's attempt at one message came to.
Outcome = Literal["sent", "unavailable", "rejected", "skipped"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)


@attrs.frozen
class Attempt:
    """One driver's part in sending one message.

    ``outcome`` is ``sent``, ``unavailable``, ``rejected`` or ``skipped``; ``error`` is the
    :class:`DeliveryError` (``None`` when sent, or skipped for cooling down); ``reason``
    says why a driver was skipped.
    """

    driver: str
    outcome: Outcome = attrs.field(validator=attrs.validators.in_(OUTCOMES))
    error: DeliveryError | None = None
    elapsed: float = 0.0
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "driver": self.driver,
            "outcome": self.outcome,
            "elapsed": round(self.elapsed, 6),
        }
        if self.error is not None:
            data["error"] = self.error.detail
            data["status"] = self.error.status
            if isinstance(self.error, ProviderUnavailable):
                data["reason"] = self.error.reason
                data["ambiguous"] = self.error.ambiguous
        if self.reason is not None:
            data["reason"] = self.reason
        return data


@attrs.frozen
class SendResult:
    """Who delivered the message: the driver, the provider's id, and every attempt."""

    driver: str
    message_id: str
    attempts: tuple[Attempt, ...]
    receipt: Receipt | None = attrs.field(default=None, eq=False)
    #: Recipients taken off the message because they are on the suppression list.
    suppressed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "driver": self.driver,
            "message_id": self.message_id,
            "attempts": [attempt.to_dict() for attempt in self.attempts],
        }
        if self.suppressed:
            data["suppressed"] = list(self.suppressed)
        return data
