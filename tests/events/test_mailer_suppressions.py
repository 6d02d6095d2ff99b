"""The mailer applies the suppression list before any driver, and takes webhooks into it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from mailfailover import (
    DeliveryEvent,
    FailoverMailer,
    Message,
    MessageRejected,
    MessageSuppressed,
    WebhookError,
)
from mailfailover.drivers.mailgun import MailgunDriver
from mailfailover.drivers.memory import MemoryDriver
from mailfailover.events import EventLog
from mailfailover.state import MemoryStore
from mailfailover.suppressions import GENERATION_KEY, PREFIX, REFRESH_INTERVAL, SuppressionList
from mailfailover.testing import FakeClock

KEY = "mailgun-signing-key"


def msg(**fields: Any) -> Message:
    fields.setdefault("to", ["ann@example.com", "bob@example.com"])
    return Message("noreply@example.com", subject="Hi", text="Hello", **fields)


def mailer_with(*drivers: Any, **options: Any) -> FailoverMailer:
    return FailoverMailer(list(drivers), **options)


# -- applied before any driver --------------------------------------------------------------


def test_suppressed_recipients_are_removed_and_reported() -> None:
    memory = MemoryDriver(name="memory")
    mailer = mailer_with(memory)
    mailer.suppressions.add("BOB@Example.com", reason="bounced")
    message = msg(cc=["carl@example.com", "Dee <dee@example.com>"],
                  bcc=["bob@example.com", "eve@example.com"])  # fmt: skip
    result = mailer.send(message)
    assert result.suppressed == ("bob@example.com", "bob@example.com")
    [sent] = memory.outbox
    assert sent.message_id == message.message_id == result.message_id
    assert sent.to == ("ann@example.com",)
    assert sent.cc == ("carl@example.com", "Dee <dee@example.com>")
    assert sent.bcc == ("eve@example.com",)
    assert result.to_dict()["suppressed"] == ["bob@example.com", "bob@example.com"]


def test_every_recipient_suppressed_raises_and_calls_no_driver() -> None:
    first, second = MemoryDriver(name="first"), MemoryDriver(name="second")
    outcomes: list[Any] = []
    mailer = mailer_with(first, second)
    mailer.add_hooks(on_result=lambda m, outcome: outcomes.append(outcome))
    for address in ("ann@example.com", "bob@example.com"):
        mailer.suppressions.add(address, reason="complained")
    with pytest.raises(MessageSuppressed) as info:
        mailer.send(msg())
    assert isinstance(info.value, MessageRejected)
    assert info.value.code == 12
    assert info.value.suppressed == ("ann@example.com", "bob@example.com")
    assert (first.calls, second.calls) == (0, 0)
    assert outcomes == [info.value]


def test_when_every_to_is_suppressed_the_cc_take_its_place() -> None:
    memory = MemoryDriver(name="memory")
    mailer = mailer_with(memory)
    mailer.suppressions.add("ann@example.com")
    mailer.send(msg(to="ann@example.com", cc="carl@example.com", bcc="eve@example.com"))
    [sent] = memory.outbox
    assert (sent.to, sent.cc, sent.bcc) == (("carl@example.com",), (), ("eve@example.com",))


def test_a_lone_bcc_left_becomes_the_to() -> None:
    memory = MemoryDriver(name="memory")
    mailer = mailer_with(memory)
    mailer.suppressions.add("ann@example.com")
    mailer.send(msg(to="ann@example.com", bcc="eve@example.com"))
    assert memory.outbox[0].to == ("eve@example.com",)
    assert memory.outbox[0].bcc == ()


def test_several_bcc_left_alone_are_not_shown_to_each_other() -> None:
    memory = MemoryDriver(name="memory")
    mailer = mailer_with(memory)
    mailer.suppressions.add("ann@example.com")
    with pytest.raises(MessageSuppressed, match="Bcc"):
        mailer.send(msg(to="ann@example.com", bcc=["eve@example.com", "fay@example.com"]))
    assert memory.calls == 0


def test_suppression_false_turns_it_off() -> None:
    memory = MemoryDriver(name="memory")
    mailer = mailer_with(memory, suppression=False)
    mailer.suppressions.add("ann@example.com")
    result = mailer.send(msg())
    assert result.suppressed == ()
    assert memory.outbox[0].to == ("ann@example.com", "bob@example.com")


def test_suppression_false_from_the_config_file() -> None:
    config = {"suppression": False, "drivers": [{"name": "m", "module": "memory"}]}
    with FailoverMailer.from_config(config) as mailer:
        mailer.suppressions.add("ann@example.com")
        assert mailer.send(msg()).suppressed == ()
    with FailoverMailer.from_config({**config, "suppression": True}) as mailer:
        mailer.suppressions.add("ann@example.com")
        assert mailer.send(msg()).suppressed == ("ann@example.com",)


def test_the_list_lives_in_the_mailers_store() -> None:
    store = MemoryStore()
    one = mailer_with(MemoryDriver(name="a"), state=store)
    two = mailer_with(MemoryDriver(name="b"), state=store)
    one.suppressions.add("ann@example.com", reason="unsubscribed")
    assert two.send(msg()).suppressed == ("ann@example.com",)


# -- handle_webhook -------------------------------------------------------------------------


def mailgun_body(event: str, recipient: str = "ann@example.com", **extra: Any) -> bytes:
    timestamp, token = str(int(time.time())), hashlib.sha256(repr(extra).encode()).hexdigest()
    token += event + recipient
    signature = hmac.new(KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    data = {"event": event, "recipient": recipient, "timestamp": time.time(),
            "id": token[:20], **extra}  # fmt: skip
    sig = {"timestamp": timestamp, "token": token, "signature": signature}
    return json.dumps({"signature": sig, "event-data": data}).encode()


def webhook_mailer(**options: Any) -> tuple[FailoverMailer, MemoryDriver]:
    mailgun = MailgunDriver(name="mailgun", api_key="k", domain="mg.example.com",
                            webhook_signing_key=KEY, base_url="http://127.0.0.1:9")  # fmt: skip
    backup = MemoryDriver(name="backup")
    return mailer_with(backup, mailgun, **options), backup


def test_a_hard_bounce_at_one_provider_suppresses_for_every_driver() -> None:
    mailer, backup = webhook_mailer()
    events = mailer.handle_webhook(
        "mailgun", {}, mailgun_body("failed", severity="permanent", reason="bounce"), "u"
    )
    assert [(e.type, e.bounce, e.driver) for e in events] == [("bounced", "hard", "mailgun")]
    entry = mailer.suppressions.get("ann@example.com")
    assert entry is not None
    assert (entry.reason, entry.driver) == ("bounced", "mailgun")
    result = mailer.send(msg())
    assert result.driver == "backup"
    assert result.suppressed == ("ann@example.com",)
    assert backup.outbox[0].to == ("bob@example.com",)


@pytest.mark.parametrize(
    ("event", "extra", "reason"),
    [
        ("complained", {}, "complained"),
        ("unsubscribed", {}, "unsubscribed"),
        ("failed", {"severity": "temporary"}, None),
        ("failed", {"severity": "permanent", "reason": "old"}, None),
        ("delivered", {}, None),
        ("opened", {}, None),
    ],
)
def test_what_suppresses_and_what_never_does(
    event: str, extra: dict[str, Any], reason: str | None
) -> None:
    mailer, _ = webhook_mailer()
    mailer.handle_webhook("mailgun", {}, mailgun_body(event, **extra), "u")
    entry = mailer.suppressions.get("ann@example.com")
    assert (entry.reason if entry else None) == reason


def test_events_seen_before_are_dropped_and_hooks_called_once() -> None:
    seen: list[DeliveryEvent] = []
    mailer, _ = webhook_mailer(on_event=seen.append)
    body = mailgun_body("delivered")
    assert len(mailer.handle_webhook("mailgun", {}, body, "u")) == 1
    assert mailer.handle_webhook("mailgun", {}, body, "u") == []
    assert [e.type for e in seen] == ["delivered"]


def test_a_failing_hook_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def broken(event: DeliveryEvent) -> None:
        raise RuntimeError("hook bug")

    mailer, _ = webhook_mailer(on_event=broken)
    remove = mailer.add_hooks(on_event=lambda e: seen.append(e.type))
    mailer.handle_webhook("mailgun", {}, mailgun_body("opened"), "u")
    assert seen == ["opened"]
    assert "on_event hook raised" in caplog.text
    remove()
    mailer.handle_webhook("mailgun", {}, mailgun_body("clicked"), "u")
    assert seen == ["opened"]


def test_a_refused_webhook_suppresses_nothing() -> None:
    mailer, _ = webhook_mailer()
    forged = json.loads(mailgun_body("complained"))
    forged["signature"]["signature"] = "0" * 64
    with pytest.raises(WebhookError) as info:
        mailer.handle_webhook("mailgun", {}, json.dumps(forged).encode(), "u")
    assert info.value.status == 401
    assert "ann@example.com" not in mailer.suppressions


@pytest.mark.parametrize("name", ["nobody", "backup"])
def test_unknown_drivers_and_drivers_without_webhooks_are_404(name: str) -> None:
    mailer, _ = webhook_mailer()
    with pytest.raises(WebhookError) as info:
        mailer.handle_webhook(name, {}, mailgun_body("delivered"), "u")
    assert info.value.status == 404
    assert not mailer.takes_webhooks(name)
    assert mailer.takes_webhooks("mailgun")


def test_a_recipient_that_is_not_an_address_is_not_suppressed() -> None:
    mailer, _ = webhook_mailer()
    events = mailer.handle_webhook("mailgun", {}, mailgun_body("complained", "not an address"), "u")
    assert [e.type for e in events] == ["complained"]
    assert len(mailer.suppressions) == 0


def test_dates_are_wall_clock_even_on_the_private_monotonic_store() -> None:
    mailer = mailer_with(MemoryDriver(name="m"), clock=lambda: 5.0)
    entry = mailer.suppressions.add("ann@example.com")
    assert abs(entry.created.timestamp() - time.time()) < 600


def test_events_are_kept_per_message_for_status_views() -> None:
    mailer, _ = webhook_mailer()
    message = {"headers": {"message-id": "20260601.1@mg.example.com"}}
    first = mailgun_body("delivered", message=message)
    mailer.handle_webhook("mailgun", {}, first, "u")
    mailer.handle_webhook("mailgun", {}, first, "u")  # a re-send is not logged twice
    mailer.handle_webhook("mailgun", {}, mailgun_body("opened", message=message), "u")
    logged = mailer.events_for("mailgun", "<20260601.1@mg.example.com>")
    assert [e["type"] for e in logged] == ["delivered", "opened"]
    assert "raw" not in logged[0]
    assert logged[0]["recipient"] == "ann@example.com"
    record = {"driver": "mailgun", "provider_message_id": "<20260601.1@mg.example.com>"}
    assert EventLog(mailer.store).for_record(record) == logged
    assert mailer.events_for("backup", "<20260601.1@mg.example.com>") == []


def test_the_log_keeps_the_last_events_only() -> None:
    log = EventLog(MemoryStore(), limit=3)
    for index in range(5):
        log.record(DeliveryEvent(type="opened", driver="d", recipient="a@x.example",
                                 timestamp=dt.datetime.now(dt.timezone.utc), message_id="m",
                                 event_id=str(index)))  # fmt: skip
    assert [e["event_id"] for e in log.for_message("d", "m")] == ["2", "3", "4"]


class CountingStore(MemoryStore):
    """Counts the store calls the suppression check makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def get(self, key: str) -> bytes | None:
        if key == GENERATION_KEY:
            self.calls.append("generation")
        return super().get(key)

    def get_many(self, keys: Any) -> list[bytes | None]:
        keys = list(keys)
        if keys and all(key.startswith(PREFIX) for key in keys):
            self.calls.append("get_many")
        return super().get_many(keys)

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        if prefix == PREFIX:
            self.calls.append("scan")
        return super().scan(prefix)


