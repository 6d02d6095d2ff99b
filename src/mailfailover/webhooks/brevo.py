"""Brevo's transactional webhooks: one event object per request, or an array when batched.

Brevo signs nothing; give the webhook basic auth credentials (listed in
``webhook_basic_auth``) or a bearer token (``webhook_token``, sent as
``Authorization: Bearer ...``).

Bounces: ``hard_bounce`` is hard, ``soft_bounce`` soft; ``deferred`` is ``deferred``;
``blocked`` and ``invalid_email`` (Brevo did not send) are ``rejected``; ``spam`` is
``complained``; ``request`` is ``queued``; ``error`` is ``failed``; the opening events
(``opened``, ``unique_opened``, ``proxy_open``, ``unique_proxy_open``) are ``opened``.
"""

from __future__ import annotations

from typing import Any

from ..driver import Setting
from ..events import DeliveryEvent
from ._base import WebhookRequest, Webhooks, basic_auth_setting, epoch, iso_time, malformed
from ._verify import check_basic_auth, check_bearer

__all__ = ["WEBHOOKS"]

_TYPES = {
    "request": "queued",
    "delivered": "delivered",
    "deferred": "deferred",
    "hard_bounce": "bounced",
    "soft_bounce": "bounced",
    "blocked": "rejected",
    "invalid_email": "rejected",
    "spam": "complained",
    "click": "clicked",
    "opened": "opened",
    "unique_opened": "opened",
    "proxy_open": "opened",
    "unique_proxy_open": "opened",
    "unsubscribed": "unsubscribed",
    "error": "failed",
}


def parse(request: WebhookRequest) -> list[DeliveryEvent]:
    authorization = request.header("Authorization") or ""
    tokens = request.secrets("webhook_token")
    if tokens and authorization.lower().startswith("bearer "):
        check_bearer(request.headers, tokens)
    else:
        check_basic_auth(request.headers, request.secrets("webhook_basic_auth"))
    payload = request.json()
    items = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(item, dict) for item in items):
        raise malformed("a Brevo webhook body is an event object or an array of them")
    return [_event(request.driver, item) for item in items]


def _when(data: dict[str, Any]) -> Any:
    if data.get("ts_epoch") is not None:
        return epoch(float(data["ts_epoch"]) / 1000)
    for key in ("ts_event", "ts"):
        if data.get(key) is not None:
            return epoch(data[key])
    return iso_time(data["date"])


def _event(driver: str, data: dict[str, Any]) -> DeliveryEvent:
    name = str(data.get("event"))
    kind = _TYPES.get(name, "unknown")
    bounce = {"hard_bounce": "hard", "soft_bounce": "soft"}.get(name)
    custom = data.get("X-Mailin-custom")
    return DeliveryEvent(
        type=kind,
        driver=driver,
        recipient=data.get("email"),
        timestamp=_when(data),
        message_id=data.get("message-id"),
        event_id="",
        bounce=bounce,
        reason=data.get("reason"),
        tags=data.get("tags") or data.get("tag"),
        metadata={"X-Mailin-custom": custom} if isinstance(custom, str) and custom else None,
        url=data.get("link"),
        raw=data,
    )


WEBHOOKS = Webhooks(
    settings={
        "webhook_basic_auth": basic_auth_setting("Transactional > Settings > Webhooks"),
        "webhook_token": Setting(
            None,
            list,
            secret=True,
            help="bearer token the webhook sends instead of basic auth; several while rotating",
        ),
    },
    enabled_by=("webhook_basic_auth", "webhook_token"),
    parser=parse,
)
