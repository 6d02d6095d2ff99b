"""Mailgun webhooks: HMAC-SHA256 over timestamp + token, stale and replayed tokens refused.

Payloads follow Mailgun's own examples, "Webhook Payloads":
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from webhook_support import NOW, refused, utc

from mailfailover.drivers.mailgun import MailgunDriver
from mailfailover.errors import ConfigError
from mailfailover.webhooks import ReplayGuard

KEY = "key-0123456789abcdef0123456789abcdef"
URL = "https://hooks.example.com/webhooks/mailgun"
MESSAGE = {
    "headers": {
        "to": "Alice <alice@example.com>",
        "message-id": "20130503182626.18666.16540@sandbox.mailgun.org",
        "from": "Bob <bob@sandbox.mailgun.org>",
        "subject": "Test webhook",
    },
    "attachments": [],
    "size": 111,
}


def event_data(event: str, **extra: Any) -> dict[str, Any]:
    data = {
        "id": "CPgfbmQMTCKtHW6uIWtuVe",
        "timestamp": 1521472262.908181,
        "log-level": "info",
        "event": event,
        "envelope": {"transport": "smtp", "sender": "bob@sandbox.mailgun.org",
                     "targets": "alice@example.com"},
        "message": MESSAGE,
        "recipient": "alice@example.com",
        "recipient-domain": "example.com",
        "campaigns": [],
        "tags": ["my_tag_1", "my_tag_2"],
        "user-variables": {"my_var_1": "Mailgun Variable #1", "my-var-2": "awesome"},
    }  # fmt: skip
    data.update(extra)
    return data


DELIVERED = event_data("delivered", **{"delivery-status": {
    "tls": True, "mx-host": "smtp-in.example.com", "code": 250, "description": "",
    "session-seconds": 0.43, "utf8": True, "attempt-no": 1, "message": "OK",
    "certificate-verified": True,
}})  # fmt: skip
FAILED_PERMANENT = event_data("failed", severity="permanent", reason="bounce", **{
    "delivery-status": {"attempt-no": 1, "code": 550, "session-seconds": 0.0,
                        "message": "5.1.1 The email account that you tried to reach does not exist",
                        "description": "Not delivering to a non-existent mailbox"},
})  # fmt: skip
FAILED_SUPPRESSED = event_data("failed", severity="permanent", reason="suppress-bounce", **{
    "delivery-status": {"attempt-no": 1, "message": "", "code": 605,
                        "description": "Not delivering to previously bounced address",
                        "session-seconds": 0.0},
})  # fmt: skip
FAILED_TEMPORARY = event_data("failed", severity="temporary", reason="generic", **{
    "delivery-status": {"attempt-no": 1, "code": 452, "session-seconds": 0.76,
                        "message": "4.2.2 The email account that you tried to reach is over quota",
                        "description": "", "retry-seconds": 600},
})  # fmt: skip


def driver(**settings: Any) -> MailgunDriver:
    settings.setdefault("webhook_signing_key", KEY)
    return MailgunDriver(name="mg", api_key="k", domain="mg.example.com", **settings)


def signed(
    data: dict[str, Any],
    *,
    key: str = KEY,
    timestamp: str = str(int(NOW)),
    token: str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
) -> bytes:
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    sig = {"timestamp": timestamp, "token": token, "signature": signature}
    return json.dumps({"signature": sig, "event-data": data}).encode()


def parse(body: bytes, mg: MailgunDriver | None = None, now: float = NOW) -> list[Any]:
    return (mg or driver()).parse_webhook({"Content-Type": "application/json"}, body, URL, now=now)


# -- one test per event kind Mailgun documents ------------------------------------------


def test_delivered() -> None:
    [event] = parse(signed(DELIVERED))
    assert event.type == "delivered"
    assert event.driver == "mg"
    assert event.recipient == "alice@example.com"
    assert event.timestamp == utc(2018, 3, 19, 15, 11, 2, 908181)
    assert event.message_id == "<20130503182626.18666.16540@sandbox.mailgun.org>"
    assert event.event_id == "CPgfbmQMTCKtHW6uIWtuVe:1521472262.908181"
    assert event.mta_response == "OK"
    assert event.tags == ("my_tag_1", "my_tag_2")
    assert event.metadata == {"my_var_1": "Mailgun Variable #1", "my-var-2": "awesome"}
    assert event.bounce is None
    assert event.raw == DELIVERED


def test_accepted_is_queued() -> None:
    [event] = parse(signed(event_data("accepted", method="HTTP")))
    assert event.type == "queued"


def test_failed_permanent_is_a_hard_bounce() -> None:
    [event] = parse(signed(FAILED_PERMANENT))
    assert (event.type, event.bounce) == ("bounced", "hard")
    assert event.reason == "Not delivering to a non-existent mailbox"
    assert event.mta_response.startswith("5.1.1")
    assert event.suppression_reason == "bounced"


def test_failed_permanent_on_mailguns_own_list_is_rejected() -> None:
    [event] = parse(signed(FAILED_SUPPRESSED))
    assert (event.type, event.bounce) == ("rejected", None)
    assert event.reason == "Not delivering to previously bounced address"
    assert event.suppression_reason is None


@pytest.mark.parametrize("reason", ["old", "espblock"])
def test_failed_permanent_after_giving_up_is_soft(reason: str) -> None:
    [event] = parse(signed({**FAILED_PERMANENT, "reason": reason}))
    assert (event.type, event.bounce) == ("bounced", "soft")
    assert event.suppression_reason is None


def test_failed_temporary_is_deferred_soft() -> None:
    [event] = parse(signed(FAILED_TEMPORARY))
    assert (event.type, event.bounce) == ("deferred", "soft")
    assert event.suppression_reason is None


def test_opened() -> None:
    data = event_data("opened", **{"client-info": {"client-name": "Chrome"}})
    [event] = parse(signed(data))
    assert event.type == "opened"


def test_clicked() -> None:
    [event] = parse(signed(event_data("clicked", url="https://example.com/a")))
    assert (event.type, event.url) == ("clicked", "https://example.com/a")


def test_unsubscribed() -> None:
    [event] = parse(signed(event_data("unsubscribed")))
    assert event.type == "unsubscribed"
    assert event.suppression_reason == "unsubscribed"


def test_complained() -> None:
    [event] = parse(signed(event_data("complained")))
    assert event.type == "complained"
    assert event.suppression_reason == "complained"


def test_rejected() -> None:
    why = "Sandbox subdomains are for test purposes only"
    data = event_data("rejected", reject={"reason": why})
    [event] = parse(signed(data))
    assert event.type == "rejected"
    assert event.reason == "Sandbox subdomains are for test purposes only"


def test_an_unknown_kind_is_unknown_not_an_error() -> None:
    [event] = parse(signed(event_data("list_member_uploaded")))
    assert event.type == "unknown"


# -- verification -------------------------------------------------------------------------


def test_a_rotated_key_is_accepted_alongside_the_new_one() -> None:
    mg = driver(webhook_signing_key=["key-new", KEY])
    assert parse(signed(DELIVERED), mg)[0].type == "delivered"
    assert parse(signed(DELIVERED, key="key-new", token="other"), mg)[0].type == "delivered"


def test_a_wrong_key_is_refused() -> None:
    refused(lambda: parse(signed(DELIVERED, key="key-someone-else")))


def test_a_tampered_signature_is_refused() -> None:
    body = json.loads(signed(DELIVERED))
    body["signature"]["signature"] = "0" * 64
    refused(lambda: parse(json.dumps(body).encode()))


def test_a_tampered_timestamp_is_refused() -> None:
    body = json.loads(signed(DELIVERED))
    body["signature"]["timestamp"] = str(int(NOW) + 1)
    refused(lambda: parse(json.dumps(body).encode()))


def test_a_stale_timestamp_is_refused_even_with_a_good_signature() -> None:
    body = signed(DELIVERED, timestamp=str(int(NOW) - 301))
    error = refused(lambda: parse(body))
    assert "stale" in str(error)
    assert parse(signed(DELIVERED, timestamp=str(int(NOW) - 299)))  # inside the window


def test_a_token_replayed_with_another_body_is_refused() -> None:
    mg = driver()
    parse(signed(DELIVERED), mg)
    # The signature covers only timestamp + token: the attacker swaps the event.
    forged = signed(event_data("complained", recipient="victim@example.com"))
    error = refused(lambda: parse(forged, mg))
    assert "replay" in str(error)


def test_the_same_request_again_is_a_retry_and_passes() -> None:
    mg = driver()
    first = parse(signed(DELIVERED), mg)
    assert parse(signed(DELIVERED), mg) == first  # de-duplicated later by event_id


def test_replayed_tokens_are_remembered_in_the_given_guard() -> None:
    guard = ReplayGuard()
    body = signed(DELIVERED)
    driver().parse_webhook({}, body, URL, now=NOW, replay=guard)
    forged = signed(FAILED_PERMANENT)
    refused(lambda: driver().parse_webhook({}, forged, URL, now=NOW, replay=guard))


def test_a_missing_signature_is_refused() -> None:
    body = json.dumps({"event-data": DELIVERED}).encode()
    refused(lambda: parse(body))


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[1, 2]", b'{"signature": "x"}', "\u00e9".encode("latin-1")]
)
def test_garbage_is_refused_never_crashes(body: bytes) -> None:
    with pytest.raises(Exception) as info:
        parse(body)
    assert getattr(info.value, "status", None) in (400, 401)


def test_a_signed_body_without_event_data_is_malformed() -> None:
    body = json.loads(signed(DELIVERED))
    del body["event-data"]
    refused(lambda: parse(json.dumps(body).encode()), 400)


def test_without_a_signing_key_the_driver_has_no_webhooks() -> None:
    mg = MailgunDriver(name="mg", api_key="k", domain="mg.example.com")
    error = refused(lambda: parse(signed(DELIVERED), mg), 404)
    assert "webhook_signing_key" in str(error)


def test_the_signing_key_is_secret() -> None:
    assert KEY not in repr(driver())
    with pytest.raises(ConfigError) as info:
        driver(webhook_signing_key=12)
    assert "12" not in str(info.value)
