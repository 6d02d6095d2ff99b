"""Bundled drivers, one module per provider; each registers under ``mailfailover.drivers``.

What a bundled driver uses is public here, so a plugin can do what a bundled driver does::

    from mailfailover.drivers import HTTP_SETTINGS, B64, HttpDriver, HttpRequest, HttpResponse

The HTTP names are imported on first use, so importing a non-HTTP driver loads neither
them nor ``requests`` (which only the HTTP transport, built with a driver, imports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..driver import ACCOUNT_PROBLEM, content_digest, is_account_problem, remaining_time, require

if TYPE_CHECKING:
    from ._http import HTTP_SETTINGS, HttpDriver, Outcome
    from ._wire import (
        B64,
        MAX_RETRY_AFTER,
        Headers,
        HttpRequest,
        HttpResponse,
        encode_json,
        parse_retry_after,
        seconds_until,
    )

__all__ = [
    "ACCOUNT_PROBLEM",
    "B64",
    "HTTP_SETTINGS",
    "MAX_RETRY_AFTER",
    "Headers",
    "HttpDriver",
    "HttpRequest",
    "HttpResponse",
    "Outcome",
    "content_digest",
    "encode_json",
    "is_account_problem",
    "parse_retry_after",
    "remaining_time",
    "require",
    "seconds_until",
]

_LAZY = {
    "HTTP_SETTINGS": "_http",
    "HttpDriver": "_http",
    "Outcome": "_http",
    "B64": "_wire",
    "MAX_RETRY_AFTER": "_wire",
    "Headers": "_wire",
    "HttpRequest": "_wire",
    "HttpResponse": "_wire",
    "encode_json": "_wire",
    "parse_retry_after": "_wire",
    "seconds_until": "_wire",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