def test_the_check_costs_no_store_call_per_send_once_the_list_is_held() -> None:
    """Issue 10's healthy-path target: the suppression check must not put a store round
    trip in front of every send; the list is re-read only when another process changed it."""
    store = CountingStore()
    clock = FakeClock()
    mailer = mailer_with(MemoryDriver(name="m"), state=store)
    mailer.suppressions._monotonic = clock
    mailer.send(msg(cc="carl@example.com", bcc=["eve@example.com", "fay@example.com"]))
    assert store.calls == ["generation", "scan"]
    for _ in range(5):
        mailer.send(msg())
    assert store.calls == ["generation", "scan"]  # nothing per send
    clock.advance(REFRESH_INTERVAL)
    mailer.send(msg())
    assert store.calls == ["generation", "scan", "generation"]  # unchanged: no re-read

    # Another process suppresses an address: seen at the next refresh, not before.
    SuppressionList(store).add("ann@example.com", reason="bounced")
    assert mailer.send(msg(to=["ann@example.com", "bob@example.com"])).suppressed == ()
    clock.advance(REFRESH_INTERVAL)
    result = mailer.send(msg(to=["ann@example.com", "bob@example.com"]))
    assert result.suppressed == ("ann@example.com",)
    assert store.calls[-2:] == ["generation", "scan"]

    # This process's own change counts at once.
    mailer.suppressions.add("bob@example.com")
    with pytest.raises(MessageSuppressed):
        mailer.send(msg(to=["bob@example.com"]))

    off = mailer_with(MemoryDriver(name="m"), state=store, suppression=False)
    before = list(store.calls)
    off.send(msg())
    assert store.calls == before


def test_a_list_too_large_to_hold_is_asked_per_send(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailfailover.suppressions as module

    monkeypatch.setattr(module, "MAX_SNAPSHOT", 2)
    store = CountingStore()
    listing = SuppressionList(store)
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        listing.add(address)
    mailer = mailer_with(MemoryDriver(name="m"), state=store)
    result = mailer.send(msg(to=["c@example.com", "d@example.com"]))
    assert result.suppressed == ("c@example.com",)
    assert store.calls == ["generation", "scan", "get_many"]
