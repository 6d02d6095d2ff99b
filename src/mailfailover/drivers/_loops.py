"""What asyncio transports need when their event loop is gone (shared by the aiohttp and
aiosmtplib transports)."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["reclaim"]


def reclaim(transport: asyncio.BaseTransport | None) -> None:
    """Close the socket under ``transport``, whose event loop is closed, without the loop.

    What the loop would run after ``transport.close()``: the socket transport's
    ``_call_connection_lost`` (it tells the protocol, closes the socket and drops its
    references). Under TLS the socket is the SSL protocol's transport; the TLS layer is
    marked closed on the way (``SSLProtocol.connection_lost`` does it first), so no
    ``close_notify`` is sent: nothing can be sent without the loop. Private asyncio
    attributes, read defensively: a runtime without them leaves the socket to the garbage
    collector, as before."""
    ssl_protocol = getattr(transport, "_ssl_protocol", None)
    inner = getattr(ssl_protocol, "_transport", None) if ssl_protocol is not None else transport
    lost = getattr(inner, "_call_connection_lost", None)
    if lost is None or getattr(inner, "_sock", None) is None:
        return
    inner._conn_lost = getattr(inner, "_conn_lost", 0) + 1  # type: ignore[union-attr]
    # The protocols' connection_lost may try to schedule a callback on the closed loop
    # and raise; the socket is closed in a ``finally`` before that matters.
    with contextlib.suppress(Exception):
        lost(None)
