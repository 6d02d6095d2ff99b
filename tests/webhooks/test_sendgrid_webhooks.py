"""SendGrid's Signed Event Webhook: ECDSA P-256 over timestamp + body, with a real key pair.

Payloads follow SendGrid's "Event Webhook Reference" examples:
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from webhook_support import NOW, refused, utc

from mailfailover.drivers.sendgrid import SendGridDriver
from mailfailover.errors import ConfigError

URL = "https://hooks.example.com/webhooks/sendgrid"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    PRIVATE.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
).decode()

BASE = {
    "email": "example@test.com",
    "timestamp": 1513299569,
    "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
    "category": "cat facts",
    "sg_event_id": "sg_event_id",
    "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
}
# One example of every event kind the reference documents, in one batch as SendGrid sends.
EXAMPLES: list[dict[str, Any]] = [
    {**BASE, "event": "processed", "sg_event_id": "e-processed"},
    {**BASE, "event": "deferred", "sg_event_id": "e-deferred", "response": "400 try again later",
     "attempt": "5"},
    {**BASE, "event": "delivered", "sg_event_id": "e-delivered", "response": "250 OK"},
    {**BASE, "event": "open", "sg_event_id": "e-open", "useragent": "Mozilla/4.0",
     "ip": "255.255.255.255"},
    {**BASE, "event": "click", "sg_event_id": "e-click", "useragent": "Mozilla/4.0",
     "ip": "255.255.255.255", "url": "http://www.sendgrid.com/"},
    {**BASE, "event": "bounce", "sg_event_id": "e-bounce", "reason": "500 unknown recipient",
     "status": "5.0.0", "type": "bounce", "bounce_classification": "Invalid Address"},
    {**BASE, "event": "bounce", "sg_event_id": "e-blocked", "reason": "421 try later",
     "status": "4.0.0", "type": "blocked", "bounce_classification": "Reputation"},
    {**BASE, "event": "dropped", "sg_event_id": "e-dropped", "reason": "Bounced Address",
     "status": "5.0.0"},
    {**BASE, "event": "spamreport", "sg_event_id": "e-spamreport"},
    {**BASE, "event": "unsubscribe", "sg_event_id": "e-unsubscribe"},
    {**BASE, "event": "group_unsubscribe", "sg_event_id": "e-group_unsubscribe",
     "asm_group_id": 10},
    {**BASE, "event": "group_resubscribe", "sg_event_id": "e-group_resubscribe",
     "asm_group_id": 10},
]  # fmt: skip


def driver(**settings: Any) -> SendGridDriver:
    settings.setdefault("webhook_public_key", PUBLIC)
    return SendGridDriver(name="sg", api_key="k", **settings)


def sign(body: bytes, timestamp: str = str(int(NOW)), key: Any = PRIVATE) -> dict[str, str]:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def parse(body: bytes, headers: dict[str, str] | None = None, sg: Any = None) -> list[Any]:
    headers = sign(body) if headers is None else headers
    return list((sg or driver()).parse_webhook(headers, body, URL, now=NOW))


BATCH = json.dumps(EXAMPLES).encode()


def by_id() -> dict[str, Any]:
    return {event.event_id: event for event in parse(BATCH)}


def test_a_batch_gives_one_event_per_item_in_order() -> None:
    events = parse(BATCH)
    assert [e.event_id for e in events] == [item["sg_event_id"] for item in EXAMPLES]
    assert {e.driver for e in events} == {"sg"}


@pytest.mark.parametrize(
    ("event_id", "kind", "bounce"),
    [
        ("e-processed", "queued", None),
        ("e-deferred", "deferred", None),
        ("e-delivered", "delivered", None),
        ("e-open", "opened", None),
        ("e-click", "clicked", None),
        ("e-bounce", "bounced", "hard"),
        ("e-blocked", "bounced", "soft"),
        ("e-dropped", "rejected", None),
        ("e-spamreport", "complained", None),
        ("e-unsubscribe", "unsubscribed", None),
        ("e-group_unsubscribe", "unsubscribed", None),
        ("e-group_resubscribe", "unknown", None),
    ],
)
def test_each_documented_event_kind(event_id: str, kind: str, bounce: str | None) -> None:
    event = by_id()[event_id]
    assert (event.type, event.bounce) == (kind, bounce)


def test_fields_are_normalised() -> None:
    events = by_id()
    bounce = events["e-bounce"]
    assert bounce.recipient == "example@test.com"
    assert bounce.timestamp == utc(2017, 12, 15, 0, 59, 29)
    assert bounce.message_id == "14c5d75ce93.dfd.64b469"  # the send API's X-Message-Id
    assert bounce.reason == "500 unknown recipient"
    assert bounce.tags == ("cat facts",)
    assert bounce.suppression_reason == "bounced"
    assert events["e-blocked"].suppression_reason is None
    assert events["e-deferred"].mta_response == "400 try again later"
    assert events["e-click"].url == "http://www.sendgrid.com/"
    assert events["e-group_unsubscribe"].metadata == {}


def test_custom_arguments_become_metadata() -> None:
    body = json.dumps([{**EXAMPLES[2], "order": "PO1452297845", "uid": 123456}]).encode()
    [event] = parse(body)
    assert event.metadata == {"order": "PO1452297845", "uid": "123456"}


def test_a_pem_key_works_too() -> None:
    pem = PRIVATE.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert parse(BATCH, sg=driver(webhook_public_key=[pem.decode()]))


def test_rotation_accepts_either_key() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    other_public = base64.b64encode(
        other.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    sg = driver(webhook_public_key=[other_public, PUBLIC])
    assert parse(BATCH, sg=sg)
    assert parse(BATCH, sign(BATCH, key=other), sg=sg)


def test_a_tampered_body_is_refused() -> None:
    headers = sign(BATCH)
    tampered = BATCH.replace(b"example@test.com", b"victim@test.com")
    refused(lambda: parse(tampered, headers))


def test_a_tampered_timestamp_is_refused() -> None:
    headers = sign(BATCH)
    headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(NOW) - 1)
    refused(lambda: parse(BATCH, headers))


def test_a_tampered_signature_is_refused() -> None:
    headers = sign(BATCH)
    raw = bytearray(base64.b64decode(headers["X-Twilio-Email-Event-Webhook-Signature"]))
    raw[-1] ^= 1
    headers["X-Twilio-Email-Event-Webhook-Signature"] = base64.b64encode(bytes(raw)).decode()
    refused(lambda: parse(BATCH, headers))


def test_another_key_is_refused() -> None:
    refused(lambda: parse(BATCH, sign(BATCH, key=ec.generate_private_key(ec.SECP256R1()))))


def test_a_stale_timestamp_is_refused() -> None:
    refused(lambda: parse(BATCH, sign(BATCH, timestamp=str(int(NOW) - 3600))))


@pytest.mark.parametrize(
    "drop", ["X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"]
)
def test_unsigned_is_refused(drop: str) -> None:
    headers = sign(BATCH)
    del headers[drop]
    refused(lambda: parse(BATCH, headers))


def test_signed_garbage_is_malformed() -> None:
    for body in (b"{}", b"not json", b'[{"event": "delivered"}]'):
        refused(lambda body=body: parse(body), 400)


def test_a_bad_public_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="webhook_public_key"):
        driver(webhook_public_key="bm90IGEga2V5")


def test_without_cryptography_loading_the_config_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from mailfailover.errors import MissingDependency

    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(MissingDependency, match=r"mailfailover\[webhooks\]"):
        driver()
