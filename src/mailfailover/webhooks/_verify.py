"""Every check a webhook's authenticity rests on, in one place.

Comparisons are constant-time (:func:`hmac.compare_digest`) and run over every configured
secret without stopping at the first match, so neither a secret's content nor which of
several rotated secrets matched leaks through timing. Failures raise
:class:`~mailfailover.errors.WebhookError` with status 401 and text that never holds a
secret, a signature or the body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from typing import NoReturn

from ..errors import WebhookError

__all__ = [
    "any_equal",
    "check_basic_auth",
    "check_bearer",
    "check_header",
    "check_timestamp",
    "hmac_digest",
    "refuse",
    "split_header",
]


#: An HTTP header name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def refuse(reason: str) -> NoReturn:
    """Raise the 401 :class:`WebhookError` for an unauthenticated request."""
    raise WebhookError(reason, status=401)


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def any_equal(candidate: str | bytes, expected: Iterable[str | bytes]) -> bool:
    """True when ``candidate`` equals one of ``expected``; constant time, no early exit."""
    given = _bytes(candidate)
    found = False
    for value in expected:
        found |= hmac.compare_digest(given, _bytes(value))
    return found


def hmac_digest(key: str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    """The HMAC of ``message`` under ``key`` (``algorithm`` a :mod:`hashlib` name)."""
    return hmac.new(_bytes(key), message, getattr(hashlib, algorithm)).digest()


def check_timestamp(timestamp: str | float | None, now: float, tolerance: float) -> float:
    """The signed timestamp as epoch seconds; 401 when missing, malformed or too far off.

    ``tolerance`` 0 turns the age check off (the timestamp must still parse).
    """
    try:
        when = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        refuse("the webhook's timestamp is missing or malformed")
    if when != when or when in (float("inf"), float("-inf")):
        refuse("the webhook's timestamp is missing or malformed")
    if tolerance and abs(now - when) > tolerance:
        refuse(f"the webhook's timestamp is more than {tolerance:g} seconds off: stale or replayed")
    return when


def _authorization(headers: dict[str, str], scheme: str) -> str | None:
    value = headers.get("authorization", "")
    kind, _, credentials = value.strip().partition(" ")
    if kind.lower() != scheme.lower() or not credentials.strip():
        return None
    return credentials.strip()


def check_basic_auth(headers: dict[str, str], credentials: Sequence[str]) -> None:
    """401 unless the request's HTTP basic auth is one of ``credentials`` (``user:password``)."""
    given = _authorization(headers, "Basic")
    if given is None:
        refuse("the webhook request has no basic auth credentials")
    try:
        decoded = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError):
        refuse("the webhook request's basic auth credentials are malformed")
    if not any_equal(decoded, (c.encode("utf-8") for c in credentials)):
        refuse("the webhook request's basic auth credentials are wrong")


def check_bearer(headers: dict[str, str], tokens: Sequence[str]) -> None:
    """401 unless ``Authorization: Bearer <token>`` carries one of ``tokens``."""
    given = _authorization(headers, "Bearer")
    if given is None:
        refuse("the webhook request has no bearer token")
    if not any_equal(given, tokens):
        refuse("the webhook request's bearer token is wrong")


def split_header(pair: str) -> tuple[str, str]:
    """``"Name: value"`` as ``(lower-case name, value)``; ValueError when it is not one
    (an HTTP token for the name, a value without surrounding space or control characters)."""
    name, colon, value = pair.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.fullmatch(name) or not value:
        raise ValueError("not 'Name: value'")
    return name.lower(), value


def check_header(headers: dict[str, str], pairs: Sequence[str]) -> None:
    """401 unless the request carries one of ``pairs`` (``"Name: value"``): a custom header
    the provider was told to send with every webhook. Names are compared without case,
    values in constant time; several pairs for rotation."""
    for pair in pairs:
        name, value = split_header(pair)
        given = headers.get(name)
        if given is not None and any_equal(given.strip(), [value]):
            return
    refuse("the webhook request does not carry the configured header")
