"""Every HTTP driver against every fault, over real loopback sockets.

For each (driver, fault) the primary is the driver pointed at a stand-in server told to
misbehave, and the backup a MemoryDriver. The checks: the exception class and its
``reason``, ``status``, ``ambiguous`` and ``retry_after``; the failover decision (the backup
delivers after a transient failure, nothing is tried after a rejection); the breaker (two
failures cool the primary down for ``cooldown``, a ``Retry-After`` at once for that long; a
cooling-down primary gets no request; after the cooldown it is probed again), driven by an
injected clock; and, with every logger at DEBUG, that no credential shows up in a log line,
an exception's text or the provider response kept on it.

Every scenario runs twice: through the threaded ``FailoverMailer`` on ``requests`` and
through the ``AsyncFailoverMailer`` on ``aiohttp`` (``colour``), with the same checks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from _reliability import COLOURS, mailer_of, provider_params
from _servers import (
    HANG,
    RESET,
    RESET_MID,
    Answer,
    Behaviour,
    Provider,
    StandInServer,
    closed_port,
)

from mailfailover import (
    DriverHealth,
    FailoverMailer,
    MemoryDriver,
    MessageRejected,
    ProviderUnavailable,
    SendResult,
)
from mailfailover.health import State
from mailfailover.testing import FakeClock, simple_message

#: The client's read timeout for the "hang" fault; the stand-in holds the request 5 s.
HANG_TIMEOUT = 0.25
#: Every other fault is answered at once: a timeout that a loaded CI machine cannot miss.
READ_TIMEOUT = 5.0
COOLDOWN = 30.0
THRESHOLD = 2
RETRY_AFTER = 7.0  # what the stand-in's rate-limit answers say

#: What sits in front of a provider answers a 5xx with its own page, not the provider's API.
GATEWAY_ANSWERS = {
    500: Answer(500, b"Internal Server Error", content_type="text/plain"),
    502: Answer(502, b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 "
                     b"Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
                content_type="text/html"),
    # Envoy's own 503 (Envoy fronts many APIs).
    503: Answer(503, b"upstream connect error or disconnect/reset before headers. reset "
                     b"reason: connection failure", content_type="text/plain"),
    504: Answer(504, b"<html><head><title>504 Gateway Time-out</title></head><body><center>"
                     b"<h1>504 Gateway Time-out</h1></center></body></html>",
                content_type="text/html"),
}  # fmt: skip


@dataclass(frozen=True)
class Fault:
    """One way a provider can fail, and what the mailer must make of it."""

    name: str
    behaviour: Callable[[Provider], Behaviour | None]  # None: the port refuses connections
    rejected: bool = False
    reasons: frozenset[str] = frozenset()
    ambiguous: bool = False
    retry_after: float | None = None


def _gateway(status: int) -> Callable[[Provider], Behaviour]:
    return lambda provider: GATEWAY_ANSWERS[status]


def _auth(status: int) -> Callable[[Provider], Behaviour]:
    def answer(provider: Provider) -> Behaviour:
        documented = [a for a in provider.auth_errors if a.status == status]
        return documented[0] if documented else Answer(status, {"message": "Forbidden"})

    return answer


FAULTS = [
    Fault("refused", lambda p: None, reasons=frozenset({"connection"})),
    Fault("hang", lambda p: HANG, reasons=frozenset({"timeout"}), ambiguous=True),
    Fault("reset_before_answer", lambda p: RESET, reasons=frozenset({"connection"}),
          ambiguous=True),
    Fault("reset_mid_answer", lambda p: RESET_MID, reasons=frozenset({"connection"}),
          ambiguous=True),
    *(Fault(f"http_{status}", _gateway(status), reasons=frozenset({"server_error"}))
      for status in (500, 502, 503, 504)),
    Fault("http_429_retry_after", lambda p: p.rate_limited,
          reasons=frozenset({"rate_limited"}), retry_after=RETRY_AFTER),
    # A bad key or a forbidden account: this provider cannot send now, another one can.
    Fault("http_401", _auth(401), reasons=frozenset({"auth", "account"})),
    Fault("http_403", _auth(403), reasons=frozenset({"auth", "account"})),
    Fault("documented_validation_error", lambda p: p.rejections[0], rejected=True),
    Fault("malformed_2xx", lambda p: p.malformed, reasons=frozenset({"bad_response"})),
]  # fmt: skip


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger (mailfailover, requests, urllib3) captured at DEBUG."""
    caplog.set_level(logging.DEBUG)
    return caplog


def _assert_no_secret(provider: Provider, *texts: str) -> None:
    for secret in provider.secrets:
        for text in texts:
            assert secret not in text, "a credential leaked into a log line or error text"


def _primary_health(mailer: FailoverMailer) -> DriverHealth:
    return mailer.health()[0]


