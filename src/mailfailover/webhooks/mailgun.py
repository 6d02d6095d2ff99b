"""Mailgun's webhooks (JSON, one event per request), signed with the webhook signing key.

The body is ``{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}``;
``signature`` is the hex HMAC-SHA256 of ``timestamp + token`` under the HTTP webhook signing
key. The signature does not cover ``event-data``, so a captured signature could be replayed
with another body: a timestamp older than ``webhook_tolerance`` is refused, and a token
already seen with a different body is refused (the same body again is Mailgun's retry: its
event is de-duplicated instead).

Bounces: ``failed`` with ``severity: permanent`` is a hard bounce, except when Mailgun gave
up after retrying (``reason: old``) or an ESP blocked it (``espblock``), which are soft;
``severity: temporary`` is ``deferred`` with a soft bounce; ``reason: suppress-*`` (Mailgun
did not try because the address is on its own list) is ``rejected``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..driver import Setting
from ..events import DeliveryEvent
from ._base import WebhookRequest, Webhooks, epoch, malformed
from ._verify import any_equal, check_timestamp, hmac_digest, refuse

__all__ = ["WEBHOOKS"]

_TYPES = {
    "accepted": "queued",
    "rejected": "rejected",
    "delivered": "delivered",
    "failed": "bounced",
    "opened": "opened",
    "clicked": "clicked",
    "unsubscribed": "unsubscribed",
    "complained": "complained",
}
_SOFT_PERMANENT = frozenset({"old", "espblock"})


def parse(request: WebhookRequest) -> list[DeliveryEvent]:
    payload = request.json()
    if not isinstance(payload, dict):
        raise malformed("a Mailgun webhook body is a JSON object")
    signature = payload.get("signature")
    if not isinstance(signature, dict):
        refuse("the Mailgun webhook has no signature")
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not all(isinstance(v, (str, int)) and str(v) for v in (timestamp, token, given)):
        refuse("the Mailgun webhook's signature is incomplete")
    signed = f"{timestamp}{token}".encode()
    expected = [hmac_digest(key, signed).hex() for key in request.secrets("webhook_signing_key")]
    if not any_equal(str(given).lower(), expected):
        refuse("the Mailgun webhook's signature does not match the signing key")
    tolerance = float(request.settings["webhook_tolerance"])
    check_timestamp(str(timestamp), request.now, tolerance)
    fingerprint = hashlib.sha256(request.body).digest()
    ttl = max(2 * tolerance, 3600.0)
    if not request.replay.first_use(f"{request.driver}:mailgun:{token}", fingerprint, ttl=ttl):
        refuse("the Mailgun webhook's token was already used with another body: a replay")
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise malformed("the Mailgun webhook has no event-data")
    return [_event(request.driver, data)]


def _event(driver: str, data: dict[str, Any]) -> DeliveryEvent:
    kind = _TYPES.get(str(data.get("event")), "unknown")
    severity, why = data.get("severity"), data.get("reason")
    bounce = None
    if kind == "bounced":
        if severity == "temporary":
            kind, bounce = "deferred", "soft"
        elif isinstance(why, str) and why.startswith("suppress-"):
            kind = "rejected"
        else:
            bounce = "soft" if why in _SOFT_PERMANENT else "hard"
    status = data.get("delivery-status") or {}
    message = data.get("message") or {}
    message_id = (message.get("headers") or {}).get("message-id")
    if isinstance(message_id, str) and message_id and not message_id.startswith("<"):
        message_id = f"<{message_id}>"  # as the send API returned it
    event_id = data.get("id")
    return DeliveryEvent(
        type=kind,
        driver=driver,
        recipient=data.get("recipient"),
        timestamp=epoch(data["timestamp"]),
        message_id=message_id,
        # Mailgun's id is "unique within a day": with the time it is unique for good.
        event_id=f"{event_id}:{data['timestamp']}" if event_id else "",
        bounce=bounce,
        reason=status.get("description") or why or (data.get("reject") or {}).get("reason"),
        mta_response=status.get("message"),
        tags=data.get("tags"),
        metadata=data.get("user-variables"),
        url=data.get("url"),
        raw=data,
    )


WEBHOOKS = Webhooks(
    settings={
        "webhook_signing_key": Setting(
            None,
            list,
            secret=True,
            help="HTTP webhook signing key (Sending > Webhooks); several while rotating",
        ),
        "webhook_tolerance": Setting(
            300.0, float, help="seconds a webhook's signed timestamp may be off (0: no check)"
        ),
    },
    enabled_by=("webhook_signing_key",),
    parser=parse,
)
