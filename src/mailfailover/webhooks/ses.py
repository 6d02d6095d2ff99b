"""Amazon SES notifications, delivered by Amazon SNS to an HTTPS subscription.

SNS signs each message (``SignatureVersion`` 1: RSA SHA-1, 2: RSA SHA-256) with the private
key of the certificate at ``SigningCertURL``. The certificate is fetched only from an
``https://sns.<region>.amazonaws.com/`` URL (anything else is refused before any request),
with a bounded timeout, and kept once fetched. Anyone can create an SNS topic and sign
messages with it, so only topics listed in ``webhook_topic_arn`` are accepted, and that is
checked first. A ``SubscriptionConfirmation`` is confirmed (its ``SubscribeURL`` visited,
same host rule) only when ``webhook_confirm_subscriptions`` is true; otherwise it is logged.

Raw message delivery (no SNS envelope, hence no signature) is accepted only with
``webhook_basic_auth`` set and matched; when set, basic auth is also checked on signed
messages. The notification may be an SES identity notification (``notificationType``) or a
configuration-set event (``eventType``); one event per recipient.

Bounces: ``bounceType`` ``Permanent`` is hard; ``Transient`` and ``Undetermined`` are soft.
``DeliveryDelay`` is ``deferred`` (soft); ``Reject`` is ``rejected``; ``Rendering Failure``
is ``failed``; ``Send`` is ``queued``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from ..driver import Setting, require
from ..events import DeliveryEvent
from ._base import WebhookRequest, Webhooks, basic_auth_setting, epoch, iso_time, malformed, obj
from ._verify import check_basic_auth, refuse

__all__ = ["WEBHOOKS", "clear_certificate_cache", "is_sns_url"]

logger = logging.getLogger("mailfailover")

#: The only hosts a signing certificate or a subscription URL may come from.
SNS_HOST = re.compile(r"^sns\.[a-z]{2}(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com$")
CERT_TIMEOUT = (5.0, 10.0)
_CERT_CACHE_SIZE = 32
_certs: OrderedDict[str, Any] = OrderedDict()
_certs_lock = threading.Lock()

_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}  # fmt: skip
_HASHES = {"1": "SHA1", "2": "SHA256"}


def is_sns_url(url: Any) -> bool:
    """True for ``https://sns.<region>.amazonaws.com/...`` with no port, user or password."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port is None
        and parts.username is None
        and bool(SNS_HOST.match(parts.hostname or ""))
        and (parts.netloc == parts.hostname)
    )


def clear_certificate_cache() -> None:
    """Forget every fetched signing certificate (tests; a rotated certificate)."""
    with _certs_lock:
        _certs.clear()


def _public_key(url: str, driver: str) -> Any:
    with _certs_lock:
        key = _certs.get(url)
    if key is not None:
        return key
    require("cryptography", "webhooks", driver=driver)
    from cryptography.x509 import load_pem_x509_certificate

    try:
        response = requests.get(url, timeout=CERT_TIMEOUT, allow_redirects=False)
    except requests.RequestException:
        refuse("the SNS signing certificate could not be fetched")
    if response.status_code != 200:
        refuse(f"the SNS signing certificate could not be fetched ({response.status_code})")
    try:
        key = load_pem_x509_certificate(response.content).public_key()
    except ValueError:
        refuse("the SNS signing certificate is not a PEM certificate")
    with _certs_lock:
        _certs[url] = key
        while len(_certs) > _CERT_CACHE_SIZE:
            _certs.popitem(last=False)
    return key


