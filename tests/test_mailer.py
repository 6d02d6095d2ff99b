"""FailoverMailer: ordering, health, rejection, deadlines, hooks, threads."""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from mailfailover import (
    AllProvidersFailed,
    Attempt,
    Driver,
    FailoverMailer,
    MemoryDriver,
    Message,
    MessageRejected,
    ProviderUnavailable,
    Receipt,
    SendResult,
    UnsupportedFeature,
)
from mailfailover.health import State
from mailfailover.testing import FakeClock, simple_message

Outcome = Callable[[Message], Receipt]


class ScriptedDriver(Driver):
    """Plays back a list of outcomes; the last one repeats."""

    def __init__(self, name: str, *script: object) -> None:
        super().__init__(name=name)
        self.script = list(script) or ["ok"]
        self.calls: list[Message] = []
        self.closed = 0

    def send(self, message: Message) -> Receipt:
        self.calls.append(message)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if step == "ok":
            return Receipt(driver=self.name, message_id=f"{self.name}-id")
        if step == "no-id":
            return Receipt(driver=self.name, message_id=None)
        if isinstance(step, BaseException):
            raise step
        raise AssertionError(f"bad script step {step!r}")

    def close(self) -> None:
        self.closed += 1


def down(retry_after: float | None = None, **kwargs: object) -> ProviderUnavailable:
    return ProviderUnavailable("down", retry_after=retry_after, **kwargs)  # type: ignore[arg-type]


def outcomes(result: SendResult | AllProvidersFailed | MessageRejected) -> list[tuple[str, str]]:
    return [(a.driver, a.outcome) for a in result.attempts]


# -- the acceptance scenarios ----------------------------------------------------------------


def test_unavailable_primary_fails_over_then_is_skipped_then_fails_back(
    clock: FakeClock, message: Message
) -> None:
    """[A down, B]: A then B; within the cooldown straight to B (A skipped); after it A again."""
    a = ScriptedDriver("A", down(), down(), "ok")
    b = ScriptedDriver("B")
    mailer = FailoverMailer([a, b], failure_threshold=2, cooldown=30, clock=clock)

    first = mailer.send(message)
    assert outcomes(first) == [("A", "unavailable"), ("B", "sent")]
    second = mailer.send(message)
    assert outcomes(second) == [("A", "unavailable"), ("B", "sent")]
    # threshold reached: A is cooling down
    clock.advance(29.9)
    third = mailer.send(message)
    assert outcomes(third) == [("A", "skipped"), ("B", "sent")]
    assert third.attempts[0].error is None and "cooling down" in str(third.attempts[0].reason)
    assert len(a.calls) == 2
    clock.advance(0.2)
    probe = mailer.send(message)
    assert outcomes(probe) == [("A", "sent")]
    assert probe.driver == "A" and probe.message_id == "A-id"
    assert outcomes(mailer.send(message)) == [("A", "sent")]  # primary again


def test_failed_probe_starts_a_new_cooldown(clock: FakeClock, message: Message) -> None:
    a = ScriptedDriver("A", down())
    b = ScriptedDriver("B")
    mailer = FailoverMailer([a, b], failure_threshold=1, cooldown=10, clock=clock)
    mailer.send(message)
    clock.advance(10)
    assert outcomes(mailer.send(message)) == [("A", "unavailable"), ("B", "sent")]
    clock.advance(5)
    assert outcomes(mailer.send(message)) == [("A", "skipped"), ("B", "sent")]
    clock.advance(5)
    assert outcomes(mailer.send(message))[0] == ("A", "unavailable")


def test_rejection_stops_at_once(message: Message) -> None:
    """[A rejecting, B]: B is never called; MessageRejected names A and its reason; code 2."""
    a = ScriptedDriver("A", MessageRejected("invalid recipient domain", status=400))
    b = ScriptedDriver("B")
    mailer = FailoverMailer([a, b])
    with pytest.raises(MessageRejected) as caught:
        mailer.send(message)
    assert b.calls == []
    assert caught.value.driver == "A"
    assert "invalid recipient domain" in str(caught.value)
    assert caught.value.code == 2
    assert outcomes(caught.value) == [("A", "rejected")]


