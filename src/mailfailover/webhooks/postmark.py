"""Postmark's webhooks: one JSON object per request, authenticated by HTTP basic auth or
a custom header.

Postmark has no signature; register the URL with credentials
(``https://user:password@host/webhooks/<driver>``) and list them in ``webhook_basic_auth``,
or give the webhook a custom header (``HttpHeaders`` in Postmark's webhooks API, "Custom
headers" in its web UI) and list it as ``"Name: value"`` in ``webhook_header``. With both
set, a request must carry both.
``RecordType`` says what happened: ``Delivery``, ``Bounce``, ``SpamComplaint``, ``Open``,
``Click`` or ``SubscriptionChange``.

Bounces follow Postmark's ``Type``: ``HardBounce`` and ``BadEmailAddress`` are hard;
``Transient`` is ``deferred`` (soft); ``SoftBounce``, ``DnsError``, ``Blocked``,
``DMARCPolicy``, ``SpamNotification``, ``VirusNotification`` and ``Unknown`` are soft
bounces; ``SpamComplaint`` is ``complained``, ``Unsubscribe`` ``unsubscribed``,
``ManuallyDeactivated`` and ``Unconfirmed`` ``rejected``, ``SMTPApiError`` and
``TemplateRenderingFailed`` ``failed``; auto-replies and the like are ``unknown``.
A ``SubscriptionChange`` that suppresses sending is ``unsubscribed`` (manual), ``bounced``
(hard) or ``complained`` after Postmark's ``SuppressionReason``.
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
    header_setting,
    iso_time,
    malformed,
)

__all__ = ["WEBHOOKS"]

_BOUNCES: dict[str, tuple[str, str | None]] = {
    "HardBounce": ("bounced", "hard"),
    "BadEmailAddress": ("bounced", "hard"),
    "Transient": ("deferred", "soft"),
    "SoftBounce": ("bounced", "soft"),
    "DnsError": ("bounced", "soft"),
    "Blocked": ("bounced", "soft"),
    "DMARCPolicy": ("bounced", "soft"),
    "SpamNotification": ("bounced", "soft"),
    "VirusNotification": ("bounced", "soft"),
    "Unknown": ("bounced", "soft"),
    "SpamComplaint": ("complained", None),
    "Unsubscribe": ("unsubscribed", None),
    "ManuallyDeactivated": ("rejected", None),
    "Unconfirmed": ("rejected", None),
    "SMTPApiError": ("failed", None),
    "TemplateRenderingFailed": ("failed", None),
}
_SUPPRESSIONS = {
    "HardBounce": ("bounced", "hard"),
    "SpamComplaint": ("complained", None),
    "ManualSuppression": ("unsubscribed", None),
}
_SIMPLE = {"Delivery": "delivered", "Open": "opened", "Click": "clicked"}


def parse(request: WebhookRequest) -> list[DeliveryEvent]:
    check_basic_auth_and_header(request)
    payload = request.json()
    items = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(item, dict) for item in items):
        raise malformed("a Postmark webhook body is a JSON object")
    return [_event(request.driver, item) for item in items]


def _event(driver: str, data: dict[str, Any]) -> DeliveryEvent:
    record = data.get("RecordType")
    kind: str = _SIMPLE.get(str(record), "unknown")
    bounce: str | None = None
    event_id = ""
    if record in ("Bounce", "SpamComplaint"):
        kind, bounce = _BOUNCES.get(str(data.get("Type")), ("unknown", None))
        event_id = f"{record}:{data['ID']}" if data.get("ID") is not None else ""
    elif record == "SubscriptionChange" and data.get("SuppressSending") is True:
        kind, bounce = _SUPPRESSIONS.get(str(data.get("SuppressionReason")), ("unknown", None))
    when = next(
        (data[k] for k in ("BouncedAt", "DeliveredAt", "ReceivedAt", "ChangedAt") if data.get(k)),
        None,
    )
    if when is None:
        raise malformed("the Postmark event has no time")
    return DeliveryEvent(
        type=kind,
        driver=driver,
        recipient=data.get("Email") or data.get("Recipient"),
        timestamp=iso_time(when),
        message_id=data.get("MessageID"),
        event_id=event_id,
        bounce=bounce,
        reason=data.get("Description") or data.get("SuppressionReason"),
        mta_response=data.get("Details"),
        tags=data.get("Tag"),
        metadata=data.get("Metadata"),
        url=data.get("OriginalLink"),
        raw=data,
    )


WEBHOOKS = Webhooks(
    settings={
        "webhook_basic_auth": basic_auth_setting("Servers > Webhooks"),
        "webhook_header": header_setting("Servers > Webhooks > Custom headers"),
    },
    enabled_by=("webhook_basic_auth", "webhook_header"),
    parser=parse,
    check=check_header_setting,
)
