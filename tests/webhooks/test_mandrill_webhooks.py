"""Mandrill webhooks: HMAC-SHA1 over the exact URL plus the sorted POST parameters.

Payloads follow Mandrill's "Webhooks" documentation and its example events:
https://mailchimp.com/developer/transactional/docs/webhooks/
https://mailchimp.com/developer/transactional/guides/track-respond-activity-webhooks/
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from webhook_support import NOW, refused, utc

from mailfailover.drivers.mandrill import MandrillDriver

KEY = "Y8eCqI2TpVnkgNRMK8FJ1A"
URL = "https://hooks.example.com/webhooks/mandrill"


def msg(state: str, **extra: Any) -> dict[str, Any]:
    return {
        "ts": 1365109999,
        "subject": "This an example webhook message",
        "email": "example.webhook@mandrillapp.com",
        "sender": "example.sender@mandrillapp.com",
        "tags": ["webhook-example"],
        "opens": [],
        "clicks": [],
        "state": state,
        "metadata": {"user_id": 111},
        "_id": "exampleaaaaaaaaaaaaaaaaaaaaaaaaa",
        "_version": "exampleaaaaaaaaaaaaaaa",
        **extra,
    }


def event(name: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"event": name, "msg": msg(state, **extra), "_id": "exampleaaaaaaaaaaaaaaaaaaaaaaaaa",
            "ts": 1384954004}  # fmt: skip


EXAMPLES = [
    event("send", "sent"),
    event("deferral", "deferred", smtp_events=[{
        "destination_ip": "127.0.0.1",
        "diag": "451 4.3.5 Temporarily unavailable, try again later.",
        "source_ip": "127.0.0.1", "ts": 1365111111, "type": "deferred", "size": 0,
    }]),
    event("hard_bounce", "bounced", bounce_description="bad_mailbox",
          diag="smtp;550 5.1.1 The email account that you tried to reach does not exist."),
    event("soft_bounce", "soft-bounced", bounce_description="mailbox_full",
          diag="smtp;552 5.2.2 Over Quota"),
    {**event("open", "sent"), "ip": "127.0.0.1", "user_agent": "Mozilla/5.0"},
    {**event("click", "sent"), "url": "http://mandrill.com"},
    event("spam", "sent"),
    event("unsub", "sent"),
    event("reject", "rejected"),
    {"type": "blacklist", "action": "add", "reject": {"reason": "hard-bounce",
     "email": "example.webhook@mandrillapp.com"}, "ts": 1384954004},
]  # fmt: skip


def driver(**settings: Any) -> MandrillDriver:
    settings.setdefault("webhook_key", KEY)
    return MandrillDriver(name="md", api_key="k", **settings)


def body_for(events: list[dict[str, Any]]) -> tuple[bytes, str]:
    value = json.dumps(events)
    signed = (URL + "mandrill_events" + value).encode()
    signature = base64.b64encode(hmac.new(KEY.encode(), signed, hashlib.sha1).digest()).decode()
    return urlencode({"mandrill_events": value}).encode(), signature


def parse(body: bytes, signature: str, url: str = URL, md: Any = None) -> list[Any]:
    headers = {"X-Mandrill-Signature": signature,
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    return list((md or driver()).parse_webhook(headers, body, url, now=NOW))


BODY, SIGNATURE = body_for(EXAMPLES)


@pytest.mark.parametrize(
    ("index", "kind", "bounce"),
    [
        (0, "delivered", None),
        (1, "deferred", None),
        (2, "bounced", "hard"),
        (3, "bounced", "soft"),
        (4, "opened", None),
        (5, "clicked", None),
        (6, "complained", None),
        (7, "unsubscribed", None),
        (8, "rejected", None),
        (9, "unknown", None),
    ],
)
def test_each_documented_event_kind(index: int, kind: str, bounce: str | None) -> None:
    event = parse(BODY, SIGNATURE)[index]
    assert (event.type, event.bounce) == (kind, bounce)


def test_fields_are_normalised() -> None:
    events = parse(BODY, SIGNATURE)
    hard = events[2]
    assert hard.recipient == "example.webhook@mandrillapp.com"
    assert hard.timestamp == utc(2013, 11, 20, 13, 26, 44)
    assert hard.message_id == "exampleaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert hard.reason == "bad_mailbox"
    assert hard.mta_response.startswith("smtp;550 5.1.1")
    assert hard.tags == ("webhook-example",)
    assert hard.metadata == {"user_id": "111"}
    assert hard.suppression_reason == "bounced"
    assert events[1].mta_response.startswith("451 4.3.5")
    assert events[5].url == "http://mandrill.com"
    assert events[9].recipient is None
    # Mandrill's _id is the message's: every event of the batch still has its own id.
    assert len({e.event_id for e in events}) == len(events)


def test_the_empty_batch_mandrill_sends_when_adding_a_webhook() -> None:
    body, signature = body_for([])
    assert parse(body, signature) == []


def test_the_registered_url_wins_over_the_one_seen_behind_a_proxy() -> None:
    md = driver(webhook_url=URL)
    assert parse(BODY, SIGNATURE, url="http://10.0.0.5:8000/webhooks/mandrill", md=md)
    refused(lambda: parse(BODY, SIGNATURE, url="http://10.0.0.5:8000/webhooks/mandrill"))


def test_a_tampered_body_is_refused() -> None:
    tampered = BODY.replace(b"hard_bounce", b"soft_bounce")
    refused(lambda: parse(tampered, SIGNATURE))


def test_an_added_parameter_is_refused() -> None:
    refused(lambda: parse(BODY + b"&extra=1", SIGNATURE))


def test_a_tampered_signature_is_refused() -> None:
    refused(lambda: parse(BODY, "A" + SIGNATURE[1:]))


def test_another_key_is_refused_and_rotation_accepts_both() -> None:
    refused(lambda: parse(BODY, SIGNATURE, md=driver(webhook_key="other")))
    assert parse(BODY, SIGNATURE, md=driver(webhook_key=["other", KEY]))


def test_unsigned_is_refused() -> None:
    refused(lambda: driver().parse_webhook({}, BODY, URL, now=NOW))


def test_signed_garbage_is_malformed() -> None:
    for events in ("not json", '{"event": "send"}', "[1]"):
        value = events
        signed = (URL + "mandrill_events" + value).encode()
        sig = base64.b64encode(hmac.new(KEY.encode(), signed, hashlib.sha1).digest()).decode()
        body = urlencode({"mandrill_events": value}).encode()
        refused(lambda body=body, sig=sig: parse(body, sig), 400)