@pytest.mark.parametrize("colour", COLOURS)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
@pytest.mark.parametrize("provider", provider_params())
def test_fault_is_classified_failed_over_and_cooled_down(
    provider: Provider,
    fault: Fault,
    colour: str,
    stand_in: StandInServer,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    """The driver names the fault rightly, the mailer fails over (or stops, for a
    rejection), and the breaker keeps requests off the primary exactly while it should."""
    behaviour = fault.behaviour(provider)
    if behaviour is None:
        base_url = f"http://127.0.0.1:{closed_port()}"
    else:
        base_url = stand_in.url
        stand_in.default = behaviour
    clock = FakeClock()
    timeout = HANG_TIMEOUT if behaviour == HANG else READ_TIMEOUT
    primary = provider.make(base_url, name="primary", timeout=timeout)
    backup = MemoryDriver(name="backup")
    mailer = mailer_of(
        colour, [primary, backup], failure_threshold=THRESHOLD, cooldown=COOLDOWN, clock=clock
    )
    texts: list[str] = []
    with mailer:
        if fault.rejected:
            _check_rejection(mailer, backup, stand_in, texts)
        else:
            _check_failover(fault, behaviour, mailer, backup, stand_in, clock, texts)
    failed = [r for r in all_logs.records if r.name == "mailfailover" and "primary" in r.message]
    assert failed, "a failed attempt must be logged with the driver's name"
    _assert_no_secret(provider, all_logs.text, *texts)


def _check_rejection(
    mailer: FailoverMailer, backup: MemoryDriver, stand_in: StandInServer, texts: list[str]
) -> None:
    message = simple_message()
    with pytest.raises(MessageRejected) as caught:
        mailer.send(message)
    error = caught.value
    texts += [str(error), repr(error.response)]
    assert error.driver == "primary"
    assert error.code == 2
    assert [a.outcome for a in error.attempts] == ["rejected"], "no failover after a rejection"
    assert backup.outbox == []
    assert stand_in.received == 1
    health = _primary_health(mailer)
    assert health.state is State.HEALTHY, "a provider that answered is up"
    assert health.consecutive_failures == 0


def _check_failover(
    fault: Fault,
    behaviour: Behaviour | None,
    mailer: FailoverMailer,
    backup: MemoryDriver,
    stand_in: StandInServer,
    clock: FakeClock,
    texts: list[str],
) -> None:
    reaches = behaviour is not None
    # Every HTTP answer is reported with its status; a transport failure has none.
    status = behaviour.status if isinstance(behaviour, Answer) else None

    def send_and_check(tried: bool) -> SendResult:
        before = stand_in.received
        message = simple_message()
        result = mailer.send(message)
        assert result.driver == "backup"
        assert backup.outbox[-1] is message
        first = result.attempts[0]
        assert first.driver == "primary"
        if not tried:
            assert first.outcome == "skipped"
            assert first.error is None
            assert stand_in.received == before, "a cooling-down driver got a request"
            return result
        assert first.outcome == "unavailable"
        error = first.error
        assert isinstance(error, ProviderUnavailable)
        texts.extend([str(error), repr(error.response), repr(result.to_dict())])
        assert error.driver == "primary"
        assert error.reason in fault.reasons, error
        assert error.ambiguous is fault.ambiguous, error
        assert error.status == status, error
        if fault.retry_after is None:
            assert error.retry_after is None
        else:
            assert error.retry_after == pytest.approx(fault.retry_after)
        assert stand_in.received == before + (1 if reaches else 0)
        return result

    send_and_check(tried=True)
    health = _primary_health(mailer)
    if fault.retry_after is not None or fault.reasons == {"timeout"}:
        # The provider said when to come back (cooled down at once, for that long), or it
        # timed out (cooled down at once: another try would cost a whole timeout again).
        wait = fault.retry_after if fault.retry_after is not None else COOLDOWN
        assert health.state is State.COOLING_DOWN
        assert health.cooldown_remaining == pytest.approx(wait)
        send_and_check(tried=False)
        clock.advance(wait)
    else:
        assert health.state is State.HEALTHY
        assert health.consecutive_failures == 1
        send_and_check(tried=True)
        health = _primary_health(mailer)
        assert health.state is State.COOLING_DOWN
        assert health.cooldown_remaining == pytest.approx(COOLDOWN)
        send_and_check(tried=False)
        clock.advance(COOLDOWN - 0.5)
        send_and_check(tried=False)
        clock.advance(0.5)
    # The cooldown is over: the next message probes the primary, which fails again.
    send_and_check(tried=True)
    health = _primary_health(mailer)
    assert health.state is State.COOLING_DOWN
    assert health.cooldown_remaining == pytest.approx(COOLDOWN)


@pytest.mark.parametrize("colour", COLOURS)
@pytest.mark.parametrize("provider", provider_params())
def test_recovered_primary_takes_traffic_back(
    provider: Provider, colour: str, stand_in: StandInServer
) -> None:
    """After a cooldown, a primary that answers again is used again (fail-back), and the
    message goes out exactly once."""
    stand_in.default = Answer(503, b"down", content_type="text/plain")
    clock = FakeClock()
    backup = MemoryDriver(name="backup")
    primary = provider.make(stand_in.url, name="primary", timeout=READ_TIMEOUT)
    with mailer_of(colour, [primary, backup], failure_threshold=1, cooldown=COOLDOWN,
                   clock=clock) as mailer:  # fmt: skip
        assert mailer.send(simple_message()).driver == "backup"
        stand_in.reset()  # healthy again
        clock.advance(COOLDOWN)
        result = mailer.send(simple_message())
        assert result.driver == "primary"
        assert [a.outcome for a in result.attempts] == ["sent"]
        assert stand_in.received == 1
        assert len(backup.outbox) == 1
        assert _primary_health(mailer).state is State.HEALTHY
