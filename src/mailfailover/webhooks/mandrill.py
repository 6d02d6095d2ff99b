"""Mandrill's webhooks: a form field ``mandrill_events`` holding a JSON array of events.

``X-Mandrill-Signature`` is the base64 HMAC-SHA1, under the webhook's key, of the webhook
URL exactly as registered at Mandrill followed by every POST parameter's name and value in
name order. Behind a proxy the URL the app sees may differ from the registered one: set
``webhook_url`` to the registered URL then.

Bounces: ``hard_bounce`` is hard, ``soft_bounce`` soft; ``deferral`` is ``deferred``;
``reject`` (Mandrill did not send: its rejection list) is ``rejected``; ``send`` is
``delivered``. Sync events (allow/deny list changes) and inbound mail are ``unknown``.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl

from ..driver import Setting
from ..events import DeliveryEvent
from ._base import WebhookRequest, Webhooks, epoch, malformed, obj
from ._verify import any_equal, hmac_digest, refuse

__all__ = ["WEBHOOKS"]

_TYPES = {
    "send": "delivered",
    "deferral": "deferred",
    "hard_bounce": "bounced",
    "soft_bounce": "bounced",
    "open": "opened",
    "click": "clicked",
    "spam": "complained",
    "unsub": "unsubscribed",
    "reject": "rejected",
}


def parse(request: WebhookRequest) -> list[DeliveryEvent]:
    given = request.header("X-Mandrill-Signature")
    if not given:
        refuse("the Mandrill webhook has no X-Mandrill-Signature")
    try:
        params = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        refuse("the Mandrill webhook body is not a form")
    url = request.settings["webhook_url"] or request.url
    signed = (url + "".join(k + v for k, v in sorted(params))).encode("utf-8")
    expected = [
        base64.b64encode(hmac_digest(key, signed, "sha1")).decode("ascii")
        for key in request.secrets("webhook_key")
    ]
    if not any_equal(given.strip(), expected):
        refuse("the Mandrill webhook's signature does not match the webhook key and URL")
    fields = dict(params)
    if "mandrill_events" not in fields:
        raise malformed("the Mandrill webhook has no mandrill_events field")
    try:
        events = json.loads(fields["mandrill_events"])
    except ValueError:
        raise malformed("mandrill_events is not JSON") from None
    if not isinstance(events, list) or not all(isinstance(item, dict) for item in events):
        raise malformed("mandrill_events is not a JSON array of events")
    return [_event(request.driver, item) for item in events]


def _event(driver: str, data: dict[str, Any]) -> DeliveryEvent:
    name = data.get("event")
    kind = _TYPES.get(str(name), "unknown")
    msg = obj(data.get("msg"))
    bounce = {"hard_bounce": "hard", "soft_bounce": "soft"}.get(str(name))
    smtp = msg.get("smtp_events") or []
    last = smtp[-1] if smtp and isinstance(smtp[-1], dict) else {}
    ts = data.get("ts", msg.get("ts"))
    reject = obj(data.get("reject"))
    return DeliveryEvent(
        type=kind,
        driver=driver,
        recipient=msg.get("email") or data.get("email"),
        timestamp=epoch(ts),
        message_id=msg.get("_id"),
        # Mandrill's "_id" is the message's, shared by all its events: digest the event.
        event_id="",
        bounce=bounce,
        reason=msg.get("bounce_description") or reject.get("reason"),
        mta_response=msg.get("diag") or last.get("diag"),
        tags=msg.get("tags"),
        metadata=msg.get("metadata"),
        url=data.get("url"),
        raw=data,
    )


WEBHOOKS = Webhooks(
    settings={
        "webhook_key": Setting(
            None,
            list,
            secret=True,
            help="the webhook's key (Settings > Webhooks); several while rotating",
        ),
        "webhook_url": Setting(
            None, help="the webhook URL exactly as registered at Mandrill (default: as received)"
        ),
    },
    enabled_by=("webhook_key",),
    parser=parse,
)