def _verify_signature(envelope: dict[str, Any], driver: str) -> None:
    kind = envelope.get("Type")
    fields = _SIGNED_FIELDS.get(str(kind))
    if fields is None:
        raise malformed("the SNS message's Type is not one SNS sends")
    algorithm = _HASHES.get(str(envelope.get("SignatureVersion")))
    if algorithm is None:
        refuse("the SNS message's SignatureVersion is not 1 or 2")
    cert_url = envelope.get("SigningCertURL") or envelope.get("SigningCertUrl")
    if not is_sns_url(cert_url):
        refuse("the SNS message's SigningCertURL is not an https://sns.<region>.amazonaws.com URL")
    try:
        signature = base64.b64decode(str(envelope.get("Signature")), validate=True)
    except (binascii.Error, ValueError):
        refuse("the SNS message's signature is not base64")
    parts = []
    for name in fields:
        value = envelope.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise malformed(f"the SNS message has no {name}")
        parts.append(f"{name}\n{value}\n")
    signed = "".join(parts).encode("utf-8")
    key = _public_key(str(cert_url), driver)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if not isinstance(key, rsa.RSAPublicKey):
        refuse("the SNS signing certificate does not hold an RSA key")
    try:
        key.verify(signature, signed, padding.PKCS1v15(), getattr(hashes, algorithm)())
    except InvalidSignature:
        refuse("the SNS message's signature does not match its signing certificate")


def parse(request: WebhookRequest) -> list[DeliveryEvent]:
    credentials = request.secrets("webhook_basic_auth")
    if credentials:
        check_basic_auth(request.headers, credentials)
    topics = request.secrets("webhook_topic_arn")
    payload = request.json()
    if not isinstance(payload, dict):
        raise malformed("an SNS message is a JSON object")
    raw_delivery = (request.header("x-amz-sns-rawdelivery") or "").lower() == "true"
    if raw_delivery or "Signature" not in payload:
        # Raw message delivery: no envelope, no signature; basic auth (checked above) is
        # the only authentication, so it must be configured.
        if not credentials:
            refuse("an unsigned SNS message needs webhook_basic_auth")
        topic = request.header("x-amz-sns-topic-arn")
        if topic is not None and topic not in topics:
            refuse("the SNS topic is not one of webhook_topic_arn")
        message_id = request.header("x-amz-sns-message-id") or ""
        return _notification(request.driver, payload, message_id, request.now)
    if payload.get("TopicArn") not in topics:
        refuse("the SNS topic is not one of webhook_topic_arn")
    _verify_signature(payload, request.driver)
    kind = payload["Type"]
    if kind == "SubscriptionConfirmation":
        _confirm(request, payload)
        return []
    if kind == "UnsubscribeConfirmation":
        logger.warning("%s: SNS unsubscribed this URL from %s", request.driver, payload["TopicArn"])
        return []
    try:
        notification = json.loads(payload["Message"])
    except ValueError:
        raise malformed("the SNS message's Message is not an SES notification") from None
    if not isinstance(notification, dict):
        raise malformed("the SNS message's Message is not an SES notification")
    sent = iso_time(payload["Timestamp"]).timestamp()
    return _notification(request.driver, notification, str(payload.get("MessageId") or ""), sent)


def _confirm(request: WebhookRequest, envelope: dict[str, Any]) -> None:
    topic, url = envelope["TopicArn"], envelope.get("SubscribeURL")
    if not request.settings["webhook_confirm_subscriptions"]:
        logger.warning(
            "%s: SNS asks to confirm the subscription to %s; not confirmed (set "
            "webhook_confirm_subscriptions: true, or confirm it in the AWS console)",
            request.driver, topic,
        )  # fmt: skip
        return
    if not is_sns_url(url):
        refuse("the SNS SubscribeURL is not an https://sns.<region>.amazonaws.com URL")
    try:
        answer = requests.get(str(url), timeout=CERT_TIMEOUT, allow_redirects=False)
    except requests.RequestException:
        refuse("the SNS subscription could not be confirmed: SNS did not answer")
    if answer.status_code != 200:
        refuse(f"the SNS subscription could not be confirmed ({answer.status_code})")
    logger.info("%s: confirmed the SNS subscription to %s", request.driver, topic)


