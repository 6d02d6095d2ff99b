"""The bounded vocabularies that describe an attempt outside the process.

:mod:`mailfailover.metrics` uses them as label values and the HTTP adapter's status page
shows them: never free text from a provider, which may quote an address.
"""

from __future__ import annotations

from .errors import REASONS as UNAVAILABLE_REASONS
from .results import OUTCOMES, Attempt

__all__ = ["OTHER", "OUTCOMES", "REASONS", "attempt_outcome", "attempt_reason"]

#: Why a driver was unavailable (:data:`mailfailover.errors.REASONS`) or skipped; ``none``
#: when it sent or the provider rejected the message.
REASONS = ("none", *UNAVAILABLE_REASONS, "cooling_down", "probing", "unsupported")
OTHER = "other"

_OUTCOMES = frozenset(OUTCOMES)
_REASONS = frozenset(REASONS)


def attempt_outcome(attempt: Attempt) -> str:
    """The attempt's outcome, or ``other``."""
    return attempt.outcome if attempt.outcome in _OUTCOMES else OTHER


def attempt_reason(attempt: Attempt) -> str:
    """The bounded reason of an attempt (one of :data:`REASONS`, else ``other``)."""
    if attempt.outcome in ("sent", "rejected"):
        return "none"
    reason = getattr(attempt.error, "reason", None) or attempt.reason or ""
    if reason in _REASONS:
        return reason
    if reason.startswith("cooling down"):
        return "cooling_down"
    if reason.startswith("probe"):
        return "probing"
    return OTHER
