"""``POST /send``: authenticate, read and parse the body, send the message."""

from __future__ import annotations

import logging
from typing import Any

import flask

from ..errors import (
    INVALID_PARAMETER,
    NO_PROVIDER,
    SENDER_NOT_ALLOWED,
    AllProvidersFailed,
    MessageRejected,
    MessageSuppressed,
    QueueUnavailable,
)
from ..message import Message
from ._base import METHODS, authenticate, current_state, json_response, other_method, read_body
from ._send_request import ApiError, build_message, parse_body

__all__ = ["register", "send_view"]

logger = logging.getLogger("mailfailover.flask")


def register(blueprint: flask.Blueprint) -> None:
    """Add ``/send`` to the adapter's blueprint."""
    blueprint.add_url_rule(
        "/send", view_func=send_view, methods=METHODS, provide_automatic_options=False
    )


def send_view() -> flask.Response:
    """``POST /send``: validate, authenticate, build the message, send it."""
    if flask.request.method != "POST":
        return other_method("POST, OPTIONS")
    state = current_state()
    authenticate(state)
    body = read_body(state.max_body_bytes)
    data, uploads = parse_body(body, flask.request.mimetype, flask.request.mimetype_params)
    message = build_message(data, uploads, max_recipients=state.max_recipients)
    sender = message.sender_mailbox
    if not state.allowed_senders.allows(sender):
        logger.warning("refused a sender at %s: not on http.allowed_senders", sender.domain)
        raise ApiError(
            403, SENDER_NOT_ALLOWED, "sender: this address may not be used as the sender",
            "sender",
        )  # fmt: skip
    if state.outbox is not None:
        return _enqueue(state.outbox, message)
    try:
        result = state.mailer.send(message)
    except MessageSuppressed as exc:
        raise ApiError(
            422, exc.code, exc.detail, "to", extra={"suppressed": list(exc.suppressed)}
        ) from None
    except MessageRejected as exc:
        raise ApiError(
            422,
            INVALID_PARAMETER,
            f"rejected by {exc.driver}: {exc.detail}",
            None,
            extra={
                "driver": exc.driver,
                "attempts": [attempt.to_dict() for attempt in exc.attempts],
            },
        ) from None
    except AllProvidersFailed as exc:
        raise ApiError(
            503,
            NO_PROVIDER,
            exc.message,
            None,
            extra={"attempts": [attempt.to_dict() for attempt in exc.attempts]},
        ) from None
    logger.debug("sent %s via %s", message.message_id, result.driver)
    return json_response(200, {"status": "sent", **result.to_dict()})


def _enqueue(outbox: Any, message: Message) -> flask.Response:
    """Queue mode: 202 once the broker has the message, 503 code 5 when it is unreachable."""
    try:
        message_id = outbox.enqueue(message)
    except QueueUnavailable as exc:
        logger.error("could not enqueue %s: %s", message.message_id, exc.message)
        raise ApiError(503, NO_PROVIDER, exc.message, None) from None
    return json_response(202, {"status": "queued", "message_id": message_id})
