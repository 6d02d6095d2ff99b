"""``AsyncFailoverMailer``: the sync mailer's semantics from asyncio, bounded ``send_many``,
cancellation that gives back what it held, and a clean ``aclose``.

HTTP drivers run on their aiohttp transport against the stand-in server of
``bench/_servers.py`` on loopback; every test drives its own event loop with
``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from _servers import HANG, PROVIDERS, Answer, StandInServer

from mailfailover import (
    AllProvidersFailed,
    FailoverMailer,
    MailError,
    MemoryDriver,
    MessageRejected,
    MissingDependency,
    ProviderUnavailable,
    Receipt,
    SendResult,
)
from mailfailover.aio import AsyncFailoverMailer
from mailfailover.driver import Driver, remaining_time
from mailfailover.health import State
from mailfailover.message import Message
from mailfailover.testing import FakeClock, simple_message

SENDGRID = PROVIDERS["sendgrid"]


class Blocking(Driver):
    """A driver with only a blocking ``send``: run in a thread by the default ``asend``."""

    def __init__(self, *, name: str, fail: bool = False) -> None:
        super().__init__(name=name)
        self.fail = fail
        self.closed = 0
        self.sent: list[Message] = []

    def send(self, message: Message) -> Receipt:
        if self.fail:
            raise ProviderUnavailable("down", reason="server_error", driver=self.name)
        self.sent.append(message)
        return Receipt(driver=self.name, message_id="b-1")

    def close(self) -> None:
        self.closed += 1


SCENARIOS = {
    "first-sends": ((None, None), ["sent"]),
    "fails-over": (("unavailable", None), ["unavailable", "sent"]),
    "rejected-stops": (("reject", None), ["rejected"]),
    "all-fail": (("unavailable", "unavailable"), ["unavailable", "unavailable"]),
}


def _attempts(outcome: SendResult | MailError) -> list[str]:
    attempts = outcome.attempts
    return [a.outcome for a in attempts]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_same_outcomes_as_the_sync_mailer(scenario: str) -> None:
    """Three sends through each mailer over the same drivers and clock: the same attempts,
    the same errors, the same health afterwards."""
    modes, first = SCENARIOS[scenario]

    def drivers() -> list[MemoryDriver]:
        return [MemoryDriver(name=f"m{i}", **({"fail": m} if m else {}))
                for i, m in enumerate(modes)]  # fmt: skip

    def outcome(send: Any) -> SendResult | MailError:
        try:
            return send(simple_message())  # type: ignore[no-any-return]
        except MailError as exc:
            return exc

    sync = FailoverMailer(drivers(), clock=FakeClock())
    sync_outcomes = [outcome(sync.send) for _ in range(3)]

    async def run_async() -> tuple[list[SendResult | MailError], list[Any]]:
        async with AsyncFailoverMailer(drivers(), clock=FakeClock()) as mailer:
            outcomes = []
            for _ in range(3):
                try:
                    outcomes.append(await mailer.send(simple_message()))
                except MailError as exc:
                    outcomes.append(exc)
            return outcomes, mailer.health()

    async_outcomes, async_health = asyncio.run(run_async())
    assert _attempts(async_outcomes[0]) == first
    assert [_attempts(o) for o in async_outcomes] == [_attempts(o) for o in sync_outcomes]
    assert [type(o) for o in async_outcomes] == [type(o) for o in sync_outcomes]
    assert [(h.name, h.state) for h in async_health] == [(h.name, h.state)
                                                         for h in sync.health()]  # fmt: skip


def test_http_driver_sends_natively_and_fails_over(stand_in: StandInServer) -> None:
    """An HTTP driver's request goes out on aiohttp (its User-Agent says so); a 503 fails
    over to the next driver with the sync transport's classification."""
    primary = SENDGRID.make(stand_in.url, name="primary")
    backup = MemoryDriver(name="backup")

    async def scenario() -> tuple[SendResult, SendResult]:
        async with AsyncFailoverMailer([primary, backup]) as mailer:
            first = await mailer.send(simple_message())
            stand_in.then(Answer(503, b"down", content_type="text/plain"))
            second = await mailer.send(simple_message())
            return first, second

    first, second = asyncio.run(scenario())
    assert first.driver == "primary"
    assert first.message_id == "sg-00000001"
    assert "aiohttp" in stand_in.requests[0].headers["User-Agent"]
    assert second.driver == "backup"
    error = second.attempts[0].error
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.status, error.ambiguous) == ("server_error", 503, False)


