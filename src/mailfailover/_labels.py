"""The bounded vocabularies that describe an attempt outside the process.

:mod:`mailfailover.metrics` uses them as label values and the HTTP adapter's status page
shows them: never free text from a provider, which may quote an address.
"""

from __future__ import annotations

from .errors import REASONS as UNAVAILABLE_REASONS
from .results import OUTCOMES, Attempt

#: The ``reason`` of the ``skipped`` attempt of a driver that was over its rate (a spill).
RATE_LIMITED = "rate limited"

__all__ = [
    "OTHER",
    "OUTCOMES",
    "RATE_LIMITED",
    "REASONS",
    "attempt_outcome",
    "attempt_reason",
]

#: Why a driver was unavailable (:data:`mailfailover.errors.REASONS`) or skipped; ``none``
#: when it sent or the provider rejected the message. ``over_rate``: skipped because the
#: driver was over its configured ``rate`` (a spill; a provider's own ``429`` is
#: ``rate_limited``); ``slow``: sent, but slower than its ``slow_after`` (a brownout).
REASONS = (
    "none", *UNAVAILABLE_REASONS, "cooling_down", "probing", "unsupported", "over_rate", "slow",
)  # fmt: skip
OTHER = "other"

_OUTCOMES = frozenset(OUTCOMES)
_REASONS = frozenset(REASONS)


def attempt_outcome(attempt: Attempt) -> str:
    """The attempt's outcome, or ``other``."""
    return attempt.outcome if attempt.outcome in _OUTCOMES else OTHER


def attempt_reason(attempt: Attempt) -> str:
    """The bounded reason of an attempt (one of :data:`REASONS`, else ``other``)."""
    if attempt.outcome in ("sent", "rejected"):
        return "slow" if attempt.reason == "slow" else "none"
    reason = getattr(attempt.error, "reason", None) or attempt.reason or ""
    if reason in _REASONS:
        return reason
    if reason == RATE_LIMITED:
        return "over_rate"
    if reason.startswith("cooling down"):
        return "cooling_down"
    if reason.startswith("probe"):
        return "probing"
    return OTHER