def _tags(mail: dict[str, Any]) -> list[str]:
    tags = mail.get("tags")
    if not isinstance(tags, dict):
        return []
    return [
        f"{name}:{value}"
        for name, values in tags.items()
        if not str(name).startswith(("ses:", "aws:"))
        for value in (values if isinstance(values, list) else [values])
    ]


def _notification(
    driver: str, data: dict[str, Any], sns_id: str, sent: float
) -> list[DeliveryEvent]:
    kind = data.get("eventType") or data.get("notificationType")
    mail = obj(data.get("mail"))
    common: dict[str, Any] = {
        "driver": driver,
        "message_id": mail.get("messageId"),
        "tags": _tags(mail),
        "raw": data,
    }
    destination = mail.get("destination") or [None]
    events: list[DeliveryEvent] = []

    def add(kind: str, recipient: Any, when: Any, base_id: Any, **fields: Any) -> None:
        base = str(base_id or sns_id or "")
        events.append(DeliveryEvent(
            type=kind,
            recipient=recipient,
            timestamp=iso_time(when),
            event_id=f"{base}:{kind}:{recipient}" if base else "",
            **common,
            **fields,
        ))  # fmt: skip

    if kind == "Bounce":
        info = data["bounce"]
        hard = info.get("bounceType") == "Permanent"
        reason = "/".join(str(info[k]) for k in ("bounceType", "bounceSubType") if info.get(k))
        for item in info.get("bouncedRecipients") or []:
            add("bounced", item["emailAddress"], info["timestamp"], info.get("feedbackId"),
                bounce="hard" if hard else "soft", reason=reason,
                mta_response=item.get("diagnosticCode"))  # fmt: skip
    elif kind == "Complaint":
        info = data["complaint"]
        for item in info.get("complainedRecipients") or []:
            add("complained", item["emailAddress"], info["timestamp"], info.get("feedbackId"),
                reason=info.get("complaintFeedbackType"))  # fmt: skip
    elif kind == "Delivery":
        info = data["delivery"]
        for recipient in info.get("recipients") or []:
            add("delivered", recipient, info["timestamp"], None,
                mta_response=info.get("smtpResponse"))  # fmt: skip
    elif kind == "DeliveryDelay":
        info = data["deliveryDelay"]
        for item in info.get("delayedRecipients") or []:
            add("deferred", item["emailAddress"], info["timestamp"], None, bounce="soft",
                reason=info.get("delayType"), mta_response=item.get("diagnosticCode"))  # fmt: skip
    elif kind in ("Open", "Click"):
        info = data[kind.lower()]
        for recipient in destination:
            add("opened" if kind == "Open" else "clicked", recipient, info["timestamp"], None,
                url=info.get("link"))  # fmt: skip
    elif kind in ("Send", "Reject", "Rendering Failure"):
        info = data.get("reject") or data.get("failure") or {}
        mapped = {"Send": "queued", "Reject": "rejected"}.get(kind, "failed")
        for recipient in destination:
            add(mapped, recipient, mail["timestamp"], None,
                reason=info.get("reason") or info.get("errorMessage"))  # fmt: skip
    else:
        for recipient in destination:
            when = mail.get("timestamp") or epoch(sent).isoformat()
            add("unknown", recipient, when, None)
    return events


def _check(settings: Mapping[str, Any], driver: str) -> None:
    # Verifying needs cryptography: say so when the configuration loads, not at the first
    # notification (a missing extra there would be a 500 at the webhook URL).
    if settings.get("webhook_topic_arn"):
        require("cryptography", "webhooks", driver=driver)


WEBHOOKS = Webhooks(
    settings={
        "webhook_topic_arn": Setting(
            None, list, help="ARNs of the SNS topics whose notifications are accepted"
        ),
        "webhook_confirm_subscriptions": Setting(
            False, bool, help="visit SubscribeURL of a confirmation from an accepted topic"
        ),
        "webhook_basic_auth": basic_auth_setting("in the SNS subscription's endpoint URL"),
    },
    enabled_by=("webhook_topic_arn",),
    parser=parse,
    check=_check,
)
