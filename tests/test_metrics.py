"""mailfailover.metrics: the contract's names and labels, fed from the mailer's own hooks."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest

from mailfailover import (
    Attempt,
    Driver,
    DriverPolicy,
    FailoverMailer,
    Message,
    MessageRejected,
    ProviderUnavailable,
    Rate,
    Receipt,
    UnsupportedFeature,
)
from mailfailover.errors import AllProvidersFailed
from mailfailover.metrics import Metrics, attempt_reason, instrument
from mailfailover.testing import FakeClock, simple_message


class Scripted(Driver):
    """Plays back outcomes (the last one repeats); ``"ok"`` sends."""

    def __init__(self, name: str, *script: object, clock: FakeClock | None = None) -> None:
        super().__init__(name=name)
        self.script = list(script) or ["ok"]
        self.clock = clock

    def send(self, message: Message) -> Receipt:
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if self.clock is not None:
            self.clock.advance(0.2)
        if isinstance(step, BaseException):
            raise step
        return Receipt(driver=self.name, message_id="id")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_attempts_messages_and_failovers_follow_a_failover(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    a = Scripted("A", ProviderUnavailable("down", reason="timeout"), clock=clock)
    b = Scripted("B", clock=clock)
    mailer = instrument(FailoverMailer([a, b], cooldown=30, clock=clock), registry=registry)

    mailer.send(simple_message())  # A times out (trips at once), B sends
    mailer.send(simple_message())  # A cooling down: skipped, B sends

    attempts = "mailfailover_attempts_total"
    assert value(registry, attempts, driver="A", outcome="unavailable", reason="timeout") == 1
    assert value(registry, attempts, driver="A", outcome="skipped", reason="cooling_down") == 1
    assert value(registry, attempts, driver="B", outcome="sent", reason="none") == 2
    assert value(registry, "mailfailover_messages_total", outcome="sent") == 2
    # why the first driver did not deliver: it timed out, then it was cooling down
    failovers = "mailfailover_failovers_total"
    assert value(registry, failovers, driver="B", reason="timeout") == 1
    assert value(registry, failovers, driver="B", reason="cooling_down") == 1
    assert value(registry, failovers, driver="A", reason="timeout") is None
    # the histogram saw the three attempts that reached a driver, not the skipped one
    assert value(registry, "mailfailover_send_seconds_count", driver="A") == 1
    assert value(registry, "mailfailover_send_seconds_count", driver="B") == 2
    assert value(registry, "mailfailover_send_seconds_sum", driver="B") == pytest.approx(0.4)
    assert value(registry, "mailfailover_send_seconds_bucket", driver="B", le="0.1") == 0
    assert value(registry, "mailfailover_send_seconds_bucket", driver="B", le="0.25") == 2


def test_driver_state_is_read_from_health_at_scrape(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    a = Scripted("A", ProviderUnavailable("down", reason="timeout"), "ok")
    mailer = instrument(
        FailoverMailer([a, Scripted("B")], cooldown=30, clock=clock), registry=registry
    )
    assert value(registry, "mailfailover_driver_state", driver="A") == 0
    mailer.send(simple_message())
    assert value(registry, "mailfailover_driver_state", driver="A") == 2
    assert value(registry, "mailfailover_driver_state", driver="B") == 0
    clock.advance(31)  # the cooldown is over: the next send probes A and it is healthy again
    mailer.send(simple_message())
    assert value(registry, "mailfailover_driver_state", driver="A") == 0


def test_driver_state_shows_probing(registry: CollectorRegistry, clock: FakeClock) -> None:
    """While the probe after a cooldown is in flight the driver's state is 1."""
    seen: list[float | None] = []

    class Probe(Driver):
        failed = False

        def send(self, message: Message) -> Receipt:
            if not self.failed:
                self.failed = True
                raise ProviderUnavailable("down", reason="timeout")
            seen.append(value(registry, "mailfailover_driver_state", driver="A"))
            return Receipt(driver=self.name, message_id="id")

    mailer = FailoverMailer([Probe(name="A"), Scripted("B")], cooldown=30, clock=clock)
    instrument(mailer, registry=registry)
    mailer.send(simple_message())
    clock.advance(31)
    mailer.send(simple_message())
    assert seen == [1]
    assert value(registry, "mailfailover_driver_state", driver="A") == 0


