"""Shared health: the breaker's record in the state store, the probe lease, late writers,
the local copy, and the transitions' logging. Multi-process behaviour: tests/state/."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import pytest

from mailfailover import (
    AllProvidersFailed,
    Driver,
    FailoverMailer,
    Message,
    ProviderUnavailable,
    Receipt,
    UnsupportedFeature,
)
from mailfailover.health import (
    HealthBoard,
    HealthRecord,
    Lease,
    State,
    Ticket,
    claim_probe,
    probe_lease,
    record_failure,
    record_success,
    release_probe,
)
from mailfailover.state import MemoryStore, StateStore
from mailfailover.testing import FakeClock, simple_message


class Scripted(Driver):
    """Plays back outcomes ("ok" or an exception to raise); the last one repeats."""

    def __init__(self, name: str, *script: object) -> None:
        super().__init__(name=name)
        self.script = list(script) or ["ok"]
        self.calls = 0

    def send(self, message: Message) -> Receipt:
        self.calls += 1
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return Receipt(driver=self.name, message_id=f"{self.name}-{self.calls}")


def down(**kwargs: Any) -> ProviderUnavailable:
    return ProviderUnavailable("down", **kwargs)


def outcomes(result: Any) -> list[tuple[str, str]]:
    return [(a.driver, a.outcome) for a in result.attempts]


class CountingStore(MemoryStore):
    """A memory store that counts the calls health makes (keys ``health:*``, ``rotation``;
    the suppression list's own look-ups are not health's)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: dict[str, int] = {}

    def _count(self, op: str, keys: Iterable[str]) -> None:
        if any(k.startswith("health:") or k == "rotation" for k in keys):
            self.calls[op] = self.calls.get(op, 0) + 1

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        keys = list(keys)
        self._count("get_many", keys)
        return super().get_many(keys)

    def update(self, key: str, fn: Any, *, ttl: float | None = None) -> Any:
        self._count("update", [key])
        return super().update(key, fn, ttl=ttl)

    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        self._count("incr", [key])
        return super().incr(key, amount, ttl=ttl)


# -- the transitions, as pure functions -------------------------------------------------------


def test_the_probe_lease_goes_to_one_claimant_and_only_its_token_frees_it() -> None:
    cooling = HealthRecord(failures=2, until=100.0, opened_at=70.0)
    assert claim_probe(cooling, 99.0, "t1", 10) == (None, "cooling")
    held, result = claim_probe(cooling, 100.0, "t1", 10)
    assert result == "won" and held is not None and held.probe == Lease("t1", 110.0)
    assert claim_probe(held, 105.0, "t2", 10) == (None, "held")
    assert release_probe(held, "t2") is None  # not the holder: nothing changes
    assert release_probe(held, "t1") == cooling
    # a crashed prober's lease expires and the next claimant takes it
    taken, result = claim_probe(held, 110.0, "t3", 10)
    assert result == "won" and taken is not None and taken.probe == Lease("t3", 120.0)
    assert release_probe(taken, "t1") is None  # the crashed one cannot free the new lease
    assert claim_probe(HealthRecord(), 0.0, "t", 1) == (None, "healthy")


def test_opened_at_and_until_never_move_backwards() -> None:
    common: dict[str, Any] = {"forced": False, "error": "timeout: x", "retry_after": None,
                              "threshold": 2, "cooldown": 30.0}  # fmt: skip
    opened, transition = record_failure(HealthRecord(), 100.0, 99.0, None, trip=True, **common)
    assert transition == "opened" and opened is not None
    assert (opened.opened_at, opened.until) == (100.0, 130.0)
    # A Retry-After of 120 from another process extends; a later ordinary failure cannot shorten.
    longer, _ = record_failure(opened, 101.0, 100.5, None, trip=False,
                               **{**common, "retry_after": 120.0})  # fmt: skip
    assert longer is not None and longer.until == 221.0 and longer.opened_at == 100.0
    again, transition = record_failure(longer, 102.0, 101.5, None, trip=True, **common)
    assert again is not None and again.until == 221.0 and again.opened_at == 100.0
    assert transition is None  # already cooling: no second "opened"


def test_a_late_success_does_not_close_a_breaker_opened_after_it_began() -> None:
    opened = HealthRecord(failures=1, until=130.0, opened_at=100.0)
    assert record_success(opened, 101.0, started=99.0, token=None) == (None, None)
    closed, transition = record_success(opened, 131.0, started=130.5, token=None)
    assert transition == "recovered" and closed is not None and closed.until is None
    assert closed.closed_at == 131.0


