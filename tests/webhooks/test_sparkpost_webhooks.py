"""SparkPost event webhooks: basic auth, a batch of msys events, bounce classes.

Payloads follow SparkPost's "Webhooks: Event Types" samples:
https://developers.sparkpost.com/api/webhooks/#header-event-types
Bounce classes: https://support.sparkpost.com/docs/deliverability/bounce-classification-codes
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from webhook_support import NOW, basic, check_basic_auth_refusals, refused, utc

from mailfailover.drivers.sparkpost import SparkPostDriver

CREDENTIALS = "sparkpost:hook-pass"
URL = "https://hooks.example.com/webhooks/sparkpost"


def message_event(kind: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {"msys": {"message_event": {
        "type": kind, "event_id": event_id, "campaign_id": "Example Campaign Name",
        "customer_id": "1", "delv_method": "esmtp", "friendly_from": "sender@example.com",
        "ip_address": "127.0.0.1", "message_id": "0e0d94b7-9085-4e3c-ab30-e3f2cd9c273e",
        "msg_from": "sender@example.com", "msg_size": "1337", "num_retries": "2",
        "rcpt_meta": {"customKey": "customValue"}, "rcpt_tags": ["male", "US"],
        "rcpt_to": "recipient@example.com", "raw_rcpt_to": "recipient@example.com",
        "rcpt_type": "cc", "routing_domain": "example.com", "sending_ip": "127.0.0.1",
        "subject": "Summer deals are here!", "template_id": "templ-1234",
        "template_version": "1", "timestamp": "1460989507",
        "transmission_id": "65832150921904138", **extra,
    }}}  # fmt: skip


def track_event(kind: str, event_id: str, **extra: Any) -> dict[str, Any]:
    item = message_event(kind, event_id, **extra)
    return {"msys": {"track_event": item["msys"]["message_event"]}}


def unsubscribe_event(kind: str, event_id: str) -> dict[str, Any]:
    item = message_event(kind, event_id, mailfrom="recipient@example.com")
    return {"msys": {"unsubscribe_event": item["msys"]["message_event"]}}


BOUNCE_REASON = "000 Example Remote MTA Bounce Message"
EXAMPLES = [
    message_event("injection", "e-injection"),
    message_event("delivery", "e-delivery", queue_time="12"),
    message_event("delay", "e-delay", bounce_class="21", reason="451 DNS failure"),
    message_event("bounce", "e-bounce", bounce_class="10", error_code="554",
                  reason=BOUNCE_REASON, raw_reason="554 5.1.1 user unknown"),
    message_event("bounce", "e-bounce-soft", bounce_class="22", reason="mailbox full"),
    message_event("bounce", "e-bounce-block", bounce_class="51", reason="spam block"),
    message_event("out_of_band", "e-oob", bounce_class="30", reason="no such user"),
    message_event("policy_rejection", "e-policy", reason="550 5.7.1 Unsubscribed recipient"),
    message_event("spam_complaint", "e-spam", fbtype="abuse", report_by="server.example.com"),
    message_event("generation_failure", "e-genfail", error_code="554"),
    message_event("generation_rejection", "e-genrej"),
    track_event("open", "e-open", user_agent="Mozilla/5.0"),
    track_event("initial_open", "e-initial-open"),
    track_event("click", "e-click", target_link_url="https://example.com"),
    track_event("amp_click", "e-amp-click", target_link_url="https://example.com/amp"),
    unsubscribe_event("list_unsubscribe", "e-list-unsub"),
    unsubscribe_event("link_unsubscribe", "e-link-unsub"),
    {"msys": {"relay_event": {"type": "relay_injection", "event_id": "e-relay",
                              "timestamp": "1460989507"}}},
]  # fmt: skip


def driver(**settings: Any) -> SparkPostDriver:
    settings.setdefault("webhook_basic_auth", CREDENTIALS)
    return SparkPostDriver(name="sp", api_key="k", **settings)


def parse(data: Any, headers: dict[str, str] | None = None) -> list[Any]:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = basic(CREDENTIALS) if headers is None else headers
    return list(driver().parse_webhook(headers, body, URL, now=NOW))


@pytest.mark.parametrize(
    ("event_id", "kind", "bounce"),
    [
        ("e-injection", "queued", None),
        ("e-delivery", "delivered", None),
        ("e-delay", "deferred", "soft"),
        ("e-bounce", "bounced", "hard"),
        ("e-bounce-soft", "bounced", "soft"),
        ("e-bounce-block", "bounced", "soft"),
        ("e-oob", "bounced", "hard"),
        ("e-policy", "rejected", None),
        ("e-spam", "complained", None),
        ("e-genfail", "failed", None),
        ("e-genrej", "failed", None),
        ("e-open", "opened", None),
        ("e-initial-open", "opened", None),
        ("e-click", "clicked", None),
        ("e-amp-click", "clicked", None),
        ("e-list-unsub", "unsubscribed", None),
        ("e-link-unsub", "unsubscribed", None),
        ("e-relay", "unknown", None),
    ],
)
def test_each_documented_event_kind(event_id: str, kind: str, bounce: str | None) -> None:
    events = {e.event_id: e for e in parse(EXAMPLES)}
    assert len(events) == len(EXAMPLES)
    assert (events[event_id].type, events[event_id].bounce) == (kind, bounce)


def test_fields() -> None:
    [event] = parse([EXAMPLES[3]])
    assert event.recipient == "recipient@example.com"
    assert event.timestamp == utc(2016, 4, 18, 14, 25, 7)
    assert event.message_id == "65832150921904138"  # the transmission id the send API returned
    assert event.reason == BOUNCE_REASON
    assert event.mta_response == "554 5.1.1 user unknown"
    assert event.tags == ("male", "US")
    assert event.metadata == {"customKey": "customValue"}
    assert event.suppression_reason == "bounced"
    [click] = parse([EXAMPLES[13]])
    assert click.url == "https://example.com"


def test_sparkposts_test_ping_gives_no_events() -> None:
    assert parse([{"msys": {}}]) == []


def test_basic_auth_is_required() -> None:
    check_basic_auth_refusals(lambda h: parse([EXAMPLES[1]], h), CREDENTIALS)


def test_authenticated_garbage_is_malformed() -> None:
    for body in (b"nope", b"{}", b"[1]", b'[{"msys": []}]', b'[{"msys": {"x": 1}}]',
                 b'[{"msys": {"message_event": {"type": "bounce"}}}]'):  # fmt: skip
        refused(lambda body=body: parse(body), 400)