def test_every_driver_unavailable_raises_with_every_attempt(message: Message) -> None:
    mailer = FailoverMailer([ScriptedDriver("A", down()), ScriptedDriver("B", down())])
    with pytest.raises(AllProvidersFailed) as caught:
        mailer.send(message)
    assert caught.value.code == 5
    assert outcomes(caught.value) == [("A", "unavailable"), ("B", "unavailable")]
    assert all(isinstance(a.error, ProviderUnavailable) for a in caught.value.attempts)


def test_all_cooling_down_still_tries_longest_cooled_first(clock: FakeClock) -> None:
    a = ScriptedDriver("A", down(), "ok")
    b = ScriptedDriver("B", down(), "ok")
    mailer = FailoverMailer([a, b], failure_threshold=1, cooldown=60, clock=clock)
    with pytest.raises(AllProvidersFailed):
        mailer.send(simple_message())  # A fails first, then B
    clock.advance(1)
    result = mailer.send(simple_message())
    # both cooling: no "skipped" noise, A (cooling longest) is tried first
    assert outcomes(result) == [("A", "sent")]


def test_cooling_drivers_are_the_last_resort_when_the_ready_ones_fail(clock: FakeClock) -> None:
    a = ScriptedDriver("A", down(), "ok")
    b = ScriptedDriver("B", "ok", down())
    mailer = FailoverMailer([a, b], failure_threshold=1, cooldown=60, clock=clock)
    assert mailer.send(simple_message()).driver == "B"  # A now cooling
    result = mailer.send(simple_message())  # B fails; A is the last resort
    assert outcomes(result) == [("A", "skipped"), ("B", "unavailable"), ("A", "sent")]


# -- health details ---------------------------------------------------------------------------


def test_retry_after_cools_down_at_once_for_that_long(clock: FakeClock) -> None:
    """A 429 with Retry-After: 120 keeps the driver out of rotation for 120 s."""
    a = ScriptedDriver("A", down(retry_after=120, status=429, reason="rate_limited"), "ok")
    b = ScriptedDriver("B")
    mailer = FailoverMailer([a, b], failure_threshold=5, cooldown=30, clock=clock)
    mailer.send(simple_message())
    clock.advance(119)
    assert outcomes(mailer.send(simple_message()))[0] == ("A", "skipped")
    state = mailer.health()[0]
    assert state.state is State.COOLING_DOWN and state.cooldown_remaining == pytest.approx(1)
    clock.advance(1)
    assert mailer.send(simple_message()).driver == "A"


def test_success_resets_the_failure_count(clock: FakeClock) -> None:
    a = ScriptedDriver("A", down(), "ok", down(), "ok")
    mailer = FailoverMailer([a, ScriptedDriver("B")], failure_threshold=2, clock=clock)
    for _ in range(4):
        mailer.send(simple_message())
    assert mailer.health()[0].state is State.HEALTHY
    assert len(a.calls) == 4


def test_rejection_does_not_count_against_health(clock: FakeClock) -> None:
    a = ScriptedDriver("A", MessageRejected("bad"))
    mailer = FailoverMailer([a], failure_threshold=1, clock=clock)
    for _ in range(3):
        with pytest.raises(MessageRejected):
            mailer.send(simple_message())
    assert mailer.health()[0].state is State.HEALTHY


def test_unsupported_feature_skips_without_touching_health(clock: FakeClock) -> None:
    a = ScriptedDriver("A", UnsupportedFeature("three tags", field="tags"))
    b = ScriptedDriver("B")
    mailer = FailoverMailer([a, b], failure_threshold=1, clock=clock)
    result = mailer.send(simple_message())
    assert outcomes(result) == [("A", "skipped"), ("B", "sent")]
    assert isinstance(result.attempts[0].error, UnsupportedFeature)
    assert result.attempts[0].error.driver == "A"
    assert mailer.health()[0].state is State.HEALTHY
    assert mailer.health()[0].consecutive_failures == 0


