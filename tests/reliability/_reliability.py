"""Helpers shared by the reliability suite's modules."""

from __future__ import annotations

from typing import Any

import pytest
from _servers import PROVIDERS, http_drivers

READY, MISSING = http_drivers()


def provider_params() -> list[Any]:
    """One param per HTTP driver in the stand-in table; a driver that cannot be imported is
    skipped with the reason why, never silently dropped."""
    ready = {provider.driver for provider in READY}
    params = []
    for name, provider in PROVIDERS.items():
        marks: Any = ()
        if name not in ready:
            marks = pytest.mark.skip(reason=f"driver {name!r} not importable: {MISSING[name]}")
        params.append(pytest.param(provider, id=name, marks=marks))
    return params


class BlockingFace:
    """An :class:`~mailfailover.aio.AsyncFailoverMailer` driven from a test's blocking code,
    in one event loop of its own: ``send`` and ``health`` as the sync mailer has them, so a
    scenario written once runs against both mailers (see :func:`mailer_of`)."""

    def __init__(self, drivers: Any, **options: Any) -> None:
        import asyncio

        from mailfailover.aio import AsyncFailoverMailer

        self.loop = asyncio.new_event_loop()
        self.mailer = AsyncFailoverMailer(drivers, **options)

    def send(self, message: Any) -> Any:
        return self.loop.run_until_complete(self.mailer.send(message))

    def health(self) -> Any:
        return self.mailer.health()

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.mailer.aclose())
            self.loop.close()

    def __enter__(self) -> BlockingFace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: The two mailers every scenario runs against: threads and requests, asyncio and aiohttp.
COLOURS = ["sync", "async"]


def mailer_of(colour: str, drivers: Any, **options: Any) -> Any:
    """A ``FailoverMailer`` (``sync``) or an ``AsyncFailoverMailer`` behind a blocking face
    (``async``) over ``drivers``."""
    from mailfailover import FailoverMailer

    if colour == "async":
        return BlockingFace(drivers, **options)
    return FailoverMailer(drivers, **options)
