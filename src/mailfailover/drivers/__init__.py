"""Bundled drivers, one module per provider; each registers under ``mailfailover.drivers``.

The shared base for HTTP-API drivers is public here for plugin authors::

    from mailfailover.drivers import HTTP_SETTINGS, B64, HttpDriver, HttpRequest

It is imported on first use, so importing a non-HTTP driver does not load ``requests``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._http import B64, HTTP_SETTINGS, HttpDriver, HttpRequest

__all__ = ["B64", "HTTP_SETTINGS", "HttpDriver", "HttpRequest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _http

        return getattr(_http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