def test_only_unsupported_everywhere_is_all_failed() -> None:
    mailer = FailoverMailer([ScriptedDriver("A", UnsupportedFeature("no"))])
    with pytest.raises(AllProvidersFailed) as caught:
        mailer.send(simple_message())
    assert outcomes(caught.value) == [("A", "skipped")]


def test_a_driver_bug_is_treated_as_unavailable_and_logged(
    message: Message, mf_logs: pytest.LogCaptureFixture
) -> None:
    a = ScriptedDriver("A", KeyError("oops"))
    mailer = FailoverMailer([a, ScriptedDriver("B")])
    result = mailer.send(message)
    assert outcomes(result) == [("A", "unavailable"), ("B", "sent")]
    error = result.attempts[0].error
    assert isinstance(error, ProviderUnavailable) and error.reason == "bug"
    assert any("bug" in r.getMessage() and r.levelno == logging.ERROR for r in mf_logs.records)


def test_every_failed_attempt_is_logged_even_when_a_later_driver_succeeds(
    message: Message, mf_logs: pytest.LogCaptureFixture
) -> None:
    mailer = FailoverMailer(
        [ScriptedDriver("A", down()), ScriptedDriver("B", down(reason="auth")), MemoryDriver()]
    )
    mailer.send(message)
    lines = [(r.levelno, r.getMessage()) for r in mf_logs.records]
    assert (logging.WARNING, "A unavailable (server_error): down") in lines
    assert any(
        level == logging.ERROR and text.startswith("B unavailable (auth)") for level, text in lines
    )


def test_message_id_falls_back_to_the_message_own(message: Message) -> None:
    result = FailoverMailer([ScriptedDriver("A", "no-id")]).send(message)
    assert result.message_id == message.message_id


# -- strategies -------------------------------------------------------------------------------


def test_round_robin_rotates_the_starting_driver() -> None:
    drivers = [ScriptedDriver(n) for n in "ABC"]
    mailer = FailoverMailer(drivers, strategy="round_robin")
    used = [mailer.send(simple_message()).driver for _ in range(6)]
    assert used == ["A", "B", "C", "A", "B", "C"]


def test_round_robin_fails_over_to_the_next() -> None:
    mailer = FailoverMailer(
        [ScriptedDriver("A"), ScriptedDriver("B", down()), ScriptedDriver("C")],
        strategy="round_robin",
        failure_threshold=10,
    )
    mailer.send(simple_message())
    assert outcomes(mailer.send(simple_message())) == [("B", "unavailable"), ("C", "sent")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "random"},
        {"failure_threshold": 0},
        {"failure_threshold": 1.5},
        {"cooldown": -1},
        {"deadline": 0},
    ],
)
def test_bad_policy_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FailoverMailer([MemoryDriver()], **kwargs)


def test_driver_names_must_be_unique_and_the_list_non_empty() -> None:
    with pytest.raises(ValueError, match="unique"):
        FailoverMailer([MemoryDriver(name="x"), MemoryDriver(name="x")])
    with pytest.raises(ValueError):
        FailoverMailer([])


# -- deadline and hooks -----------------------------------------------------------------------


def test_deadline_stops_trying(clock: FakeClock) -> None:
    class Slow(ScriptedDriver):
        def send(self, message: Message) -> Receipt:
            clock.advance(3)
            return super().send(message)

    mailer = FailoverMailer(
        [Slow("A", down()), Slow("B", down()), ScriptedDriver("C")], deadline=5, clock=clock
    )
    with pytest.raises(AllProvidersFailed) as caught:
        mailer.send(simple_message())
    assert "deadline" in str(caught.value)
    assert outcomes(caught.value) == [("A", "unavailable"), ("B", "unavailable")]