def test_rejected_and_failed_messages(registry: CollectorRegistry, clock: FakeClock) -> None:
    rejecting = FailoverMailer([Scripted("R", MessageRejected("bad recipient"))], clock=clock)
    failing = FailoverMailer(
        [Scripted("F", ProviderUnavailable("down", reason="connection"))], clock=clock
    )
    metrics = Metrics(registry)
    metrics.instrument(rejecting)
    metrics.instrument(failing)
    with pytest.raises(MessageRejected):
        rejecting.send(simple_message())
    with pytest.raises(AllProvidersFailed):
        failing.send(simple_message())
    assert value(registry, "mailfailover_messages_total", outcome="rejected") == 1
    assert value(registry, "mailfailover_messages_total", outcome="failed") == 1
    assert value(registry, "mailfailover_messages_total", outcome="sent") is None
    attempts = "mailfailover_attempts_total"
    assert value(registry, attempts, driver="R", outcome="rejected", reason="none") == 1
    assert value(registry, attempts, driver="F", outcome="unavailable", reason="connection") == 1
    # both mailers' drivers are in the state gauge
    assert value(registry, "mailfailover_driver_state", driver="R") == 0
    assert value(registry, "mailfailover_driver_state", driver="F") == 0


def test_unsupported_is_a_skip_with_its_reason(registry: CollectorRegistry) -> None:
    mailer = FailoverMailer([Scripted("A", UnsupportedFeature("too many tags")), Scripted("B")])
    instrument(mailer, registry=registry)
    mailer.send(simple_message())
    attempts = "mailfailover_attempts_total"
    assert value(registry, attempts, driver="A", outcome="skipped", reason="unsupported") == 1
    assert value(registry, "mailfailover_failovers_total", driver="B", reason="unsupported") == 1


