"""SendGrid's Event Webhook (a JSON array of events), signed with ECDSA P-256.

The Signed Event Webhook sends ``X-Twilio-Email-Event-Webhook-Signature`` (base64 DER
ECDSA signature, SHA-256) over ``X-Twilio-Email-Event-Webhook-Timestamp`` followed by the
raw body; ``webhook_public_key`` is the verification key SendGrid shows (base64 DER, or
PEM). Needs ``cryptography`` (``pip install "mailfailover[webhooks]"``).

Bounces: ``bounce`` with ``type: bounce`` is SendGrid's permanent bounce (hard); with
``type: blocked`` it is a temporary block (soft); ``deferred`` is ``deferred``; ``dropped``
(SendGrid did not send: its own suppression lists, invalid address) is ``rejected``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from ..driver import Setting, require
from ..errors import ConfigError
from ..events import DeliveryEvent
from ._base import WebhookRequest, Webhooks, epoch, malformed
from ._verify import check_timestamp, refuse

__all__ = ["WEBHOOKS"]

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

_TYPES = {
    "processed": "queued",
    "deferred": "deferred",
    "delivered": "delivered",
    "bounce": "bounced",
    "dropped": "rejected",
    "open": "opened",
    "click": "clicked",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
# Fields SendGrid sets itself; any other top-level field is a custom argument (metadata).
_STANDARD = frozenset({
    "email", "timestamp", "smtp-id", "event", "category", "sg_event_id", "sg_message_id",
    "reason", "status", "response", "attempt", "type", "bounce_classification", "url",
    "url_offset", "useragent", "ip", "tls", "cert_err", "asm_group_id", "marketing_campaign_id",
    "marketing_campaign_name", "pool", "sg_machine_open", "sg_content_type", "sg_template_id",
    "sg_template_name", "mc_stats", "phase_id", "send_at", "singlesend_id", "singlesend_name",
    "template_id", "template_version_id", "template_hash", "mc_pod_id", "mc_auto_id",
    "sg_user_id", "newsletter",
})  # fmt: skip


def _verify(request: WebhookRequest) -> None:
    signature, timestamp = request.header(SIGNATURE), request.header(TIMESTAMP)
    if not signature or not timestamp:
        refuse("the SendGrid webhook is not signed (enable the Signed Event Webhook)")
    check_timestamp(timestamp, request.now, float(request.settings["webhook_tolerance"]))
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        refuse("the SendGrid webhook's signature is not base64")
    require("cryptography", "webhooks", driver=request.driver)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signed = timestamp.encode("utf-8") + request.body
    verified = False
    for key in request.secrets("webhook_public_key"):
        public = _public_key(key)
        try:
            public.verify(der, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        verified = True
    if not verified:
        refuse("the SendGrid webhook's signature does not match the verification key")


def _public_key(text: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_der_public_key,
        load_pem_public_key,
    )

    try:
        if "BEGIN PUBLIC KEY" in text:
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode(text))
    except ValueError:
        raise ConfigError("setting 'webhook_public_key': not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("setting 'webhook_public_key': not an ECDSA public key")
    return key


def _check(settings: Mapping[str, Any], driver: str) -> None:
    if settings.get("webhook_public_key"):
        require("cryptography", "webhooks", driver=driver)
        for key in settings["webhook_public_key"]:
            try:
                _public_key(key)
            except ConfigError as exc:
                raise ConfigError(exc.message, driver=driver) from None


def parse(request: WebhookRequest) -> list[DeliveryEvent]:
    _verify(request)
    payload = request.json()
    if not isinstance(payload, list) or not all(isinstance(item, dict) for item in payload):
        raise malformed("a SendGrid webhook body is a JSON array of events")
    return [_event(request.driver, item) for item in payload]


def _event(driver: str, data: dict[str, Any]) -> DeliveryEvent:
    kind = _TYPES.get(str(data.get("event")), "unknown")
    bounce = None
    if kind == "bounced":
        bounce = "soft" if data.get("type") == "blocked" else "hard"
    message_id = data.get("sg_message_id")
    if isinstance(message_id, str) and ".filter" in message_id:
        # "<X-Message-Id>.filterdrecv-...": the send API's X-Message-Id is the first part.
        message_id = message_id.split(".filter", 1)[0]
    return DeliveryEvent(
        type=kind,
        driver=driver,
        recipient=data.get("email"),
        timestamp=epoch(data["timestamp"]),
        message_id=message_id,
        event_id=str(data.get("sg_event_id") or ""),
        bounce=bounce,
        reason=data.get("reason") if data.get("event") != "deferred" else None,
        mta_response=data.get("response") or (data.get("reason") if bounce else None),
        tags=data.get("category"),
        metadata={k: v for k, v in data.items() if k not in _STANDARD},
        url=data.get("url"),
        raw=data,
    )


WEBHOOKS = Webhooks(
    settings={
        "webhook_public_key": Setting(
            None,
            list,
            help="the Signed Event Webhook's verification key (base64); several while rotating",
        ),
        "webhook_tolerance": Setting(
            300.0, float, help="seconds a webhook's signed timestamp may be off (0: no check)"
        ),
    },
    enabled_by=("webhook_public_key",),
    parser=parse,
    check=_check,
)
