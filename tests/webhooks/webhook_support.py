"""What the webhook tests share: a fixed "now", and refusal assertions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from mailfailover.errors import WebhookError

#: The wall-clock "now" every webhook test passes to parse_webhook (2026-01-01T00:00:00Z).
NOW = 1_767_225_600.0


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone.utc)  # type: ignore[misc]


def refused(call: Callable[[], Any], status: int = 401) -> WebhookError:
    """Assert ``call`` raises a WebhookError with ``status``; return it."""
    with pytest.raises(WebhookError) as info:
        call()
    assert info.value.status == status, str(info.value)
    return info.value


def basic(credentials: str) -> dict[str, str]:
    """The Authorization header of HTTP basic auth with ``user:password``."""
    import base64

    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def check_basic_auth_refusals(parse: Callable[[dict[str, str]], Any], good: str) -> None:
    """Every basic-auth shortcut is refused with 401; the good credentials pass."""
    assert parse(basic(good)) is not None
    user, _, password = good.partition(":")
    for headers in (
        {},
        basic(f"{user}:{password}x"),
        basic(f"{user}x:{password}"),
        basic(f"{user}:"),
        basic(user),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": f"Bearer {password}"},
        {"Authorization": "Basic "},
    ):
        refused(lambda headers=headers: parse(headers))
