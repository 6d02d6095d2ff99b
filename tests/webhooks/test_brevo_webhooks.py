"""Brevo transactional webhooks: basic auth or a bearer token; single or batched events.

Payloads follow Brevo's "Transactional webhooks" page:
https://developers.brevo.com/docs/transactional-webhooks
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from webhook_support import NOW, basic, check_basic_auth_refusals, refused, utc

from mailfailover.drivers.brevo import BrevoDriver

CREDENTIALS = "brevo:hook-pass"
TOKEN = "brevo-bearer-token"
URL = "https://hooks.example.com/webhooks/brevo"

COMMON = {
    "email": "example@domain.com", "id": 1, "date": "2020-10-09 00:00:00",
    "ts": 1604933619, "message-id": "<201798300811.5787683@relay.domain.com>",
    "ts_event": 1604933654, "subject": "My first Transactional", "tag": "[\"transac_messages\"]",
    "sending_ip": "xxx.xxx.xxx.xxx", "ts_epoch": 1604933654000, "tags": ["transac_messages"],
    "X-Mailin-custom": "some_custom_header", "template_id": 22,
}  # fmt: skip
EXAMPLES = {
    "request": ({**COMMON, "event": "request"}, "queued", None),
    "click": ({**COMMON, "event": "click", "link": "https://example.com"}, "clicked", None),
    "deferred": ({**COMMON, "event": "deferred", "reason": "deferred"}, "deferred", None),
    "delivered": ({**COMMON, "event": "delivered"}, "delivered", None),
    "soft_bounce": ({**COMMON, "event": "soft_bounce", "reason": "mailbox full"},
                    "bounced", "soft"),
    "spam": ({**COMMON, "event": "spam"}, "complained", None),
    "unique_opened": ({**COMMON, "event": "unique_opened"}, "opened", None),
    "hard_bounce": ({**COMMON, "event": "hard_bounce", "reason": "user unknown"},
                    "bounced", "hard"),
    "opened": ({**COMMON, "event": "opened"}, "opened", None),
    "invalid_email": ({**COMMON, "event": "invalid_email"}, "rejected", None),
    "blocked": ({**COMMON, "event": "blocked", "reason": "blocked"}, "rejected", None),
    "error": ({**COMMON, "event": "error", "reason": "template error"}, "failed", None),
    "unsubscribed": ({**COMMON, "event": "unsubscribed"}, "unsubscribed", None),
    "proxy_open": ({**COMMON, "event": "proxy_open"}, "opened", None),
    "unique_proxy_open": ({**COMMON, "event": "unique_proxy_open"}, "opened", None),
    "new kind": ({**COMMON, "event": "brand_new"}, "unknown", None),
}  # fmt: skip


def driver(**settings: Any) -> BrevoDriver:
    settings.setdefault("webhook_basic_auth", CREDENTIALS)
    return BrevoDriver(name="bv", api_key="k", **settings)


def parse(data: Any, headers: dict[str, str] | None = None, bv: Any = None) -> list[Any]:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = basic(CREDENTIALS) if headers is None else headers
    return list((bv or driver()).parse_webhook(headers, body, URL, now=NOW))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_documented_event_kind(name: str) -> None:
    data, kind, bounce = EXAMPLES[name]
    [event] = parse(data)
    assert (event.type, event.bounce) == (kind, bounce)


def test_fields() -> None:
    [event] = parse(EXAMPLES["hard_bounce"][0])
    assert event.recipient == "example@domain.com"
    assert event.timestamp == utc(2020, 11, 9, 14, 54, 14)
    assert event.message_id == "<201798300811.5787683@relay.domain.com>"
    assert event.reason == "user unknown"
    assert event.tags == ("transac_messages",)
    assert event.metadata == {"X-Mailin-custom": "some_custom_header"}
    assert event.suppression_reason == "bounced"
    [click] = parse(EXAMPLES["click"][0])
    assert click.url == "https://example.com"


def test_a_batch_gives_one_event_per_item() -> None:
    events = parse([EXAMPLES["delivered"][0], EXAMPLES["opened"][0]])
    assert [e.type for e in events] == ["delivered", "opened"]


def test_basic_auth_is_required() -> None:
    check_basic_auth_refusals(lambda h: parse(EXAMPLES["delivered"][0], h), CREDENTIALS)


def test_a_bearer_token_works_instead() -> None:
    bv = driver(webhook_basic_auth=None, webhook_token=["old-token", TOKEN])
    assert parse(EXAMPLES["delivered"][0], {"Authorization": f"Bearer {TOKEN}"}, bv=bv)
    assert parse(EXAMPLES["delivered"][0], {"Authorization": "Bearer old-token"}, bv=bv)
    for headers in ({"Authorization": "Bearer wrong"}, basic(CREDENTIALS), {}):
        refused(lambda headers=headers: parse(EXAMPLES["delivered"][0], headers, bv=bv))


def test_authenticated_garbage_is_malformed() -> None:
    for body in (b"nope", b"[1]", b'{"event": "delivered"}'):
        refused(lambda body=body: parse(body), 400)