def test_a_blocking_driver_runs_in_a_thread_and_is_closed_there() -> None:
    """A driver without asend (SES, a plugin) works: its send runs in a worker thread, and
    aclose closes it."""
    down, up = Blocking(name="down", fail=True), Blocking(name="up")
    loop_thread: list[int] = []

    async def scenario() -> SendResult:
        import threading

        loop_thread.append(threading.get_ident())
        async with AsyncFailoverMailer([down, up]) as mailer:
            return await mailer.send(simple_message())

    result = asyncio.run(scenario())
    assert result.driver == "up"
    assert [a.outcome for a in result.attempts] == ["unavailable", "sent"]
    assert (down.closed, up.closed) == (1, 1)


def test_send_many_keeps_order_bounds_concurrency_and_returns_errors() -> None:
    """At most ``concurrency`` sends are in flight; results come in the order given; a
    rejected message is returned as its error and the others still go out."""
    in_flight = 0
    most = 0

    class Slow(MemoryDriver):
        async def asend(self, message: Message) -> Receipt:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                await asyncio.sleep(0.001)
                if message.subject == "bad":
                    raise MessageRejected("no", driver=self.name)
                return self.send(message)
            finally:
                in_flight -= 1

    driver = Slow(name="slow")
    messages = [simple_message(subject="bad" if i == 7 else f"m{i}") for i in range(40)]

    async def scenario() -> list[SendResult | MailError]:
        async with AsyncFailoverMailer([driver]) as mailer:
            return await mailer.send_many(messages, concurrency=5)

    results = asyncio.run(scenario())
    assert most == 5
    assert len(results) == 40
    assert isinstance(results[7], MessageRejected)
    sent = [r for r in results if isinstance(r, SendResult)]
    assert len(sent) == 39
    assert [r.message_id for r in results if isinstance(r, SendResult)] == [
        m.message_id for i, m in enumerate(messages) if i != 7
    ]
    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(AsyncFailoverMailer([driver]).send_many(messages, concurrency=0))


def test_a_cancelled_probe_gives_its_lease_back_and_closes_nothing(
    stand_in: StandInServer,
) -> None:
    """The primary cools down; after the cooldown a send probes it and hangs; cancelling
    that send gives the probe back (the next send probes the primary again, instead of
    skipping it as 'probe in progress'), and the primary's connections still work."""
    clock = FakeClock()
    primary = SENDGRID.make(stand_in.url, name="primary", timeout=5.0)
    backup = MemoryDriver(name="backup")

    async def scenario() -> SendResult:
        async with AsyncFailoverMailer([primary, backup], failure_threshold=1,
                                       cooldown=30.0, clock=clock) as mailer:  # fmt: skip
            stand_in.then(Answer(503, b"down", content_type="text/plain"))
            assert (await mailer.send(simple_message())).driver == "backup"
            assert mailer.health()[0].state is State.COOLING_DOWN
            clock.advance(30.0)
            stand_in.then(HANG)
            probe = asyncio.ensure_future(mailer.send(simple_message()))
            for _ in range(500):  # until the stand-in holds the request
                if stand_in.received == 2:
                    break
                await asyncio.sleep(0.01)
            assert stand_in.received == 2
            probe.cancel()
            with pytest.raises(asyncio.CancelledError):
                await probe
            result = await mailer.send(simple_message())
            assert not primary.async_transport._session.closed  # type: ignore[union-attr]
            return result

    result = asyncio.run(scenario())
    assert result.driver == "primary"
    assert [a.outcome for a in result.attempts] == ["sent"]
    assert len(backup.outbox) == 1


