"""A queued message's status shows the delivery events its provider's webhooks reported."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import responses

from mailfailover import FailoverMailer
from mailfailover.delivery import DeliveryPolicy, DeliveryRecords, deliver
from mailfailover.drivers.mailgun import MailgunDriver
from mailfailover.events import EventLog
from mailfailover.state import MemoryStore
from mailfailover.testing import simple_message

KEY = "status-signing-key"
PROVIDER_ID = "<20260601120000.1.ABC@mg.example.com>"


def webhook(event: str, token: str) -> bytes:
    timestamp = str(int(time.time()))
    signature = hmac.new(KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {"event": event, "recipient": "ann@example.com", "id": token,
                       "timestamp": time.time(),
                       "message": {"headers": {"message-id": PROVIDER_ID.strip("<>")}}},
    }).encode()  # fmt: skip


@responses.activate
def test_the_status_view_lists_the_webhook_events_of_the_message() -> None:
    responses.post("http://127.0.0.1:9/v3/mg.example.com/messages",
                   json={"id": PROVIDER_ID, "message": "Queued. Thank you."})  # fmt: skip
    store = MemoryStore()
    driver = MailgunDriver(name="mailgun", api_key="k", domain="mg.example.com",
                           webhook_signing_key=KEY, base_url="http://127.0.0.1:9")  # fmt: skip
    records = DeliveryRecords(store, keep=3600)
    data = simple_message().to_dict()
    with FailoverMailer([driver], state=store) as mailer:
        deliver(data, mailer=mailer, records=records, policy=DeliveryPolicy(), token="t")
        mailer.handle_webhook("mailgun", {}, webhook("delivered", "tok1"), "u")
        mailer.handle_webhook("mailgun", {}, webhook("opened", "tok2"), "u")
    view = records.status(data["message_id"], events=EventLog(store).for_record)
    assert view is not None
    assert view["status"] == "sent"
    assert [(e["type"], e["driver"], e["message_id"]) for e in view["events"]] == [
        ("delivered", "mailgun", PROVIDER_ID), ("opened", "mailgun", PROVIDER_ID)
    ]  # fmt: skip