def test_a_late_failure_does_not_count_after_a_recovery() -> None:
    recovered = HealthRecord(closed_at=200.0)
    common: dict[str, Any] = {"forced": False, "error": "timeout: x", "retry_after": None,
                              "threshold": 1, "cooldown": 30.0}  # fmt: skip
    assert record_failure(recovered, 201.0, 199.0, None, trip=True, **common) == (None, None)
    counted, transition = record_failure(recovered, 201.0, 200.0, None, trip=True, **common)
    assert transition == "opened" and counted is not None and counted.failures == 1


def test_records_round_trip_and_garbage_is_refused() -> None:
    record = HealthRecord(3, 10.5, 1.0, None, "timeout: x", 120.0, Lease("tok", 12.0), "abc")
    assert HealthRecord.from_bytes(record.to_bytes()) == record
    assert HealthRecord.from_bytes(None) == HealthRecord()
    for garbage in (b"\xff", b"[]", b'{"until": "soon"}', b'{"until": NaN}', b'{"probe": {}}'):
        with pytest.raises(ValueError):
            HealthRecord.from_bytes(garbage)


def test_probe_lease_is_the_budget_or_the_drivers_timeouts_plus_a_margin() -> None:
    assert probe_lease(2.0, {"timeout": 10}) == 7.0
    assert probe_lease(None, {"timeout": 10.0, "connect_timeout": 5.0}) == 20.0
    assert probe_lease(None, {}) == 65.0
    assert probe_lease(None, None) == 65.0


# -- the probe with threads (issue 9, item 5) -------------------------------------------------