def test_deadline_shortens_driver_timeouts(message: Message) -> None:
    from mailfailover.driver import remaining_time

    seen: list[float | None] = []

    class Peek(ScriptedDriver):
        def send(self, message: Message) -> Receipt:
            seen.append(remaining_time())
            return super().send(message)

    FailoverMailer([Peek("A")], deadline=2.5).send(message)
    FailoverMailer([Peek("B")]).send(message)
    assert seen[0] is not None and 0 < seen[0] <= 2.5
    assert seen[1] is None


def test_on_attempt_sees_every_attempt_and_its_errors_never_break_a_send(
    clock: FakeClock, mf_logs: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, str]] = []

    def hook(message: Message, attempt: Attempt) -> None:
        seen.append((attempt.driver, attempt.outcome))
        raise RuntimeError("metrics backend down")

    mailer = FailoverMailer(
        [ScriptedDriver("A", down()), ScriptedDriver("B")],
        failure_threshold=1,
        on_attempt=hook,
        clock=clock,
    )
    mailer.send(simple_message())
    mailer.send(simple_message())
    assert seen == [("A", "unavailable"), ("B", "sent"), ("A", "skipped"), ("B", "sent")]
    assert any("on_attempt" in r.getMessage() for r in mf_logs.records)


# -- send_many, threads, lifetime ---------------------------------------------------------------


def test_send_many_returns_a_result_or_error_per_message_in_order() -> None:
    good = simple_message(subject="good")
    reject = simple_message(subject="reject")

    class Picky(ScriptedDriver):
        def send(self, message: Message) -> Receipt:
            if message.subject == "reject":
                raise MessageRejected("no")
            return super().send(message)

    mailer = FailoverMailer([Picky("A")])
    results = mailer.send_many([good, reject, good, reject], workers=3)
    assert [type(r).__name__ for r in results] == [
        "SendResult", "MessageRejected", "SendResult", "MessageRejected",
    ]  # fmt: skip
    assert mailer.send_many([], workers=2) == []
    with pytest.raises(ValueError):
        mailer.send_many([good], workers=0)


def test_threads_deliver_every_message_exactly_once() -> None:
    """16 threads, 2,000 messages, one driver failing at random: none lost, none doubled."""
    flaky = MemoryDriver(name="flaky", fail_rate=0.3, seed=7)
    healthy = MemoryDriver(name="healthy")
    mailer = FailoverMailer([flaky, healthy], failure_threshold=3, cooldown=0.001)
    messages = [simple_message(message_id=f"<m{i}@example.com>") for i in range(2000)]
    results = mailer.send_many(messages, workers=16)
    assert all(isinstance(r, SendResult) for r in results)
    delivered = Counter(m.message_id for m in flaky.outbox + healthy.outbox)
    assert set(delivered) == {m.message_id for m in messages}
    assert max(delivered.values()) == 1
    by_driver = Counter(r.driver for r in results if isinstance(r, SendResult))
    assert by_driver["flaky"] == len(flaky.outbox) and by_driver["healthy"] == len(healthy.outbox)
    assert by_driver["flaky"] > 0 and by_driver["healthy"] > 0


def test_threads_with_both_drivers_flaky_account_for_every_message() -> None:
    a = MemoryDriver(name="a", fail_rate=0.5, seed=1)
    b = MemoryDriver(name="b", fail_rate=0.5, seed=2)
    mailer = FailoverMailer([a, b], failure_threshold=2, cooldown=0.0005)
    messages = [simple_message(message_id=f"<n{i}@example.com>") for i in range(1000)]
    results = mailer.send_many(messages, workers=16)
    sent_ids = [m.message_id for m in a.outbox + b.outbox]
    assert len(sent_ids) == len(set(sent_ids))
    for message, result in zip(messages, results, strict=True):
        if isinstance(result, SendResult):
            assert message.message_id in sent_ids
        else:
            assert isinstance(result, AllProvidersFailed)
            assert message.message_id not in sent_ids
            assert result.attempts


def test_no_lock_is_held_during_io() -> None:
    """Two sends through the same slow driver overlap instead of queueing on the mailer."""
    inside = threading.Barrier(2, timeout=5)

    class Meeting(ScriptedDriver):
        def send(self, message: Message) -> Receipt:
            inside.wait()  # both threads must be in send() at the same time
            return super().send(message)

    mailer = FailoverMailer([Meeting("A")])
    results = mailer.send_many([simple_message(), simple_message()], workers=2)
    assert all(isinstance(r, SendResult) for r in results)


