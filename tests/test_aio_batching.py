"""``AsyncFailoverMailer.send_many`` through batch endpoints: the same requests, the same
per-message semantics as the threaded mailer's batches (one scheduler, :mod:`._batched`),
over aiohttp to a real local stand-in (Postmark ``POST /email/batch``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _servers import HANG, RESET, Answer, StandInServer
from batch_support import TOKEN, messages, ok

from mailfailover import (
    AllProvidersFailed,
    FailoverMailer,
    MailError,
    MemoryDriver,
    MessageRejected,
    ProviderUnavailable,
    Receipt,
    SendResult,
)
from mailfailover.aio import AsyncFailoverMailer
from mailfailover.drivers import _smtp_async_batch
from mailfailover.drivers.postmark import PostmarkDriver
from mailfailover.drivers.smtp import SMTPDriver
from mailfailover.health import State
from mailfailover.message import Message
from mailfailover.testing import FakeClock, simple_message


def postmark(server: StandInServer, **settings: Any) -> PostmarkDriver:
    return PostmarkDriver(name="postmark", server_token=TOKEN, base_url=server.url, **settings)


def send_many_async(
    drivers: Sequence[Any], items: list[Message], concurrency: int = 10, **options: Any
) -> list[SendResult | MailError]:
    async def scenario() -> list[SendResult | MailError]:
        async with AsyncFailoverMailer(drivers, **options) as mailer:
            return await mailer.send_many(items, concurrency=concurrency)

    return asyncio.run(scenario())


def test_the_same_batch_requests_as_the_threaded_mailer(stand_in: StandInServer) -> None:
    """1,200 messages: three requests of at most 500 (the provider's maximum), each body a
    JSON array of exactly the single sends' bodies, the same as the threaded mailer's; each
    message its own result with the stand-in's own id for it."""
    items = messages(1200)
    async_results = send_many_async([postmark(stand_in)], items)
    async_bodies = [json.loads(r.body) for r in stand_in.requests]
    assert [r.path for r in stand_in.requests] == ["/email/batch"] * 3
    assert "aiohttp" in stand_in.requests[0].headers["User-Agent"]
    assert stand_in.requests[0].headers["X-Postmark-Server-Token"] == TOKEN

    stand_in.requests.clear()
    with FailoverMailer([postmark(stand_in)]) as sync_mailer:
        sync_results = sync_mailer.send_many(items)
    sync_bodies = [json.loads(r.body) for r in stand_in.requests]

    single = PostmarkDriver(name="p", server_token=TOKEN)
    expected = [json.loads(json.dumps(single.build_request(m).json)) for m in items]
    assert sorted(len(b) for b in async_bodies) == [200, 500, 500]
    key = lambda body: body["To"]  # noqa: E731 - the order of the batches may differ
    assert sorted((e for b in async_bodies for e in b), key=key) == sorted(expected, key=key)
    assert sorted(map(json.dumps, async_bodies)) == sorted(map(json.dumps, sync_bodies))
    for results in (async_results, sync_results):
        assert all(isinstance(r, SendResult) for r in results)
        ids = [r.message_id for r in results if isinstance(r, SendResult)]
        assert len(set(ids)) == 1200  # each message's own id from its part of the answer
        for result in results:
            assert isinstance(result, SendResult)
            assert [(a.driver, a.outcome) for a in result.attempts] == [("postmark", "sent")]


def test_refused_messages_in_a_batch_answer_are_each_messages_own(
    stand_in: StandInServer,
) -> None:
    """One answer, four verdicts: an inactive recipient is that message's rejection, a
    pending account fails that message over alone, the others are sent."""
    stand_in.then(Answer(200, [
        ok(0),
        {"ErrorCode": 406, "Message": "You tried to send to recipient(s) that have been "
         "marked as inactive. Found inactive addresses: r1@example.com."},
        {"ErrorCode": 412, "Message": "Your account is pending approval."},
        ok(3),
    ]))  # fmt: skip
    backup = MemoryDriver(name="backup")
    items = messages(4)
    results = send_many_async([postmark(stand_in), backup], items)
    assert len(stand_in.requests) == 1  # the batch; the backup got its one message
    sent0, refused, failed_over, sent3 = results
    assert isinstance(sent0, SendResult) and sent0.message_id == "pm-0"
    assert isinstance(sent3, SendResult) and sent3.message_id == "pm-3"
    assert isinstance(refused, MessageRejected)
    assert [(a.driver, a.outcome) for a in refused.attempts] == [("postmark", "rejected")]
    assert isinstance(failed_over, SendResult)
    assert failed_over.driver == "backup"
    assert [(a.driver, a.outcome) for a in failed_over.attempts] == [
        ("postmark", "unavailable"), ("backup", "sent")]  # fmt: skip
    first = failed_over.attempts[0].error
    assert isinstance(first, ProviderUnavailable) and first.reason == "account"
    assert [m.subject for m in backup.outbox] == ["Hello 2"]


@pytest.mark.parametrize(
    ("behaviour", "reason", "ambiguous"),
    [
        (Answer(503, b"down", content_type="text/plain"), "server_error", False),
        (RESET, "connection", True),
    ],
)
def test_a_whole_batch_failure_fails_over_only_its_messages(
    stand_in: StandInServer, behaviour: Any, reason: str, ambiguous: bool
) -> None:
    """Two batches of 3; the first request fails whole. Its three messages fail over, each
    with its own copy of the error (ambiguous for each when the answer was lost); the other
    batch's three are sent by the provider; nothing is sent twice."""
    stand_in.then(behaviour)
    backup = MemoryDriver(name="backup")
    items = messages(6)
    results = send_many_async([postmark(stand_in, batch_size=3), backup], items,
                              concurrency=1, failure_threshold=10)  # fmt: skip
    assert all(isinstance(r, SendResult) for r in results)
    by_driver = {r.driver for r in results if isinstance(r, SendResult)}
    assert by_driver == {"postmark", "backup"}
    moved = [r for r in results if isinstance(r, SendResult) and r.driver == "backup"]
    assert len(moved) == 3 and len(backup.outbox) == 3
    errors = [r.attempts[0].error for r in moved]
    assert len({id(e) for e in errors}) == 3  # each message its own error object
    for error in errors:
        assert isinstance(error, ProviderUnavailable)
        assert (error.reason, error.ambiguous) == (reason, ambiguous)
    sent_by_provider = stand_in.messages
    assert sent_by_provider == 3
    delivered = {m.subject for m in backup.outbox} | {
        items[i].subject for i, r in enumerate(results)
        if isinstance(r, SendResult) and r.driver == "postmark"
    }  # fmt: skip
    assert delivered == {m.subject for m in items}


class CountingBatcher(MemoryDriver):
    """A batching driver that records how many of its batches are in flight at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_flight = 0
        self.most = 0
        self.batches: list[int] = []
        self.gate: asyncio.Event | None = None

    @property
    def batch_size(self) -> int:
        return 5

    async def asend_batch(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        self.batches.append(len(messages))
        async with self._flying():
            return [self.send(m) for m in messages]

    async def asend(self, message: Message) -> Receipt:
        async with self._flying():
            return self.send(message)

    @contextlib.asynccontextmanager
    async def _flying(self) -> AsyncIterator[None]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0.001)
            yield
        finally:
            self.in_flight -= 1


def test_concurrency_bounds_the_batches_in_flight_and_order_is_kept() -> None:
    driver = CountingBatcher(name="batcher")
    items = messages(43)
    results = send_many_async([driver], items, concurrency=3)
    assert driver.most == 3
    assert sorted(driver.batches) == [3] + [5] * 8
    assert [r.message_id for r in results if isinstance(r, SendResult)] == [
        m.message_id for m in items
    ]


def test_cancelling_send_many_gives_back_the_probe_leases_it_held() -> None:
    """The batching driver is cooling down; after the cooldown the batch is its probe and
    hangs; cancelling ``send_many`` closes every message's failover, which gives the probe
    back: the next send probes the driver again instead of skipping it."""
    clock = FakeClock()
    driver = CountingBatcher(name="batcher", fail="unavailable")
    backup = MemoryDriver(name="backup")

    async def scenario() -> SendResult:
        async with AsyncFailoverMailer([driver, backup], failure_threshold=1,
                                       cooldown=30.0, clock=clock) as mailer:  # fmt: skip
            assert (await mailer.send(simple_message())).driver == "backup"
            assert mailer.health()[0].state is State.COOLING_DOWN
            clock.advance(30.0)
            driver.settings["fail"] = None
            driver.gate = asyncio.Event()
            task = asyncio.ensure_future(mailer.send_many(messages(4), concurrency=2))
            for _ in range(500):  # until the batch is in the driver
                if driver.in_flight:
                    break
                await asyncio.sleep(0.01)
            assert driver.in_flight == 1  # the probe: one message alone, the rest skipped it
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert driver.in_flight == 0
            driver.gate = None
            return await mailer.send(simple_message())

    result = asyncio.run(scenario())
    assert result.driver == "batcher"
    assert [a.outcome for a in result.attempts] == ["sent"]


def test_a_hanging_batch_is_bounded_by_the_deadline(stand_in: StandInServer) -> None:
    """With deadline=0.3 a batch request the provider never answers is given up after the
    deadline, not after its own 5 s read timeout: each of its messages fails with its own
    timeout, ambiguous (the provider may have taken them)."""
    stand_in.default = HANG
    results = send_many_async([postmark(stand_in, timeout=5.0)], messages(3), deadline=0.3)
    assert len(stand_in.requests) in (0, 1)  # a hung request may not be recorded whole
    assert len({id(r) for r in results}) == 3
    for result in results:
        assert isinstance(result, AllProvidersFailed)
        (attempt,) = result.attempts
        assert isinstance(attempt.error, ProviderUnavailable)
        assert (attempt.error.reason, attempt.error.ambiguous) == ("timeout", True)


class ThreadBatcher(MemoryDriver):
    """A third-party driver with its own blocking batch and no asyncio code."""

    batches: list[tuple[int, int]]

    @property
    def batch_size(self) -> int:
        return 10

    def send_batch(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        self.batches.append((len(messages), threading.get_ident()))
        return [self.send(m) for m in messages]


def test_a_drivers_own_blocking_batch_is_kept_under_asyncio() -> None:
    """A driver that overrides only ``send_batch`` keeps its batches under asyncio: each
    batch is one ``send_batch`` call, run in a worker thread (not in the event loop)."""
    driver = ThreadBatcher(name="batcher")
    driver.batches = []
    items = messages(25)
    loop_thread = threading.get_ident()
    results = send_many_async([driver], items, concurrency=2)
    assert sorted(size for size, _ in driver.batches) == [5, 10, 10]
    assert all(thread != loop_thread for _, thread in driver.batches)
    assert [r.message_id for r in results if isinstance(r, SendResult)] == [
        m.message_id for m in items
    ]


def test_smtp_batches_under_asyncio_are_native_pipelined_batches_not_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under asyncio an SMTP batch is the native pipelined batch on aiosmtplib (the same
    session as the blocking ``send_batch``, tests/drivers/test_smtp_async_batch.py), in
    the event loop's thread: never the blocking ``send_batch`` in a worker thread, nor an
    ``asend`` per message."""
    smtp = SMTPDriver(name="smtp", host="127.0.0.1", port=2525, security="none")
    batches: list[tuple[list[str], int]] = []

    async def native(side: Any, batch: Sequence[Message]) -> list[Receipt | Exception]:
        assert side.driver is smtp
        batches.append(([m.message_id for m in batch], threading.get_ident()))
        return [Receipt(driver="smtp", message_id=m.message_id) for m in batch]

    def blocked(*args: Any) -> Any:
        raise AssertionError("a blocking or one-by-one path was used under asyncio")

    monkeypatch.setattr(_smtp_async_batch, "send_batch", native)
    smtp.asend = blocked  # type: ignore[method-assign]
    smtp.send_batch = blocked  # type: ignore[method-assign]
    items = messages(30)
    loop_thread: list[int] = []

    async def scenario() -> list[SendResult | MailError]:
        loop_thread.append(threading.get_ident())
        async with AsyncFailoverMailer([smtp]) as mailer:
            return await mailer.send_many(items, concurrency=3)

    results = asyncio.run(scenario())
    assert smtp.batch_size == 25
    assert sorted(len(ids) for ids, _ in batches) == [5, 25]
    assert sorted(i for ids, _ in batches for i in ids) == sorted(m.message_id for m in items)
    assert {thread for _, thread in batches} == set(loop_thread)
    assert all(isinstance(r, SendResult) for r in results)
