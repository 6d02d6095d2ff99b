"""Resend's webhooks, delivered and signed by Svix.

Svix signs ``{svix-id}.{svix-timestamp}.{body}`` with HMAC-SHA256 under the endpoint's
signing secret (``whsec_`` + base64 key); ``svix-signature`` holds one or more
space-separated ``v1,<base64>`` signatures (several while Resend rotates the secret), and
any match passes. A ``svix-timestamp`` more than ``webhook_tolerance`` seconds off is
refused. The body is ``{"type": "email.bounced", "created_at": ..., "data": {...}}``, one
event per request; ``data.to`` may hold several recipients: one event each.

Bounces: ``data.bounce.type`` ``Permanent`` is hard; ``Transient`` and ``Undetermined``
are soft. ``email.delivery_delayed`` is ``deferred``; ``email.failed`` (Resend could not
send) is ``failed``; ``email.sent`` and ``email.scheduled`` are ``queued``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..driver import Setting
from ..events import DeliveryEvent
from ._base import WebhookRequest, Webhooks, iso_time, malformed, obj
from ._verify import any_equal, check_timestamp, hmac_digest, refuse

__all__ = ["WEBHOOKS", "svix_verify"]

_TYPES = {
    "email.sent": "queued",
    "email.scheduled": "queued",
    "email.delivered": "delivered",
    "email.delivery_delayed": "deferred",
    "email.bounced": "bounced",
    "email.complained": "complained",
    "email.opened": "opened",
    "email.clicked": "clicked",
    "email.failed": "failed",
}


def _key(secret: str) -> bytes:
    encoded = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return encoded.encode("utf-8")


def svix_verify(request: WebhookRequest, secrets: tuple[str, ...], tolerance: float) -> str:
    """Check a Svix-signed request; its ``svix-id``."""
    msg_id = request.header("svix-id")
    timestamp = request.header("svix-timestamp")
    header = request.header("svix-signature")
    if not msg_id or not timestamp or not header:
        refuse("the webhook is not signed (svix-id, svix-timestamp and svix-signature)")
    check_timestamp(timestamp, request.now, tolerance)
    signed = f"{msg_id}.{timestamp}.".encode() + request.body
    expected = [base64.b64encode(hmac_digest(_key(s), signed)).decode("ascii") for s in secrets]
    given = [part.partition(",")[2] for part in header.split() if part.startswith("v1,")]
    if not any(any_equal(candidate, expected) for candidate in given):
        refuse("the webhook's signature does not match the signing secret")
    return msg_id


def parse(request: WebhookRequest) -> list[DeliveryEvent]:
    tolerance = float(request.settings["webhook_tolerance"])
    msg_id = svix_verify(request, request.secrets("webhook_secret"), tolerance)
    payload = request.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise malformed("a Resend webhook body is a JSON object with data")
    data: dict[str, Any] = payload["data"]
    kind = _TYPES.get(str(payload.get("type")), "unknown")
    bounce_info = obj(data.get("bounce"))
    bounce = None
    if kind == "bounced":
        bounce = "hard" if bounce_info.get("type") == "Permanent" else "soft"
    recipients = data.get("to") or [None]
    if isinstance(recipients, str):
        recipients = [recipients]
    click = obj(data.get("click"))
    failed = obj(data.get("failed"))
    when = iso_time(payload.get("created_at") or data["created_at"])
    return [
        DeliveryEvent(
            type=kind,
            driver=request.driver,
            recipient=recipient,
            timestamp=when,
            message_id=data.get("email_id"),
            event_id=msg_id if len(recipients) == 1 else f"{msg_id}:{recipient}",
            bounce=bounce,
            reason=bounce_info.get("message") or failed.get("reason"),
            tags=data.get("tags"),
            url=click.get("link"),
            raw=payload,
        )
        for recipient in recipients
    ]


WEBHOOKS = Webhooks(
    settings={
        "webhook_secret": Setting(
            None,
            list,
            secret=True,
            help="the webhook's signing secret (whsec_...); several while rotating",
        ),
        "webhook_tolerance": Setting(
            300.0, float, help="seconds a webhook's signed timestamp may be off (0: no check)"
        ),
    },
    enabled_by=("webhook_secret",),
    parser=parse,
)
