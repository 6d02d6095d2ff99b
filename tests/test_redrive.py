"""Lost tasks: the kept content and :func:`mailfailover.delivery.redrive` (broker-free).

A memory store on a hand-moved clock; ``publish`` is a list the sweep appends to, standing
in for the broker (tests/queue/test_workers.py runs the same sweep with real workers).
"""

from __future__ import annotations

from typing import Any

import pytest

from mailfailover import FailoverMailer, MemoryDriver
from mailfailover.delivery import DeliveryPolicy, DeliveryRecords, deliver, redrive
from mailfailover.state import MemoryStore, StoreError
from mailfailover.testing import FakeClock, simple_message

STALE = 100.0
POLICY = DeliveryPolicy(max_age=600, backoff=10, backoff_max=80, lease=30, keep=3600)


class Broker:
    """What the sweep published, as the worker would receive it."""

    def __init__(self) -> None:
        self.tasks: list[tuple[dict[str, Any], float]] = []

    def __call__(self, data: Any, enqueued_at: float) -> None:
        self.tasks.append((dict(data), enqueued_at))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
def records(clock: FakeClock) -> DeliveryRecords:
    return DeliveryRecords(MemoryStore(clock=clock), keep=POLICY.keep)


@pytest.fixture
def broker() -> Broker:
    return Broker()


def enqueued(records: DeliveryRecords, clock: FakeClock, **fields: Any) -> dict[str, Any]:
    """What Outbox.enqueue writes before the broker has the task: record, then content."""
    data = simple_message(**fields).to_dict()
    now = clock()
    records.create(data["message_id"], created=now, expires=now + POLICY.max_age)
    records.keep_content(data["message_id"], data, at=now, ttl=POLICY.max_age + POLICY.keep)
    return data


def sweep(records: DeliveryRecords, broker: Broker, **options: Any) -> int:
    return redrive(records, publish=broker, stale_after=STALE, max_age=POLICY.max_age, **options)


def test_a_queued_message_untouched_past_the_timeout_is_published_once(records, clock, broker):
    data = enqueued(records, clock)
    enqueued_at = clock()
    clock.advance(STALE - 1)
    assert sweep(records, broker) == 0, "a task that may only be slow is left to the broker"
    clock.advance(2)
    assert sweep(records, broker) == 1
    assert broker.tasks == [(data, enqueued_at)]
    record = records.get(data["message_id"])
    assert record["status"] == "queued" and record["redrives"] == 1
    assert record["redriven"] == clock()
    assert sweep(records, broker) == 0, "published again: it waits another timeout"
    clock.advance(STALE + 1)
    assert sweep(records, broker) == 1 and records.get(data["message_id"])["redrives"] == 2


def test_the_republished_task_delivers_and_the_content_goes_with_the_outcome(
    records, clock, broker
):
    data = enqueued(records, clock)
    clock.advance(STALE + 1)
    sweep(records, broker)
    driver = MemoryDriver(name="primary")
    with FailoverMailer([driver]) as mailer:
        ((task, enqueued_at),) = broker.tasks
        outcome = deliver(task, mailer=mailer, records=records, policy=POLICY, token="t1",
                          enqueued_at=enqueued_at)  # fmt: skip
    assert outcome.status == "sent" and len(driver.outbox) == 1
    assert records.content(data["message_id"]) is None
    assert records.pending() == []
    clock.advance(10 * STALE)
    assert sweep(records, broker) == 0 and len(broker.tasks) == 1


def test_a_message_being_sent_is_left_alone(records, clock, broker):
    data = enqueued(records, clock)
    clock.advance(STALE + 1)
    assert records.take_lease(data["message_id"], "someone", ttl=30)
    assert sweep(records, broker) == 0
    records.release_lease(data["message_id"], "someone")
    assert sweep(records, broker) == 1


@pytest.mark.parametrize("field", ["next_try", "inflight", "attempt"])
def test_any_recent_touch_means_the_task_is_alive(records, clock, broker, field):
    """A retry scheduled later, a send begun, an attempt logged: each moves the clock on."""
    data = enqueued(records, clock)
    clock.advance(STALE + 1)
    now = clock()
    touches = {
        "next_try": {"next_try": now + 50},
        "inflight": {"inflight": {"since": now - 1, "try": 1, "token": "x"}},
        "attempt": {"attempts": [{"outcome": "unavailable", "at": now - 1}]},
    }
    touch = touches[field]
    records.change(data["message_id"], lambda r: {**r, **touch}, ttl=None)
    assert sweep(records, broker) == 0
    clock.advance(STALE + 60)
    assert sweep(records, broker) == 1


