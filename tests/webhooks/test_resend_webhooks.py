"""Resend webhooks, signed by Svix: HMAC-SHA256 over id.timestamp.body, tolerance, rotation.

Payloads follow Resend's event pages, e.g. https://resend.com/docs/webhooks/emails/bounced
(and .../sent, .../delivered, .../delivery-delayed, .../complained, .../opened,
.../clicked, .../failed); the signature scheme is Svix's, https://docs.svix.com/receiving/verifying-payloads/how-manual
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from webhook_support import NOW, refused, utc

from mailfailover.drivers.resend import ResendDriver

RAW_KEY = b"resend-test-signing-key-32-bytes"
SECRET = "whsec_" + base64.b64encode(RAW_KEY).decode()
URL = "https://hooks.example.com/webhooks/resend"

DATA = {
    "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
    "created_at": "2024-11-22T23:41:11.894719+00:00",
    "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
    "from": "Acme <onboarding@resend.dev>",
    "to": ["delivered@resend.dev"],
    "subject": "Sending this example",
    "tags": {"category": "confirm_email"},
}


def payload(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "created_at": "2024-11-22T23:41:12.126Z", "data": {**DATA, **extra}}


EXAMPLES = {
    "email.sent": (payload("email.sent"), "queued", None),
    "email.scheduled": (payload("email.scheduled"), "queued", None),
    "email.delivered": (payload("email.delivered"), "delivered", None),
    "email.delivery_delayed": (payload("email.delivery_delayed"), "deferred", None),
    "email.complained": (payload("email.complained"), "complained", None),
    "email.bounced": (payload("email.bounced", bounce={
        "message": "The recipient's email address is on the suppression list because it has "
                   "a recent history of producing hard bounces.",
        "subType": "Suppressed", "type": "Permanent"}), "bounced", "hard"),
    "email.bounced transient": (payload("email.bounced", bounce={
        "message": "Mailbox full", "subType": "MailboxFull", "type": "Transient"}),
        "bounced", "soft"),
    "email.opened": (payload("email.opened"), "opened", None),
    "email.clicked": (payload("email.clicked", click={
        "ipAddress": "122.115.53.11", "link": "https://resend.com",
        "timestamp": "2024-11-24T05:00:57.163Z", "userAgent": "Mozilla/5.0"}), "clicked", None),
    "email.failed": (payload("email.failed", failed={"reason": "reached_daily_quota"}),
                     "failed", None),
    "contact.created": ({"type": "contact.created", "created_at": "2024-11-22T23:41:12.126Z",
                         "data": {"id": "e169aa45", "email": "x@example.com",
                                  "created_at": "2024-11-22T23:41:11Z"}}, "unknown", None),
}  # fmt: skip


def driver(**settings: Any) -> ResendDriver:
    settings.setdefault("webhook_secret", SECRET)
    return ResendDriver(name="rs", api_key="k", **settings)


def sign(
    body: bytes,
    msg_id: str = "msg_p5jXN8AQM9LWM0D4loKWxJek",
    ts: int = int(NOW),
    key: bytes = RAW_KEY,
) -> dict[str, str]:
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {"svix-id": msg_id, "svix-timestamp": str(ts),
            "svix-signature": "v1," + base64.b64encode(mac).decode()}  # fmt: skip


def parse(body: bytes, headers: dict[str, str] | None = None, rs: Any = None) -> list[Any]:
    headers = sign(body) if headers is None else headers
    return list((rs or driver()).parse_webhook(headers, body, URL, now=NOW))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_documented_event_kind(name: str) -> None:
    data, kind, bounce = EXAMPLES[name]
    [event] = parse(json.dumps(data).encode())
    assert (event.type, event.bounce) == (kind, bounce)


def test_fields_are_normalised() -> None:
    data = EXAMPLES["email.bounced"][0]
    [event] = parse(json.dumps(data).encode())
    assert event.driver == "rs"
    assert event.recipient == "delivered@resend.dev"
    assert event.timestamp == utc(2024, 11, 22, 23, 41, 12, 126000)
    assert event.message_id == "56761188-7520-42d8-8898-ff6fc54ce618"
    assert event.event_id == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert event.reason.startswith("The recipient's email address is on the suppression list")
    assert event.tags == ("category:confirm_email",)
    assert event.raw == data
    [click] = parse(json.dumps(EXAMPLES["email.clicked"][0]).encode())
    assert click.url == "https://resend.com"


def test_several_recipients_give_one_event_each() -> None:
    data = payload("email.bounced", to=["a@example.com", "b@example.com"],
                   bounce={"type": "Permanent", "message": "x"})  # fmt: skip
    events = parse(json.dumps(data).encode())
    assert [e.recipient for e in events] == ["a@example.com", "b@example.com"]
    assert len({e.event_id for e in events}) == 2


BODY = json.dumps(EXAMPLES["email.delivered"][0]).encode()


def test_several_signatures_any_one_matching_passes() -> None:
    headers = sign(BODY)
    headers["svix-signature"] = "v1,bm90LWl0 " + headers["svix-signature"] + " v2,ignored"
    assert parse(BODY, headers)


def test_a_rotated_secret_is_accepted() -> None:
    old = "whsec_" + base64.b64encode(b"old-key").decode()
    assert parse(BODY, rs=driver(webhook_secret=[old, SECRET]))
    assert parse(BODY, sign(BODY, key=b"old-key"), rs=driver(webhook_secret=[old, SECRET]))


def test_a_tampered_body_is_refused() -> None:
    headers = sign(BODY)
    refused(lambda: parse(BODY.replace(b"delivered@", b"victim@"), headers))


def test_a_tampered_timestamp_or_id_is_refused() -> None:
    for name, value in (("svix-timestamp", str(int(NOW) - 1)), ("svix-id", "msg_other")):
        headers = {**sign(BODY), name: value}
        refused(lambda headers=headers: parse(BODY, headers))


def test_a_tampered_signature_is_refused() -> None:
    headers = sign(BODY)
    headers["svix-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
    refused(lambda: parse(BODY, headers))


def test_stale_and_future_timestamps_are_refused() -> None:
    refused(lambda: parse(BODY, sign(BODY, ts=int(NOW) - 301)))
    refused(lambda: parse(BODY, sign(BODY, ts=int(NOW) + 301)))


def test_unsigned_is_refused() -> None:
    refused(lambda: parse(BODY, {}))


def test_signed_garbage_is_malformed() -> None:
    for body in (b"[]", b"nope", b'{"type": "email.sent"}'):
        refused(lambda body=body: parse(body), 400)
