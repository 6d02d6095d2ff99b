"""What every HTTP transport's error boundary shares, whatever client library it wraps.

A transport (:mod:`._requests`, :mod:`._aiohttp`) catches its library's exceptions in one
place, looks each up in its own table of ``(reason, ambiguous)`` by the exception's class
(:func:`lookup`, most specific class first), falls back on :data:`OS_ERRORS` for the
standard library's socket errors, and leaves with :func:`chained`: chained to the
original unless the request could not even be built (``bug``: the text may hold what was
being built, an API key in a header) or the original's text shows a secret.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterable, Mapping
from typing import Any

from ..driver import shows_secret
from ..errors import ProviderUnavailable, Reason

__all__ = ["OS_ERRORS", "chained", "holds", "lookup"]

#: Standard library errors, raised bare or found as the cause inside a library's own.
OS_ERRORS: Mapping[type[BaseException], tuple[Reason, bool]] = {
    ConnectionRefusedError: ("connection", False),
    TimeoutError: ("timeout", True),  # also socket.timeout and asyncio.TimeoutError
    OSError: ("connection", True),
    http.client.HTTPException: ("connection", True),  # RemoteDisconnected, BadStatusLine
}


def lookup(table: Mapping[type[BaseException], Any], exc: BaseException) -> Any:
    """The entry of ``table`` for the most specific class of ``exc`` it holds, or ``None``."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return None


def holds(
    exc: BaseException, types: tuple[type[BaseException], ...], *, args: bool = False
) -> bool:
    """Whether an instance of ``types`` is somewhere inside ``exc``: itself, its cause or
    context, and with ``args`` its arguments too (urllib3 wraps its reason there).

    Bounded: a cycle of causes, or a pathological chain, stops after 20 exceptions.
    """
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending and len(seen) < 20:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, types):
            return True
        pending += [item.__cause__, item.__context__]
        if args:
            pending += item.args
    return False


def chained(
    error: ProviderUnavailable, failure: BaseException, secrets: Iterable[str]
) -> ProviderUnavailable:
    """``error`` with ``failure`` as its cause, unless chaining it could leak a secret;
    ``raise chained(...)`` is then ``raise error from failure`` or ``raise error from None``.

    Raise it outside the ``except`` block that caught ``failure``, so that an exception
    that must not be chained is not even the implicit ``__context__``.
    """
    leaks = error.reason == "bug" or shows_secret(failure, secrets)
    error.__cause__ = None if leaks else failure
    error.__suppress_context__ = True
    return error