def test_the_deadline_bounds_a_hanging_http_send(stand_in: StandInServer) -> None:
    """With deadline=0.3 a provider that never answers is given up on after the deadline,
    not after its own 5 s read timeout: the attempt is a timeout, and nothing is left."""
    stand_in.default = HANG
    primary = SENDGRID.make(stand_in.url, name="primary", timeout=5.0)

    async def scenario() -> AllProvidersFailed:
        async with AsyncFailoverMailer([primary], deadline=0.3) as mailer:
            with pytest.raises(AllProvidersFailed) as caught:
                await mailer.send(simple_message())
            return caught.value

    error = asyncio.run(scenario())
    first = error.attempts[0].error
    assert isinstance(first, ProviderUnavailable)
    assert (first.reason, first.ambiguous) == ("timeout", True)


def test_the_deadline_reaches_a_driver_in_a_thread() -> None:
    """remaining_time() inside a threaded driver's send sees the mailer's deadline."""
    seen: list[float | None] = []

    class Watching(Blocking):
        def send(self, message: Message) -> Receipt:
            seen.append(remaining_time())
            return super().send(message)

    async def scenario() -> None:
        async with AsyncFailoverMailer([Watching(name="w")], deadline=7.0) as mailer:
            await mailer.send(simple_message())

    asyncio.run(scenario())
    assert seen[0] is not None
    assert 0 < seen[0] <= 7.0


def test_from_config_health_hooks_and_aclose(caplog: pytest.LogCaptureFixture) -> None:
    """from_config takes what the sync one takes; hooks see attempts and results; aclose
    is idempotent and a closed mailer refuses to send."""
    caplog.set_level(logging.INFO)
    config = {"drivers": [{"name": "down", "module": "memory",
                           "settings": {"fail": "unavailable"}},
                          {"name": "up", "module": "memory"}]}  # fmt: skip
    seen: list[str] = []

    async def scenario() -> None:
        mailer = AsyncFailoverMailer.from_config(config, clock=FakeClock())
        mailer.add_hooks(lambda m, a: seen.append(a.outcome),
                         on_result=lambda m, r: seen.append(type(r).__name__))  # fmt: skip
        assert [d.name for d in mailer.drivers] == ["down", "up"]
        assert (await mailer.send(simple_message())).driver == "up"
        assert [h.name for h in mailer.health()] == ["down", "up"]
        await mailer.aclose()
        await mailer.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await mailer.send(simple_message())

    asyncio.run(scenario())
    assert seen == ["unavailable", "sent", "SendResult"]


@pytest.mark.parametrize(
    ("kind", "settings", "module"),
    [
        ("postmark", {"server_token": "pm-token"}, "aiohttp"),
        ("smtp", {"host": "127.0.0.1", "port": 2525, "security": "none"}, "aiosmtplib"),
    ],
)
def test_a_missing_async_transport_is_a_setup_error(
    kind: str, settings: dict[str, Any], module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without its native transport a driver could only fail every send; building the async
    mailer says so instead, naming the extra (and the sync mailer does not care)."""
    config = {"drivers": [{"name": "primary", "driver": kind, "settings": settings}]}
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    sync_mailer = FailoverMailer.from_config(config)  # needs no async transport
    with sync_mailer, pytest.raises(MissingDependency) as caught:
        AsyncFailoverMailer.wrapping(sync_mailer)
    assert 'pip install "mailfailover[async]"' in str(caught.value)
    assert "primary" in str(caught.value)
    with pytest.raises(MissingDependency):
        AsyncFailoverMailer.from_config(config)
    monkeypatch.undo()
    asyncio.run(AsyncFailoverMailer.from_config(config).aclose())  # installed: builds
