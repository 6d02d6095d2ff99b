"""Queue mode (``http.queue: true``): ``POST /send`` enqueues, ``GET /messages/<id>`` tells.

``POST /send`` answers ``202 {"status": "queued", "message_id": ...}`` once the broker has
the message, and 503 (code 5) only when the broker cannot be reached. ``GET
/messages/<message_id>`` (the same token as ``/send``; the angle brackets of the Message-ID
may be left out, and are URL-encoded when given) answers the delivery record: status, driver,
attempts and delivery events.
"""

from __future__ import annotations

from typing import Any

import flask

from ..config import HttpConfig, load_config
from ..errors import NO_PROVIDER, NOT_FOUND
from ..state import StoreError
from ._base import METHODS, authenticate, current_state, json_response, other_method
from ._send_request import ApiError

__all__ = ["messages_view", "outbox_for", "register"]


def register(blueprint: flask.Blueprint) -> None:
    """Add ``/messages/<message_id>`` to the adapter's blueprint."""
    blueprint.add_url_rule(
        "/messages/<path:message_id>",
        view_func=messages_view,
        methods=METHODS,
        provide_automatic_options=False,
    )


def outbox_for(http: HttpConfig, mailer: Any, config: Any) -> Any:
    """The :class:`~mailfailover.celery.Outbox` for ``http.queue: true``, else None."""
    if not http.queue:
        return None
    from ..celery import Outbox

    loaded = getattr(mailer, "config", None) or load_config(config)
    return Outbox(loaded)


def messages_view(message_id: str) -> flask.Response:
    """``GET /messages/<message_id>``: what became of a queued message."""
    if flask.request.method not in ("GET", "HEAD"):
        return other_method("GET, HEAD, OPTIONS")
    state = current_state()
    authenticate(state)
    if state.outbox is None:
        raise ApiError(404, NOT_FOUND, "the queue is not enabled (http.queue)", None)
    if not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    try:
        view = state.outbox.status(message_id)
    except StoreError:
        raise ApiError(503, NO_PROVIDER, "the state store did not answer", None) from None
    if view is None:
        raise ApiError(404, NOT_FOUND, "no queued message has this Message-ID", "message_id")
    return json_response(200, view)
