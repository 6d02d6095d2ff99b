"""An asyncio web app that sends mail without blocking its event loop (Starlette).

``POST /send`` takes ``{"sender", "to", "subject", "text"}`` (and optionally ``html``,
``cc``, ``bcc``, ``reply_to``, ``tags``, ``metadata``) and answers the
:class:`~mailfailover.SendResult` as JSON: 200 when a provider took the message, 422 when
one refused it, 503 when none could take it, 400 for a message that is not valid.
``GET /health`` answers each driver's state.

One :class:`~mailfailover.aio.AsyncFailoverMailer` serves the whole app: it is built when
the app starts (from ``MAILFAILOVER_CONFIG`` or ``mailfailover.yaml``, or the config given
to :func:`create_app`) and closed when it stops, in the app's own event loop, so the HTTP
drivers' connections are pooled across requests::

    pip install "mailfailover[async]" starlette uvicorn
    MAILFAILOVER_CONFIG=mailfailover.yaml uvicorn app:app

The same code works under FastAPI: ``FastAPI(lifespan=lifespan)`` and the same handlers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mailfailover import AllProvidersFailed, InvalidMessage, Message, MessageRejected
from mailfailover.aio import AsyncFailoverMailer

FIELDS = ("sender", "to", "subject", "text", "html", "cc", "bcc", "reply_to", "tags", "metadata")


def create_app(config: str | Mapping[str, Any] | None = None) -> Starlette:
    """The app, its mailer built from ``config`` (a path or a dict; None: the default
    lookup) when it starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncFailoverMailer.from_config(config) as mailer:
            app.state.mailer = mailer
            yield

    async def send(request: Request) -> JSONResponse:
        mailer: AsyncFailoverMailer = request.app.state.mailer
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise InvalidMessage("the body must be a JSON object", field=None)
            unknown = sorted(set(data) - set(FIELDS))
            if unknown:
                raise InvalidMessage(f"unknown field {unknown[0]!r}", field=unknown[0])
            message = Message(**data)
        except (ValueError, TypeError, InvalidMessage) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            result = await mailer.send(message)
        except MessageRejected as exc:
            return JSONResponse({"error": exc.detail, "driver": exc.driver}, status_code=422)
        except AllProvidersFailed as exc:
            attempts = [attempt.to_dict() for attempt in exc.attempts]
            return JSONResponse({"error": str(exc), "attempts": attempts}, status_code=503)
        return JSONResponse(result.to_dict())

    async def health(request: Request) -> JSONResponse:
        mailer: AsyncFailoverMailer = request.app.state.mailer
        return JSONResponse([driver.to_dict() for driver in mailer.health()])

    routes = [Route("/send", send, methods=["POST"]), Route("/health", health)]
    return Starlette(routes=routes, lifespan=lifespan)


app = create_app()
