"""Postmark webhooks: basic auth (several credentials), one JSON object per request.

Payloads follow Postmark's webhook pages: https://postmarkapp.com/developer/webhooks/bounce-webhook,
.../delivery-webhook, .../spam-complaint-webhook, .../open-tracking-webhook,
.../click-webhook, .../subscription-change-webhook (and https://postmarkapp.com/email-webhooks).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from webhook_support import NOW, basic, check_basic_auth_refusals, refused, utc

from mailfailover.drivers.postmark import PostmarkDriver

CREDENTIALS = "postmark:s3cret-pass"
URL = "https://hooks.example.com/webhooks/postmark"

BOUNCE = {
    "RecordType": "Bounce",
    "MessageStream": "outbound",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "Tag": "Invitation",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"a_key": "a_value"},
    "ServerID": 23,
    "Description": "The server was unable to deliver your message "
    "(ex: unknown user, mailbox not found).",
    "Details": "Test bounce details",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "Test subject",
    "Content": "Return-Path:...",
}
DELIVERY = {
    "RecordType": "Delivery",
    "ServerID": 23,
    "MessageStream": "outbound",
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "Recipient": "john@example.com",
    "Tag": "welcome-email",
    "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
    "Details": "Test delivery webhook details",
    "Metadata": {"a_key": "a_value"},
}
SPAM = {
    **BOUNCE,
    "RecordType": "SpamComplaint",
    "ID": 42,
    "Type": "SpamComplaint",
    "TypeCode": 512,
    "Name": "Spam complaint",
    "Description": "The subscriber explicitly marked this message as spam.",
    "Details": "Test spam complaint details",
}
OPEN = {
    "RecordType": "Open",
    "MessageStream": "outbound",
    "FirstOpen": True,
    "Client": {"Name": "Chrome 35.0.1916.153", "Company": "Google", "Family": "Chrome"},
    "OS": {"Name": "OS X 10.7 Lion", "Company": "Apple Computer, Inc.", "Family": "OS X 10"},
    "Platform": "WebMail",
    "UserAgent": "Mozilla/5.0",
    "ReadSeconds": 5,
    "Geo": {"CountryISOCode": "RS", "City": "Novi Sad"},
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "Metadata": {"a_key": "a_value"},
    "ReceivedAt": "2019-11-05T16:33:54.9070259Z",
    "Tag": "welcome-email",
    "Recipient": "john@example.com",
}
CLICK = {
    "RecordType": "Click",
    "MessageStream": "outbound",
    "ClickLocation": "HTML",
    "Client": {"Name": "Chrome 35.0.1916.153"},
    "OS": {"Name": "OS X 10.7 Lion"},
    "Platform": "Desktop",
    "UserAgent": "Mozilla/5.0",
    "OriginalLink": "https://example.com",
    "Geo": {"City": "Novi Sad"},
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "Metadata": {"a_key": "a_value"},
    "ReceivedAt": "2019-11-05T16:33:54.9070259Z",
    "Tag": "welcome-email",
    "Recipient": "john@example.com",
}
SUBSCRIPTION = {
    "RecordType": "SubscriptionChange", "MessageID": "00000000-0000-0000-0000-000000000000",
    "ServerID": 23, "MessageStream": "outbound", "ChangedAt": "2020-02-01T10:53:34.416071Z",
    "Recipient": "bounced-address@wildbit.com", "Origin": "Recipient",
    "SuppressSending": True, "SuppressionReason": "ManualSuppression", "Tag": "my-tag",
    "Metadata": {"example": "value", "example_2": "value"},
}  # fmt: skip


def driver(**settings: Any) -> PostmarkDriver:
    settings.setdefault("webhook_basic_auth", CREDENTIALS)
    return PostmarkDriver(name="pm", server_token="t", **settings)


def parse(data: Any, headers: dict[str, str] | None = None, pm: Any = None) -> list[Any]:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = basic(CREDENTIALS) if headers is None else headers
    return list((pm or driver()).parse_webhook(headers, body, URL, now=NOW))


@pytest.mark.parametrize(
    ("data", "kind", "bounce"),
    [
        (BOUNCE, "bounced", "hard"),
        ({**BOUNCE, "Type": "SoftBounce", "TypeCode": 4096}, "bounced", "soft"),
        ({**BOUNCE, "Type": "Transient", "TypeCode": 2}, "deferred", "soft"),
        ({**BOUNCE, "Type": "BadEmailAddress", "TypeCode": 100000}, "bounced", "hard"),
        ({**BOUNCE, "Type": "Blocked", "TypeCode": 100006}, "bounced", "soft"),
        ({**BOUNCE, "Type": "AutoResponder", "TypeCode": 64}, "unknown", None),
        (DELIVERY, "delivered", None),
        (SPAM, "complained", None),
        (OPEN, "opened", None),
        (CLICK, "clicked", None),
        (SUBSCRIPTION, "unsubscribed", None),
        ({**SUBSCRIPTION, "SuppressionReason": "HardBounce"}, "bounced", "hard"),
        ({**SUBSCRIPTION, "SuppressionReason": "SpamComplaint"}, "complained", None),
        ({**SUBSCRIPTION, "SuppressSending": False, "SuppressionReason": None}, "unknown", None),
    ],
)
def test_each_documented_event_kind(data: Any, kind: str, bounce: str | None) -> None:
    [event] = parse(data)
    assert (event.type, event.bounce) == (kind, bounce)


def test_bounce_fields() -> None:
    [event] = parse(BOUNCE)
    assert event.driver == "pm"
    assert event.recipient == "john@example.com"
    assert event.timestamp == utc(2019, 11, 5, 16, 33, 54, 907025)
    assert event.message_id == "883953f4-6105-42a2-a16a-77a8eac79483"
    assert event.event_id == "Bounce:4323372036854775807"
    assert event.reason.startswith("The server was unable to deliver")
    assert event.mta_response == "Test bounce details"
    assert event.tags == ("Invitation",)
    assert event.metadata == {"a_key": "a_value"}
    assert event.suppression_reason == "bounced"


def test_other_fields() -> None:
    [click] = parse(CLICK)
    assert (click.recipient, click.url) == ("john@example.com", "https://example.com")
    [change] = parse(SUBSCRIPTION)
    assert change.recipient == "bounced-address@wildbit.com"
    assert change.suppression_reason == "unsubscribed"


def test_basic_auth_is_required() -> None:
    check_basic_auth_refusals(lambda headers: parse(DELIVERY, headers), CREDENTIALS)


def test_several_credentials_for_rotation() -> None:
    pm = driver(webhook_basic_auth=["old:one", CREDENTIALS])
    assert parse(DELIVERY, basic("old:one"), pm=pm)
    assert parse(DELIVERY, basic(CREDENTIALS), pm=pm)
    refused(lambda: parse(DELIVERY, basic("old:two"), pm=pm))


def test_authenticated_garbage_is_malformed() -> None:
    for body in (b"nope", b"[1]", b'{"RecordType": "Bounce", "Type": "HardBounce"}'):
        refused(lambda body=body: parse(body), 400)