def test_content_left_by_a_final_message_is_dropped_not_sent(records, clock, broker):
    """A worker that wrote the outcome but could not drop the content: the sweep does."""
    data = enqueued(records, clock)
    records.change(data["message_id"], lambda r: {**r, "status": "sent"}, ttl=None)
    clock.advance(STALE + 1)
    assert sweep(records, broker) == 0 and broker.tasks == []
    assert records.content(data["message_id"]) is None and records.pending() == []


def test_content_without_a_record_gets_one_and_is_published(records, clock, broker):
    """The enqueue stopped between its two writes (or the record write failed)."""
    data = simple_message().to_dict()
    kept_at = clock()
    records.keep_content(data["message_id"], data, at=kept_at, ttl=1000)
    clock.advance(STALE + 1)
    assert sweep(records, broker) == 1
    record = records.get(data["message_id"])
    assert record["status"] == "queued" and record["created"] == kept_at
    assert record["expires"] == kept_at + POLICY.max_age and record["redrives"] == 1


def test_an_index_entry_without_content_is_cleaned_up(records, clock, broker):
    data = enqueued(records, clock)
    records.store.delete(records.content_key(data["message_id"]))
    clock.advance(STALE + 1)
    assert sweep(records, broker) == 0 and records.pending() == []


def test_only_messages_kept_longer_than_the_timeout_are_read(records, clock, broker):
    """A healthy queue costs the sweep one scan: the records of young messages are not
    even read."""
    enqueued(records, clock)
    clock.advance(STALE / 2)
    young = enqueued(records, clock, subject="young")
    clock.advance(STALE / 2 + 1)
    read: list[str] = []
    real_get_many = records.store.get_many

    def counting(keys: Any) -> Any:
        read.extend(keys)
        return real_get_many(keys)

    records.store.get_many = counting  # type: ignore[method-assign]
    assert sweep(records, broker) == 1
    assert len(read) == 1 and records.key(young["message_id"]) not in read


def test_one_sweep_publishes_at_most_its_limit(records, clock, broker):
    for n in range(5):
        enqueued(records, clock, subject=f"m{n}")
    clock.advance(STALE + 1)
    assert sweep(records, broker, limit=3) == 3
    assert sweep(records, broker, limit=3) == 2
    assert len({task["message_id"] for task, _ in broker.tasks}) == 5


def test_a_record_that_moves_during_the_sweep_is_not_published(records, clock, broker):
    """Read, then a worker takes it, then the sweep's atomic mark: the mark sees the change
    and publishes nothing."""
    data = enqueued(records, clock)
    clock.advance(STALE + 1)
    store = records.store
    real_get_many = store.get_many

    def read_then_a_worker_moves_it(keys: Any) -> Any:
        found = real_get_many(keys)
        records.change(data["message_id"], lambda r: {**r, "next_try": clock() + 30}, ttl=None)
        return found

    store.get_many = read_then_a_worker_moves_it  # type: ignore[method-assign]
    assert sweep(records, broker) == 0 and broker.tasks == []
    assert "redriven" not in records.get(data["message_id"])


def test_a_failing_publish_leaves_the_message_for_a_later_sweep(records, clock):
    data = enqueued(records, clock)
    clock.advance(STALE + 1)

    def down(data: Any, enqueued_at: float) -> None:
        raise StoreError("broker down")

    with pytest.raises(StoreError):
        redrive(records, publish=down, stale_after=STALE, max_age=POLICY.max_age)
    assert records.content(data["message_id"]) == data
    broker = Broker()
    assert sweep(records, broker) == 0
    clock.advance(STALE + 1)
    assert sweep(records, broker) == 1


def test_a_dead_letter_keeps_its_content_under_dead_and_a_revive_keeps_it_again(
    records, clock, broker
):
    data = enqueued(records, clock)
    records.change(data["message_id"], lambda r: {**r, "tries": 3}, ttl=None)

    class Down(MemoryDriver):
        def send(self, message: Any) -> Any:
            from mailfailover import ProviderUnavailable

            raise ProviderUnavailable("down")

    with FailoverMailer([Down(name="down")]) as mailer:
        clock.advance(POLICY.max_age)  # past max_age: the next failure buries it
        outcome = deliver(data, mailer=mailer, records=records, policy=POLICY, token="t")
    assert outcome.status == "dead"
    assert records.content(data["message_id"]) is None and records.pending() == []
    assert records.dead_message(data["message_id"]) == data
    assert records.revive(data["message_id"], max_age=600) == data
    assert records.content(data["message_id"]) == data
    clock.advance(STALE + 1)
    assert sweep(records, broker) == 1