def test_a_spill_over_the_rate_is_a_failover_with_reason_over_rate(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    """A message sent on to the next driver because the first was over its ``rate`` counts in
    failovers_total, and its reason says so (not the provider's ``rate_limited``)."""
    mailer = FailoverMailer(
        [Scripted("A"), Scripted("B")], clock=clock, sleep=clock.advance,
        policies={"A": DriverPolicy(rate=Rate.parse("1/s"))},
    )  # fmt: skip
    instrument(mailer, registry=registry)
    assert [mailer.send(simple_message()).driver for _ in range(3)] == ["A", "B", "B"]
    attempts, failovers = "mailfailover_attempts_total", "mailfailover_failovers_total"
    assert value(registry, attempts, driver="A", outcome="skipped", reason="over_rate") == 2
    assert value(registry, failovers, driver="B", reason="over_rate") == 2
    assert value(registry, failovers, driver="B", reason="rate_limited") is None
    assert value(registry, "mailfailover_messages_total", outcome="sent") == 3
    assert mailer.health()[0].failed == 0  # a spill is no failure of A


def test_a_slow_send_is_delivered_but_counted_failed(
    registry: CollectorRegistry, clock: FakeClock
) -> None:
    """A send slower than ``slow_after`` is a sent message, an attempt labelled ``slow``,
    and a failure in the driver's per-process counters (``health().failed``, what /health
    and the status page show), never a success."""
    slow, fast = Scripted("A", clock=clock), Scripted("B", clock=clock)  # each send: 0.2 s
    mailer = FailoverMailer(
        [slow, fast], clock=clock, failure_threshold=5,
        policies={"A": DriverPolicy(slow_after=0.1)},
    )  # fmt: skip
    instrument(mailer, registry=registry)
    results = [mailer.send(simple_message()) for _ in range(2)]
    assert [(r.driver, r.attempts[0].reason) for r in results] == [("A", "slow"), ("A", "slow")]
    health = mailer.health()[0]
    assert (health.sent, health.failed) == (0, 2)
    attempts = "mailfailover_attempts_total"
    assert value(registry, attempts, driver="A", outcome="sent", reason="slow") == 2
    assert value(registry, attempts, driver="A", outcome="sent", reason="none") is None
    assert value(registry, "mailfailover_messages_total", outcome="sent") == 2
    assert value(registry, "mailfailover_send_seconds_count", driver="A") == 2


def test_label_values_are_bounded() -> None:
    """Unknown reasons and outcomes become 'other'; no label carries free text."""
    weird = ProviderUnavailable("x")
    # The constructor refuses reasons outside errors.REASONS; a plugin could still set one.
    weird.reason = "weird"  # type: ignore[assignment]
    assert attempt_reason(Attempt("A", "unavailable", weird)) == "other"
    assert attempt_reason(Attempt("A", "skipped", reason="cooling down (3.0 s left)")) == (
        "cooling_down"
    )
    assert attempt_reason(Attempt("A", "skipped", reason="probe in progress")) == "probing"
    assert attempt_reason(Attempt("A", "skipped", reason="ann@example.com")) == "other"
    assert attempt_reason(Attempt("A", "skipped", reason="rate limited")) == "over_rate"
    assert attempt_reason(Attempt("A", "sent", reason="slow")) == "slow"

    registry = CollectorRegistry()
    mailer = FailoverMailer([Scripted("A")])
    seen: list[Attempt] = []
    mailer.on_attempt = lambda message, attempt: seen.append(attempt)
    instrument(mailer, registry=registry)
    hooks = mailer._hooks[0]
    assert hooks.on_attempt is not None
    # an attempt naming a driver this mailer does not have is counted as "other"
    stray = Attempt("ann@example.com", "sent", elapsed=0.1)
    object.__setattr__(stray, "outcome", "exploded")  # Attempt() itself refuses it
    hooks.on_attempt(simple_message(), stray)
    assert (
        value(
            registry, "mailfailover_attempts_total", driver="other", outcome="other", reason="other"
        )
        == 1
    )
    mailer.send(simple_message(subject="secret subject"))
    text = generate_latest(registry).decode()
    assert "example.com" not in text
    assert "secret" not in text
    assert len(seen) == 1  # the user's own on_attempt still ran: nothing was replaced


def test_instrumenting_twice_counts_once_and_stop_stops(registry: CollectorRegistry) -> None:
    mailer = FailoverMailer([Scripted("A")])
    metrics = Metrics(registry)
    stop = metrics.instrument(mailer)
    metrics.instrument(mailer)
    mailer.send(simple_message())
    assert value(registry, "mailfailover_messages_total", outcome="sent") == 1
    stop()
    mailer.send(simple_message())
    assert value(registry, "mailfailover_messages_total", outcome="sent") == 1


def test_instrument_reuses_one_metrics_per_registry(registry: CollectorRegistry) -> None:
    first, second = FailoverMailer([Scripted("A")]), FailoverMailer([Scripted("A")])
    instrument(first, registry=registry)
    instrument(second, registry=registry)  # no duplicate-registration error
    first.send(simple_message())
    second.send(simple_message())
    assert value(registry, "mailfailover_attempts_total", driver="A", outcome="sent",
                 reason="none") == 2  # fmt: skip


def test_a_failover_is_logged_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailfailover")
    mailer = FailoverMailer(
        [Scripted("A", ProviderUnavailable("down", reason="server_error")), Scripted("B")]
    )
    mailer.send(simple_message())
    failovers = [r for r in caplog.records if r.getMessage().startswith("failover:")]
    assert [(r.levelno, r.getMessage()) for r in failovers] == [
        (logging.WARNING, "failover: B delivered a message after A was unavailable (server_error)")
    ]
    caplog.clear()
    FailoverMailer([Scripted("A"), Scripted("B")]).send(simple_message())
    assert not [r for r in caplog.records if r.getMessage().startswith("failover:")]


def test_a_raising_hook_never_breaks_a_send(caplog: pytest.LogCaptureFixture) -> None:
    mailer = FailoverMailer([Scripted("A")])

    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    remove = mailer.add_hooks(boom, on_result=boom)
    assert mailer.send(simple_message()).driver == "A"
    messages = [r.getMessage() for r in caplog.records]
    assert "the on_attempt hook raised; the send goes on" in messages
    assert "an on_result hook raised; the send goes on" in messages
    remove()
    assert mailer._hooks == ()