def test_probe_is_given_to_one_send_at_a_time(clock: FakeClock) -> None:
    release = threading.Event()
    entered = threading.Event()

    class Probe(ScriptedDriver):
        def send(self, message: Message) -> Receipt:
            if len(self.calls) == 1:  # the probe after the first failure
                entered.set()
                release.wait(5)
            return super().send(message)

    a = Probe("A", down(), "ok")
    b = ScriptedDriver("B")
    mailer = FailoverMailer([a, b], failure_threshold=1, cooldown=10, clock=clock)
    mailer.send(simple_message())
    clock.advance(10)
    thread = threading.Thread(target=mailer.send, args=(simple_message(),))
    thread.start()
    assert entered.wait(5)
    other = mailer.send(simple_message())
    assert outcomes(other) == [("A", "skipped"), ("B", "sent")]
    assert other.attempts[0].reason == "probe in progress"
    release.set()
    thread.join(5)
    assert not thread.is_alive()
    assert mailer.health()[0].state is State.HEALTHY


def test_close_closes_every_driver_once_and_context_manager() -> None:
    a, b = ScriptedDriver("A"), ScriptedDriver("B")
    with FailoverMailer([a, b]) as mailer:
        mailer.send(simple_message())
    mailer.close()
    assert (a.closed, b.closed) == (1, 1)
    with pytest.raises(RuntimeError):
        mailer.send(simple_message())


def test_send_refuses_what_is_not_a_message() -> None:
    from mailfailover import InvalidMessage

    with pytest.raises(InvalidMessage):
        FailoverMailer([MemoryDriver()]).send({"sender": "a@example.com"})  # type: ignore[arg-type]


def test_health_and_results_serialise() -> None:
    mailer = FailoverMailer([ScriptedDriver("A", down()), MemoryDriver(name="B")])
    result = mailer.send(simple_message())
    data = result.to_dict()
    assert data["driver"] == "B" and data["attempts"][0]["outcome"] == "unavailable"
    assert data["attempts"][0]["reason"] == "server_error"
    assert data["attempts"][0]["ambiguous"] is False
    states = [h.to_dict() for h in mailer.health()]
    assert states[0]["consecutive_failures"] == 1 and states[1]["sent"] == 1
    assert "down" in str(states[0]["last_error"])


def test_random_failures_never_lose_the_probe(clock: FakeClock) -> None:
    """Whatever the sequence of outcomes, a driver never stays stuck in 'probing'."""
    rng = random.Random(3)
    steps: list[object] = [rng.choice(["ok", down(), KeyError("x"), UnsupportedFeature("u")])
                           for _ in range(300)]  # fmt: skip
    a = ScriptedDriver("A", *steps)
    mailer = FailoverMailer([a, MemoryDriver()], failure_threshold=1, cooldown=1, clock=clock)
    for _ in range(300):
        mailer.send(simple_message())
        clock.advance(rng.choice([0, 0.5, 1.5]))
        assert mailer.health()[0].state is not State.PROBING


def test_a_timeout_cools_the_driver_down_at_once(clock: FakeClock) -> None:
    """A timed-out provider is not tried again for the cooldown, whatever the threshold:
    each try would cost a message a whole timeout."""
    a = ScriptedDriver("A", down(reason="timeout", ambiguous=True), "ok")
    mailer = FailoverMailer([a, ScriptedDriver("B")], failure_threshold=5, cooldown=30, clock=clock)
    assert outcomes(mailer.send(simple_message())) == [("A", "unavailable"), ("B", "sent")]
    assert outcomes(mailer.send(simple_message())) == [("A", "skipped"), ("B", "sent")]
    assert mailer.health()[0].state is State.COOLING_DOWN
    clock.advance(30)
    assert mailer.send(simple_message()).driver == "A"
