"""Mailjet's Event API: one event object per request, or an array when grouped.

Mailjet has no signature; register the URL with credentials
(``https://user:password@host/webhooks/<driver>``) and list them in ``webhook_basic_auth``.

Bounces: ``bounce`` with ``hard_bounce: true`` is hard, otherwise soft; ``blocked`` (Mailjet
did not send: a preblocked or spam-blocked address) is ``rejected``; ``spam`` is
``complained``; ``unsub`` ``unsubscribed``; ``sent`` is ``delivered`` (the receiving server
took it).
"""

from __future__ import annotations

from typing import Any

from ..events import DeliveryEvent
from ._base import WebhookRequest, Webhooks, basic_auth_setting, epoch, malformed
from ._verify import check_basic_auth

__all__ = ["WEBHOOKS"]

_TYPES = {
    "sent": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "spam": "complained",
    "blocked": "rejected",
    "unsub": "unsubscribed",
}


def parse(request: WebhookRequest) -> list[DeliveryEvent]:
    check_basic_auth(request.headers, request.secrets("webhook_basic_auth"))
    payload = request.json()
    items = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(item, dict) for item in items):
        raise malformed("a Mailjet webhook body is an event object or an array of them")
    return [_event(request.driver, item) for item in items]


def _event(driver: str, data: dict[str, Any]) -> DeliveryEvent:
    kind = _TYPES.get(str(data.get("event")), "unknown")
    bounce = None
    if kind == "bounced":
        bounce = "hard" if data.get("hard_bounce") is True else "soft"
    guid, legacy = data.get("Message_GUID"), data.get("MessageID")
    reason = " / ".join(str(data[k]) for k in ("error_related_to", "error") if data.get(k))
    return DeliveryEvent(
        type=kind,
        driver=driver,
        recipient=data.get("email"),
        timestamp=epoch(data["time"]),
        # The send API's receipt holds the MessageUUID, which events call Message_GUID.
        message_id=guid or (str(legacy) if legacy is not None else None),
        event_id="",
        bounce=bounce,
        reason=reason or data.get("source"),
        mta_response=data.get("smtp_reply") or data.get("comment"),
        tags=data.get("customcampaign"),
        metadata={"CustomID": data["CustomID"]} if data.get("CustomID") else None,
        url=data.get("url"),
        raw=data,
    )


WEBHOOKS = Webhooks(
    settings={"webhook_basic_auth": basic_auth_setting("Account > Event notifications")},
    enabled_by=("webhook_basic_auth",),
    parser=parse,
)