def test_only_one_of_many_threads_gets_the_probe(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    board = HealthBoard(store, ["A"], failure_threshold=1, cooldown=10, clock=clock)
    board.failed(Ticket("A", clock()), "timeout: x", None, trip=True)
    clock.advance(10)
    barrier = threading.Barrier(16)
    tickets: list[Ticket | str] = []

    def claim() -> None:
        barrier.wait(timeout=10)
        tickets.append(board.acquire("A", lease=30))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    won = [t for t in tickets if isinstance(t, Ticket)]
    assert len(tickets) == 16 and len(won) == 1 and won[0].token is not None
    assert {t for t in tickets if isinstance(t, str)} == {"probe in progress"}


def test_a_skipped_last_resort_send_cannot_free_another_threads_probe(clock: FakeClock) -> None:
    """The bug: while thread 1 probes A, thread 2 finds B down, falls back to A as a last
    resort, A cannot carry thread 2's message (UnsupportedFeature) — and the old breaker's
    release() freed thread 1's probe, so a third send probed A at the same time."""
    inside, leave = threading.Event(), threading.Event()

    class A(Driver):
        calls = 0

        def send(self, message: Message) -> Receipt:
            A.calls += 1
            if message.subject == "probe":
                inside.set()
                assert leave.wait(10)
                return Receipt(driver=self.name, message_id="probe")
            if message.subject == "unsupported":
                raise UnsupportedFeature("no", field="subject")
            raise down()

    a = A(name="A")
    b = Scripted("B", down(), down(), "ok")
    mailer = FailoverMailer([a, b], failure_threshold=1, cooldown=10, clock=clock)
    with pytest.raises(AllProvidersFailed):
        mailer.send(simple_message(subject="first"))  # A and B fail: both cooling
    clock.advance(10)
    prober = threading.Thread(target=mailer.send, args=(simple_message(subject="probe"),))
    prober.start()
    assert inside.wait(10)
    calls_before = A.calls
    with pytest.raises(AllProvidersFailed) as caught:
        mailer.send(simple_message(subject="unsupported"))
    assert outcomes(caught.value) == [("A", "skipped"), ("B", "unavailable"), ("A", "skipped")]
    assert A.calls == calls_before + 1  # A was tried as the last resort and skipped itself
    assert mailer.health()[0].state is State.PROBING  # the probe is still thread 1's
    leave.set()
    prober.join(10)
    assert not prober.is_alive()
    assert mailer.health()[0].state is State.HEALTHY


def test_an_interrupted_probe_gives_its_lease_back(clock: FakeClock) -> None:
    a = Scripted("A", down(), KeyboardInterrupt(), "ok")
    mailer = FailoverMailer([a, Scripted("B")], failure_threshold=1, cooldown=10, clock=clock)
    mailer.send(simple_message())
    clock.advance(10)
    with pytest.raises(KeyboardInterrupt):
        mailer.send(simple_message())
    assert mailer.health()[0].state is State.COOLING_DOWN  # not stuck "probing"
    assert mailer.send(simple_message()).driver == "A"  # the next send probes at once


def test_a_crashed_probers_lease_expires(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    board = HealthBoard(store, ["A"], failure_threshold=1, cooldown=10, clock=clock)
    board.failed(Ticket("A", clock()), "timeout: x", None, trip=True)
    clock.advance(10)
    crashed = board.acquire("A", lease=15)
    assert isinstance(crashed, Ticket) and crashed.token is not None
    # another process (its own board on the same store) sees the probe held...
    other = HealthBoard(store, ["A"], failure_threshold=1, cooldown=10, clock=clock)
    assert other.acquire("A", lease=15) == "probe in progress"
    clock.advance(15)  # ...until the lease runs out
    taken = other.acquire("A", lease=15)
    assert isinstance(taken, Ticket) and taken.token not in (None, crashed.token)
    board.release(crashed)  # the old holder wakes up: it frees nothing
    assert HealthRecord.from_bytes(store.get("health:A")).probe is not None


# -- shared between mailers (processes) on one store ------------------------------------------


def two_mailers(clock: FakeClock, store: StateStore, **kwargs: Any) -> tuple[Any, ...]:
    a1, b1 = Scripted("A", down(**kwargs)), Scripted("B")
    a2, b2 = Scripted("A", "ok"), Scripted("B")
    one = FailoverMailer([a1, b1], failure_threshold=1, cooldown=30, clock=clock, state=store)
    two = FailoverMailer([a2, b2], failure_threshold=1, cooldown=30, clock=clock, state=store)
    return one, two, a2


def test_a_driver_opened_by_one_mailer_is_skipped_by_another_within_the_refresh(
    clock: FakeClock,
) -> None:
    store = MemoryStore(clock=clock)
    one, two, a2 = two_mailers(clock, store)
    assert two.send(simple_message()).driver == "A"  # two has read the records: healthy
    assert outcomes(one.send(simple_message())) == [("A", "unavailable"), ("B", "sent")]
    clock.advance(0.5)  # two's copy is refreshed at most this old
    assert outcomes(two.send(simple_message())) == [("A", "skipped"), ("B", "sent")]
    assert a2.calls == 1
    assert two.health()[0].state is State.COOLING_DOWN


def test_retry_after_seen_by_one_keeps_every_mailer_off_the_driver(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    one, two, a2 = two_mailers(clock, store, retry_after=120, reason="rate_limited", status=429)
    one.send(simple_message())
    for _ in range(5):
        clock.advance(23)  # 115 s in all: longer than the cooldown, shorter than Retry-After
        assert outcomes(two.send(simple_message()))[0] == ("A", "skipped")
    assert a2.calls == 0
    clock.advance(5)
    assert two.send(simple_message()).driver == "A"  # the probe, by whoever came first


def test_starting_reloading_or_closing_a_mailer_never_resets_shared_state(
    clock: FakeClock,
) -> None:
    store = MemoryStore(clock=clock)
    one, _, _ = two_mailers(clock, store)
    one.send(simple_message())
    before = store.get("health:A")
    one.close()
    late = FailoverMailer([Scripted("A"), Scripted("B")], clock=clock, state=store)
    assert late.health()[0].state is State.COOLING_DOWN
    assert outcomes(late.send(simple_message()))[0] == ("A", "skipped")
    late.close()
    assert store.get("health:A") == before


def test_round_robin_position_is_shared(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    mailers = [
        FailoverMailer([Scripted("A"), Scripted("B")], strategy="round_robin", state=store)
        for _ in range(2)
    ]
    used = [m.send(simple_message()).driver for m in mailers for _ in range(16)]
    assert used.count("A") == used.count("B") == 16
    # positions come in blocks, so the two do not both start at A
    assert mailers[1].send(simple_message()).driver == "A"
    assert int(store.get("rotation") or 0) == 48


def test_transitions_are_logged_once_for_the_whole_fleet(
    clock: FakeClock, mf_logs: pytest.LogCaptureFixture
) -> None:
    """Two processes (boards) see A time out; one warning. One probe recovers it; one info."""
    store = MemoryStore(clock=clock)
    boards = [HealthBoard(store, ["A"], failure_threshold=2, cooldown=30, clock=clock)
              for _ in range(2)]  # fmt: skip
    for board in boards:
        board.failed(Ticket("A", clock()), "timeout: down", None, trip=True)
    clock.advance(30)
    probe = boards[1].acquire("A", lease=10)
    assert isinstance(probe, Ticket) and probe.token is not None
    boards[1].succeeded(probe)
    clock.advance(0.5)
    boards[0].succeeded(Ticket("A", clock()))
    lines = [(r.levelno, r.getMessage()) for r in mf_logs.records]
    assert lines == [
        (logging.WARNING, "A is cooling down for 30 s: timeout: down"),
        (logging.INFO, "A recovered: back in rotation"),
    ]


def test_the_healthy_path_makes_no_store_round_trip_per_send(clock: FakeClock) -> None:
    store = CountingStore(clock=clock)
    # Health only: the suppression check is its own batched read per send (tests/events).
    mailer = FailoverMailer(
        [Scripted("A"), Scripted("B")], clock=clock, state=store, suppression=False
    )
    for _ in range(100):
        mailer.send(simple_message())
    assert store.calls == {"get_many": 1}
    clock.advance(0.5)
    mailer.send(simple_message())
    assert store.calls == {"get_many": 2}


def test_a_failure_and_a_recovery_are_one_write_each(clock: FakeClock) -> None:
    store = CountingStore(clock=clock)
    a = Scripted("A", down(reason="timeout"), "ok")
    mailer = FailoverMailer(
        [a, Scripted("B")], cooldown=10, clock=clock, state=store, suppression=False
    )
    mailer.send(simple_message())
    assert store.calls == {"get_many": 1, "update": 1}
    for _ in range(10):
        mailer.send(simple_message())  # skipped from the local copy
    assert store.calls == {"get_many": 1, "update": 1}
    clock.advance(10)
    mailer.send(simple_message())  # claim the probe, then close the breaker
    assert store.calls == {"get_many": 2, "update": 3}


def test_an_unreadable_record_counts_as_healthy_with_one_warning(
    clock: FakeClock, mf_logs: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore(clock=clock)
    store.set("health:A", b"not json")
    mailer = FailoverMailer([Scripted("A", down(), "ok"), Scripted("B")], state=store)
    assert mailer.send(simple_message()).driver == "B"
    assert mailer.health()[0].consecutive_failures == 1  # rewritten as a valid record
    warnings = [r for r in mf_logs.records if "unreadable record" in r.getMessage()]
    assert len(warnings) == 1


def test_state_accepts_a_url(tmp_path: Any) -> None:
    mailer = FailoverMailer([Scripted("A")], state=f"sqlite:///{tmp_path}/state.db")
    try:
        assert mailer.store.url.startswith("sqlite:")
        assert mailer.send(simple_message()).driver == "A"
    finally:
        mailer.close()


def test_a_send_waits_for_the_first_read_instead_of_assuming_healthy(clock: FakeClock) -> None:
    """While one thread's first read of the records is on its way, another thread's send
    must not take the empty copy for "every driver is healthy" (found with four gunicorn
    workers on Redis: the first sends in a fresh worker's other threads hit a dead primary)."""
    store = CountingStore(clock=clock)
    other = HealthBoard(store, ["A"], failure_threshold=1, cooldown=60, clock=clock)
    other.failed(Ticket("A", clock()), "timeout: down", None, trip=True)
    reading, release = threading.Event(), threading.Event()

    class SlowStore(CountingStore):
        def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
            reading.set()
            assert release.wait(10)
            return store.get_many(keys)

        def update(self, key: str, fn: Any, *, ttl: float | None = None) -> Any:
            return store.update(key, fn, ttl=ttl)

    a = Scripted("A")
    mailer = FailoverMailer([a, Scripted("B")], clock=clock, state=SlowStore(clock=clock))
    first = threading.Thread(target=mailer.send, args=(simple_message(),))
    first.start()
    assert reading.wait(10)
    results: list[Any] = []
    second = threading.Thread(target=lambda: results.append(mailer.send(simple_message())))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the read, not sending
    release.set()
    for thread in (first, second):
        thread.join(10)
    assert outcomes(results[0]) == [("A", "skipped"), ("B", "sent")]
    assert a.calls == 0
