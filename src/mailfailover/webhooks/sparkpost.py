"""SparkPost's event webhooks: a JSON array of ``{"msys": {"<class>_event": {...}}}``.

SparkPost signs nothing; choose "Basic Auth" for the webhook and list the credentials in
``webhook_basic_auth``, or give the webhook a custom header (its ``custom_headers``) and
list it as ``"Name: value"`` in ``webhook_header``; with both set, a request must carry
both. SparkPost's test request (``[{"msys": {}}]``) gives no events.

Bounces follow SparkPost's ``bounce_class``: classes 10 (invalid recipient), 30 (no RCPT)
and 90 (unsubscribe bounce) are its "Hard" category and hard; every other class (soft,
block, admin, undetermined) is soft. ``delay`` is ``deferred``; ``out_of_band`` is a
bounce classified the same way; ``policy_rejection`` is ``rejected``;
``generation_failure`` and ``generation_rejection`` are ``failed``.
"""

from __future__ import annotations

from typing import Any

from ..events import DeliveryEvent
from ._base import (
    WebhookRequest,
    Webhooks,
    basic_auth_setting,
    check_basic_auth_and_header,
    check_header_setting,
    epoch,
    header_setting,
    malformed,
)

__all__ = ["WEBHOOKS"]

_TYPES = {
    "injection": "queued",
    "delivery": "delivered",
    "delay": "deferred",
    "bounce": "bounced",
    "out_of_band": "bounced",
    "policy_rejection": "rejected",
    "spam_complaint": "complained",
    "open": "opened",
    "initial_open": "opened",
    "amp_open": "opened",
    "amp_initial_open": "opened",
    "click": "clicked",
    "amp_click": "clicked",
    "list_unsubscribe": "unsubscribed",
    "link_unsubscribe": "unsubscribed",
    "generation_failure": "failed",
    "generation_rejection": "failed",
}
HARD_BOUNCE_CLASSES = frozenset({"10", "30", "90"})


def parse(request: WebhookRequest) -> list[DeliveryEvent]:
    check_basic_auth_and_header(request)
    payload = request.json()
    if not isinstance(payload, list):
        raise malformed("a SparkPost webhook body is a JSON array")
    events = []
    for item in payload:
        if not isinstance(item, dict) or not isinstance(item.get("msys"), dict):
            raise malformed('a SparkPost webhook item is {"msys": {...}}')
        for data in item["msys"].values():
            if not isinstance(data, dict):
                raise malformed("a SparkPost event is a JSON object")
            events.append(_event(request.driver, data))
    return events


def _event(driver: str, data: dict[str, Any]) -> DeliveryEvent:
    kind = _TYPES.get(str(data.get("type")), "unknown")
    bounce = None
    if kind == "bounced":
        bounce = "hard" if str(data.get("bounce_class")) in HARD_BOUNCE_CLASSES else "soft"
    elif kind == "deferred":
        bounce = "soft"
    return DeliveryEvent(
        type=kind,
        driver=driver,
        recipient=data.get("rcpt_to") or data.get("raw_rcpt_to"),
        timestamp=epoch(data["timestamp"]),
        message_id=data.get("transmission_id"),
        event_id=str(data.get("event_id") or ""),
        bounce=bounce,
        reason=data.get("reason"),
        mta_response=data.get("raw_reason"),
        tags=data.get("rcpt_tags"),
        metadata=data.get("rcpt_meta"),
        url=data.get("target_link_url"),
        raw=data,
    )


WEBHOOKS = Webhooks(
    settings={
        "webhook_basic_auth": basic_auth_setting("Webhooks > Authentication: Basic"),
        "webhook_header": header_setting("the webhook's custom_headers"),
    },
    enabled_by=("webhook_basic_auth", "webhook_header"),
    parser=parse,
    check=check_header_setting,
)
