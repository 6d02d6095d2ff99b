"""The broker-free delivery try (``mailfailover.delivery.deliver``): records, lease, retries.

No broker and no sleeping: a memory store and the mailer run on fake clocks moved by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from mailfailover import FailoverMailer, MemoryDriver, Message, ProviderUnavailable
from mailfailover.delivery import (
    DeliveryPolicy,
    DeliveryRecords,
    Outcome,
    _Held,
    _settle,
    deliver,
)
from mailfailover.driver import Driver, Receipt
from mailfailover.errors import MessageSuppressed
from mailfailover.state import MemoryStore, StoreError
from mailfailover.testing import FakeClock, simple_message

POLICY = DeliveryPolicy(max_age=600, backoff=10, backoff_max=80, lease=30, keep=3600)


class Clocks:
    """One hand-moved time for the store (wall seconds) and the mailer (monotonic)."""

    def __init__(self) -> None:
        self.wall = FakeClock(1_800_000_000.0)
        self.mono = FakeClock(1000.0)

    def advance(self, seconds: float) -> None:
        self.wall.advance(seconds)
        self.mono.advance(seconds)


class Ambiguous(Driver):
    """Times out after the request was written, every time."""

    def __init__(self, *, name: str = "flaky") -> None:
        super().__init__(name=name)
        self.calls = 0

    def send(self, message: Message) -> Receipt:
        self.calls += 1
        raise ProviderUnavailable("read timed out", reason="timeout", ambiguous=True)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def records(clocks: Clocks) -> DeliveryRecords:
    return DeliveryRecords(MemoryStore(clock=clocks.wall), keep=POLICY.keep)


@pytest.fixture
def primary() -> MemoryDriver:
    return MemoryDriver(name="primary")


@pytest.fixture
def mailer(primary: MemoryDriver, clocks: Clocks) -> Iterator[FailoverMailer]:
    with FailoverMailer([primary], cooldown=5, clock=clocks.mono) as made:
        yield made


def run(
    data: dict[str, Any],
    mailer: FailoverMailer,
    records: DeliveryRecords,
    policy: DeliveryPolicy = POLICY,
    token: str = "t1",
    **options: Any,
) -> Outcome:
    options.setdefault("rng", lambda: 0.0)
    return deliver(data, mailer=mailer, records=records, policy=policy, token=token, **options)


def test_sent_once_then_a_redelivered_task_does_nothing(mailer, records, primary):
    data = simple_message().to_dict()
    assert run(data, mailer, records) == Outcome("done", "sent", tried=True)
    assert run(data, mailer, records, token="t2") == Outcome("done", "sent")
    assert primary.calls == 1
    view = records.status(data["message_id"])
    assert view is not None
    assert view["status"] == "sent"
    assert view["driver"] == "primary"
    assert view["tries"] == 1
    assert [a["outcome"] for a in view["attempts"]] == ["sent"]
    assert view["sending"] is False


def test_the_lease_is_given_back_after_a_send(mailer, records):
    data = simple_message().to_dict()
    run(data, mailer, records)
    assert records.store.get(records.lease_key(data["message_id"])) is None


def test_rejected_is_final_and_never_retried(records, clocks):
    rejecting = MemoryDriver(name="strict", fail="reject")
    with FailoverMailer([rejecting], clock=clocks.mono) as mailer:
        data = simple_message().to_dict()
        assert run(data, mailer, records) == Outcome("done", "rejected", tried=True)
        assert run(data, mailer, records) == Outcome("done", "rejected")
    assert rejecting.calls == 1
    view = records.status(data["message_id"])
    assert view is not None
    assert view["status"] == "rejected"
    assert view["attempts"][0]["outcome"] == "rejected"
    assert "configured to reject" in view["error"]


def test_all_failed_retries_after_backoff_and_an_early_copy_waits(mailer, records, primary):
    primary.settings["fail"] = "unavailable"
    data = simple_message().to_dict()
    outcome = run(data, mailer, records)
    # try 1: backoff 10 s, jittered into [5, 10]; rng 0 gives 5; the cooldown (5 s) is not
    # open after one failure (threshold 2), so the backoff decides.
    assert outcome == Outcome("retry", "queued", 5.0, tried=True)
    record = records.get(data["message_id"])
    assert record is not None
    assert record["tries"] == 1
    assert record["next_try"] == records.store.now() + 5.0
    # A copy that arrives early (broker redelivery) waits for the rest, without sending.
    early = run(data, mailer, records, token="t2")
    assert early == Outcome("retry", "queued", 5.0)
    assert primary.calls == 1


def test_backoff_doubles_up_to_its_maximum_with_jitter_in_the_upper_half():
    policy = DeliveryPolicy(backoff=10, backoff_max=80)
    assert [policy.delay(n, lambda: 0.0) for n in (1, 2, 3, 4, 5, 9)] == [5, 10, 20, 40, 40, 40]
    assert [policy.delay(n, lambda: 1.0) for n in (1, 2, 3, 4, 5, 9)] == [10, 20, 40, 80, 80, 80]


def test_the_wait_is_never_shorter_than_the_soonest_cooldown(records, clocks):
    primary = MemoryDriver(name="primary", fail="unavailable")
    backup = MemoryDriver(name="backup", fail="unavailable")
    with FailoverMailer([primary, backup], failure_threshold=1, cooldown=300,
                        clock=clocks.mono) as mailer:  # fmt: skip
        data = simple_message().to_dict()
        outcome = run(data, mailer, records)
        assert outcome.action == "retry"
        # The backoff alone would be 5 s; both drivers cool down for 300 s. The countdown is
        # capped at backoff_max (80) but the record holds the real time, so copies that
        # wake up at 80 s go back to sleep without sending.
        record = records.get(data["message_id"])
        assert record is not None
        assert record["next_try"] - records.store.now() == pytest.approx(300.0)
        assert outcome.countdown == 80.0
        clocks.advance(80)
        assert run(data, mailer, records, token="t2") == Outcome("retry", "queued", 80.0)
        assert primary.calls == backup.calls == 1
        clocks.advance(220)
        backup.settings["fail"] = None
        assert run(data, mailer, records, token="t3").status == "sent"


def test_dead_after_max_age_with_every_attempt_kept(mailer, records, primary, clocks, mf_logs):
    primary.settings["fail"] = "unavailable"
    data = simple_message().to_dict()
    buried: list[tuple[str, dict[str, Any]]] = []
    outcomes = []
    for token in range(20):
        outcome = run(data, mailer, records, token=str(token),
                      on_dead=lambda mid, rec: buried.append((mid, rec)))  # fmt: skip
        outcomes.append(outcome)
        if outcome.action == "done":
            break
        clocks.advance(outcome.countdown)
    assert outcomes[-1] == Outcome("done", "dead", tried=True)
    # waits 5, 10, 20, 40, 40, ... (rng 0): tries at 0, 5, 15, 35, 75, ... 555, 595; the
    # next wait would end past 600 s.
    tries = len(outcomes)
    assert primary.calls == tries
    view = records.status(data["message_id"])
    assert view is not None
    assert view["status"] == "dead"
    assert [a["try"] for a in view["attempts"]] == list(range(1, tries + 1))
    assert buried and buried[0][0] == data["message_id"]
    assert buried[0][1]["status"] == "dead"
    errors = [r for r in mf_logs.records if r.levelno == logging.ERROR]
    assert any(data["message_id"] in r.getMessage() and "dead" in r.getMessage() for r in errors)
    assert records.dead() == [(data["message_id"], records.get(data["message_id"]))]
    assert records.dead_message(data["message_id"]) == data


def test_a_dead_letter_is_revived_with_its_attempts_and_then_sent(mailer, records, primary,
                                                                   clocks):  # fmt: skip
    primary.settings["fail"] = "unavailable"
    data = simple_message().to_dict()
    short = DeliveryPolicy(max_age=1, backoff=10, backoff_max=10, lease=30)
    assert run(data, mailer, records, short).status == "dead"
    assert records.revive(data["message_id"], max_age=600) == data
    assert records.dead() == []
    assert records.revive(data["message_id"], max_age=600) is None  # not dead any more
    primary.settings["fail"] = None
    clocks.advance(10)  # past the breaker's cooldown too
    assert run(data, mailer, records, token="t2").status == "sent"
    view = records.status(data["message_id"])
    assert view is not None
    assert [a["outcome"] for a in view["attempts"]] == ["unavailable", "sent"]


def test_a_lease_held_elsewhere_means_wait_without_sending(mailer, records, primary):
    data = simple_message().to_dict()
    assert records.take_lease(data["message_id"], "other-worker", 30)
    assert run(data, mailer, records) == Outcome("retry", "queued", POLICY.lease)
    assert primary.calls == 0


def _crashed_mid_send(records: DeliveryRecords, data: dict[str, Any]) -> None:
    """Leave what a worker killed during ``mailer.send`` leaves: an inflight mark, and a
    lease that has since expired."""
    now = records.store.now()
    records.create(data["message_id"], created=now, expires=now + 600)
    records.change(data["message_id"], lambda r: {**r, "inflight": {"since": now, "try": 1}},
                   ttl=None)  # fmt: skip


def test_an_interrupted_send_is_ambiguous_and_dead_by_default(mailer, records, primary):
    data = simple_message().to_dict()
    _crashed_mid_send(records, data)
    assert run(data, mailer, records) == Outcome("done", "dead", tried=True)
    assert primary.calls == 0
    view = records.status(data["message_id"])
    assert view is not None
    assert view["ambiguous"] is True
    assert view["attempts"][-1]["outcome"] == "interrupted"


def test_an_interrupted_send_is_sent_again_when_the_operator_chose_retry(mailer, records,
                                                                          primary):  # fmt: skip
    data = simple_message().to_dict()
    _crashed_mid_send(records, data)
    policy = DeliveryPolicy(lease=30, on_ambiguous="retry")
    assert run(data, mailer, records, policy).status == "sent"
    assert primary.calls == 1
    view = records.status(data["message_id"])
    assert view is not None
    assert [a["outcome"] for a in view["attempts"]] == ["interrupted", "sent"]


def test_a_timeout_after_the_request_was_written_is_dead_by_default(records, clocks):
    flaky = Ambiguous()
    with FailoverMailer([flaky], clock=clocks.mono) as mailer:
        data = simple_message().to_dict()
        assert run(data, mailer, records).status == "dead"
        assert run(data, mailer, records, token="t2").status == "dead"
    assert flaky.calls == 1
    view = records.status(data["message_id"])
    assert view is not None
    assert view["ambiguous"] is True
    assert view["error"].startswith("ambiguous: ")


def test_a_timeout_is_retried_when_the_operator_chose_retry(records, clocks):
    flaky = Ambiguous()
    with FailoverMailer([flaky], clock=clocks.mono) as mailer:
        policy = DeliveryPolicy(lease=30, on_ambiguous="retry", backoff=1, backoff_max=1)
        outcome = run(simple_message().to_dict(), mailer, records, policy)
    assert outcome.action == "retry"


class DownStore(MemoryStore):
    """A store whose server went away."""

    def get(self, key: str) -> bytes | None:
        raise StoreError("redis state store: ConnectionError")

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        raise StoreError("redis state store: ConnectionError")


def test_a_store_that_is_down_stops_the_try_before_anything_is_sent(mailer, primary):
    with pytest.raises(StoreError):
        run(simple_message().to_dict(), mailer, DeliveryRecords(DownStore()))
    assert primary.calls == 0


def test_a_sent_record_is_never_overwritten_by_a_try_whose_lease_ran_out(mailer, records):
    """A try that overran its lease (another worker may have taken over) writes atomically,
    and a sent record stays sent."""
    data = simple_message().to_dict()
    run(data, mailer, records)
    stale = _Held(records, data["message_id"], "slow", lease=30)
    stale.taken -= 30  # its lease ran out long ago
    stale.record = {"status": "queued", "attempts": []}
    _settle(stale, "rejected", 2, 0.0, 60, attempts=())
    record = records.get(data["message_id"])
    assert record is not None
    assert record["status"] == "sent"


def test_an_unreadable_task_is_dropped_with_an_error_line(mailer, records, mf_logs):
    assert run({"sender": "nobody"}, mailer, records) == Outcome("done", "rejected")
    assert any(r.levelno == logging.ERROR for r in mf_logs.records)


def test_status_of_an_unknown_message_is_none_and_events_come_from_the_hook(mailer, records):
    assert records.status("<nope@example.com>") is None
    data = simple_message().to_dict()
    run(data, mailer, records)
    view = records.status(data["message_id"], events=lambda rec: [{"type": "delivered"}])
    assert view is not None
    assert view["events"] == [{"type": "delivered"}]


class Suppressing(Driver):
    """Stands in for the mailer's suppression check: every recipient is suppressed."""

    def send(self, message: Message) -> Receipt:
        raise MessageSuppressed(list(message.recipients()))


def test_every_recipient_suppressed_is_final_as_suppressed(records, clocks):
    with FailoverMailer([Suppressing(name="s")], clock=clocks.mono) as mailer:
        data = simple_message().to_dict()
        assert run(data, mailer, records) == Outcome("done", "suppressed", tried=True)
        assert run(data, mailer, records).status == "suppressed"
