"""``POST /webhooks/<driver name>``: a provider's tracking webhook, verified and handled.

No API token: the provider's signature (or the basic auth it was given) is the
authentication, checked by the driver. 200 once handled (the events that were new are
counted in the answer); 401 a bad or missing signature; 400 a body that is not the
provider's payload; 404 an unknown driver or one without webhook settings; 413 over the
body limit; 503 when the state store cannot record the events (the provider retries).
A ``HEAD`` answers 200 for a driver that takes webhooks (Mandrill checks its URL so).
"""

from __future__ import annotations

import logging

import flask

from ..errors import NO_PROVIDER, NOT_FOUND, WebhookError
from ..state import StoreError
from ._base import METHODS, current_state, json_response, other_method, read_body
from ._send_request import ApiError

__all__ = ["register", "webhook_view"]

logger = logging.getLogger("mailfailover.flask")


def register(blueprint: flask.Blueprint) -> None:
    """Add ``/webhooks/<driver>`` to the adapter's blueprint."""
    blueprint.add_url_rule(
        "/webhooks/<path:driver>",
        view_func=webhook_view,
        methods=METHODS,
        provide_automatic_options=False,
    )


def webhook_view(driver: str) -> flask.Response:
    """Hand the request to the mailer's ``handle_webhook``; map its refusal to a status."""
    state = current_state()
    if flask.request.method == "HEAD":
        if not state.mailer.takes_webhooks(driver):
            raise ApiError(404, NOT_FOUND, "no such webhook")
        return flask.Response(status=200)
    if flask.request.method != "POST":
        return other_method("POST, HEAD")
    body = read_body(state.max_body_bytes)
    headers = list(flask.request.headers.items())
    try:
        events = state.mailer.handle_webhook(driver, headers, body, flask.request.url)
    except WebhookError as exc:
        logger.info("webhook for %r refused (%d): %s", driver[:100], exc.status, exc.message)
        raise ApiError(exc.status, exc.code, exc.message) from None
    except StoreError:
        logger.warning("webhook for %r not recorded: the state store did not answer", driver)
        raise ApiError(503, NO_PROVIDER, "the state store is unavailable; retry later") from None
    return json_response(200, {"status": "handled", "events": len(events)})
