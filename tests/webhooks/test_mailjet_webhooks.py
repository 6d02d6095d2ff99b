"""Mailjet's Event API: basic auth, one event or a grouped array.

Payloads follow Mailjet's "Event API" guide: https://dev.mailjet.com/email/guides/webhooks/
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from webhook_support import NOW, basic, check_basic_auth_refusals, refused, utc

from mailfailover.drivers.mailjet import MailjetDriver

CREDENTIALS = "mailjet:hook-pass"
URL = "https://hooks.example.com/webhooks/mailjet"

COMMON = {
    "time": 1433333949,
    "MessageID": 19421777835146490,
    "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j",
    "email": "api@mailjet.com",
    "mj_campaign_id": 7257,
    "mj_contact_id": 4,
    "customcampaign": "",
    "CustomID": "helloworld",
    "Payload": "",
}
EXAMPLES = {
    "sent": ({**COMMON, "event": "sent", "mj_message_id": "19421777835146490",
              "smtp_reply": "sent (250 2.0.0 OK 1433333948 fa5si855896wjc.199 - gsmtp)"},
             "delivered", None),
    "open": ({**COMMON, "event": "open", "ip": "127.0.0.1", "geo": "US",
              "agent": "Mozilla/5.0"}, "opened", None),
    "click": ({**COMMON, "event": "click", "url": "https://mailjet.com", "ip": "127.0.0.1",
               "geo": "FR", "agent": "Mozilla/5.0"}, "clicked", None),
    "bounce": ({**COMMON, "event": "bounce", "blocked": False, "hard_bounce": True,
                "error_related_to": "recipient", "error": "user unknown"}, "bounced", "hard"),
    "bounce soft": ({**COMMON, "event": "bounce", "blocked": False, "hard_bounce": False,
                     "error_related_to": "mailbox", "error": "quota exceeded"},
                    "bounced", "soft"),
    "blocked": ({**COMMON, "event": "blocked", "error_related_to": "recipient",
                 "error": "user unknown"}, "rejected", None),
    "spam": ({**COMMON, "event": "spam", "source": "JMRPP"}, "complained", None),
    "unsub": ({**COMMON, "event": "unsub", "mj_list_id": 1, "ip": "127.0.0.1", "geo": "FR",
               "agent": "Mozilla/5.0"}, "unsubscribed", None),
    "future": ({**COMMON, "event": "something_new"}, "unknown", None),
}  # fmt: skip


def driver(**settings: Any) -> MailjetDriver:
    settings.setdefault("webhook_basic_auth", CREDENTIALS)
    return MailjetDriver(name="mj", api_key="k", secret_key="s", **settings)


def parse(data: Any, headers: dict[str, str] | None = None, mj: Any = None) -> list[Any]:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    headers = basic(CREDENTIALS) if headers is None else headers
    return list((mj or driver()).parse_webhook(headers, body, URL, now=NOW))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_documented_event_kind(name: str) -> None:
    data, kind, bounce = EXAMPLES[name]
    [event] = parse(data)
    assert (event.type, event.bounce) == (kind, bounce)


def test_fields() -> None:
    [event] = parse(EXAMPLES["bounce"][0])
    assert event.recipient == "api@mailjet.com"
    assert event.timestamp == utc(2015, 6, 3, 12, 19, 9)
    assert event.message_id == "1ab23cd4-e567-8901-2345-6789f0gh1i2j"  # the MessageUUID
    assert event.reason == "recipient / user unknown"
    assert event.metadata == {"CustomID": "helloworld"}
    assert event.suppression_reason == "bounced"
    [sent] = parse(EXAMPLES["sent"][0])
    assert sent.mta_response.startswith("sent (250 2.0.0 OK")


def test_a_grouped_array_gives_one_event_per_item() -> None:
    events = parse([EXAMPLES["sent"][0], EXAMPLES["open"][0], EXAMPLES["spam"][0]])
    assert [e.type for e in events] == ["delivered", "opened", "complained"]
    assert len({e.event_id for e in events}) == 3


def test_basic_auth_is_required() -> None:
    check_basic_auth_refusals(lambda h: parse(EXAMPLES["sent"][0], h), CREDENTIALS)


def test_authenticated_garbage_is_malformed() -> None:
    for body in (b"nope", b"[1]", b'{"event": "sent"}'):
        refused(lambda body=body: parse(body), 400)
