"""``AsyncFailoverMailer``: the failover mailer for asyncio applications (extra ``async``).

It has the :class:`~mailfailover.FailoverMailer`'s constructor, ``from_config``, hooks,
``health`` and ``reload``, and its semantics exactly: the failover loop is the one sans-I/O
generator of :mod:`mailfailover._failover` (driven here with ``await driver.asend()``), and
the breaker, its state store and the result types are the sync mailer's own objects; the
async mailer holds a :class:`FailoverMailer` for everything that is not I/O. So there is no
copy of the loop or the breaker that could drift.

How drivers run: HTTP drivers natively on ``aiohttp`` (:meth:`HttpDriver.asend`), SMTP
natively on ``aiosmtplib`` (:meth:`SMTPDriver.asend`), every other driver (SES,
third-party plugins) through :meth:`Driver.asend`'s default, which runs its blocking
``send`` in a worker thread.

The state store's calls (health transitions, at most one batched read per refresh
interval) are made inline, in the event loop: they are short, rare on the hot path (a
healthy send makes none), and a thread hop for each would cost more than it saves. A
Redis store on a slow network would block the loop for its round trip at those moments.

Cancellation: cancelling a ``send`` (a task cancelled, a ``wait_for`` timing out, a client
hanging up on a web request) stops it at once; the probe lease it held, if any, is given
back (the next send may probe at once), and its driver stays open for the next sends. A
request already on the wire may still reach the provider; the ``aiohttp`` connection it
used is dropped, not reused. A driver run in a thread finishes its send in that thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._batched import BatchedSends, Job, acarry
from ._failover import arun
from .driver import Driver, Receipt, require
from .errors import AllProvidersFailed, MailError, MessageRejected
from .health import DriverHealth
from .mailer import FailoverMailer
from .message import Message
from .results import Attempt, SendResult, Strategy

if TYPE_CHECKING:
    from .config import MailerConfig
    from .events import DeliveryEvent
    from .policy import DriverPolicy
    from .state import StateStore

__all__ = ["AsyncFailoverMailer"]

_logger = logging.getLogger("mailfailover")


class AsyncFailoverMailer:
    """Sends messages through an ordered list of drivers, failing over between them, from
    asyncio code: ``await mailer.send(message)``.

    Takes what :class:`~mailfailover.FailoverMailer` takes (but ``sleep``: a rate limit's
    wait is ``await asyncio.sleep``). Use one per event loop (HTTP
    drivers keep their connections in the loop that first used them) and close it with
    ``await mailer.aclose()`` or ``async with``.
    """

    def __init__(
        self,
        drivers: Sequence[Driver],
        *,
        strategy: Strategy = "failover",
        failure_threshold: int = 2,
        cooldown: float = 30.0,
        deadline: float | None = None,
        on_attempt: Callable[[Message, Attempt], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        state: str | Mapping[str, Any] | StateStore | None = None,
        suppression: bool = True,
        on_event: Callable[[DeliveryEvent], object] | None = None,
        policies: Mapping[str, DriverPolicy] | None = None,
    ) -> None:
        _check_async_requirements(drivers)
        self._mailer = FailoverMailer(
            drivers,
            strategy=strategy,
            failure_threshold=failure_threshold,
            cooldown=cooldown,
            deadline=deadline,
            on_attempt=on_attempt,
            clock=clock,
            state=state,
            suppression=suppression,
            on_event=on_event,
            policies=policies,
        )

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncFailoverMailer:
        """Build a mailer as :meth:`FailoverMailer.from_config` does (same sources, same
        options)."""
        return cls.wrapping(FailoverMailer.from_config(source, **options))

    @classmethod
    def wrapping(cls, mailer: FailoverMailer) -> AsyncFailoverMailer:
        """An async face on ``mailer``: the same drivers, breaker and hooks (closing either
        closes both).

        Raises :class:`~mailfailover.errors.MissingDependency` when a driver's native async
        transport is not installed (``pip install "mailfailover[async]"``).
        """
        _check_async_requirements(mailer.drivers)
        wrapper = cls.__new__(cls)
        wrapper._mailer = mailer
        return wrapper

    # -- what is the sync mailer's own --------------------------------------------------

    @property
    def mailer(self) -> FailoverMailer:
        """The :class:`FailoverMailer` holding this mailer's drivers, breaker and hooks."""
        return self._mailer

    @property
    def drivers(self) -> tuple[Driver, ...]:
        """The drivers in configured order."""
        return self._mailer.drivers

    @property
    def config(self) -> MailerConfig | None:
        return self._mailer.config

    @property
    def store(self) -> StateStore:
        """Where driver health is kept (see :class:`FailoverMailer`)."""
        return self._mailer.store

    def health(self) -> list[DriverHealth]:
        """Each driver's state, in configured order (as :meth:`FailoverMailer.health`)."""
        return self._mailer.health()

    def add_hooks(
        self,
        on_attempt: Callable[[Message, Attempt], object] | None = None,
        *,
        on_result: Callable[[Message, SendResult | MailError], object] | None = None,
    ) -> Callable[[], None]:
        """As :meth:`FailoverMailer.add_hooks`; hooks are called in the event loop."""
        return self._mailer.add_hooks(on_attempt, on_result=on_result)

    def reload(self) -> None:
        """As :meth:`FailoverMailer.reload` (it reads files: call it from a thread if the
        configuration may be slow to read)."""
        self._mailer.reload()

    # -- sending ------------------------------------------------------------------------

    async def send(self, message: Message) -> SendResult:
        """Deliver ``message`` through the first driver that can, or raise.

        Raises :class:`MessageRejected` or :class:`AllProvidersFailed`, both carrying
        ``attempts`` (and :class:`MessageSuppressed` when every recipient is suppressed),
        exactly as :meth:`FailoverMailer.send`.
        """
        mailer = self._mailer
        send = mailer._begin(message)
        try:
            result = await arun(send.steps, send.message)
        except (MessageRejected, AllProvidersFailed) as exc:
            mailer._notify(send.message, exc)
            raise
        finally:
            mailer._release_chain(send.chain)
        return mailer._finish(send, result)

    async def send_many(
        self, messages: Iterable[Message], concurrency: int = 10
    ) -> list[SendResult | MailError]:
        """Send every message with at most ``concurrency`` sends in flight; return a
        :class:`SendResult` or the :class:`MailError` for each, in the order given. One
        failure never stops the others; cancelling ``send_many`` cancels the sends in
        flight (each gives back what it held) and sends nothing more."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError("concurrency must be a whole number, at least 1")
        items = list(messages)
        if len(items) > 1 and any(d.batch_size > 1 for d in self._mailer._chain_drivers()):
            return await self._send_batched(items, concurrency)
        results: list[SendResult | MailError | None] = [None] * len(items)
        queue = iter(enumerate(items))

        async def worker() -> None:
            for index, message in queue:  # the one iterator is shared: each item once
                try:
                    results[index] = await self.send(message)
                except MailError as exc:
                    results[index] = exc

        workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(items)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    async def _send_batched(
        self, items: list[Any], concurrency: int
    ) -> list[SendResult | MailError]:
        """``send_many`` through batch endpoints (:mod:`._batched`, the scheduling the
        threaded mailer uses): each round's requests, at most ``concurrency`` at a time."""
        sends = BatchedSends(self._mailer, items)
        slots = asyncio.Semaphore(concurrency)

        async def limited(job: Job) -> list[Receipt | Exception]:
            async with slots:
                return await acarry(job)

        try:
            while sends.pending:
                jobs = sends.jobs()
                done = await asyncio.gather(*(limited(job) for job in jobs))
                for job, outcomes in zip(jobs, done, strict=True):
                    sends.answer(job, outcomes)
        finally:
            results = sends.finish()
        return results

    # -- lifetime -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every driver's connections (HTTP sessions in this loop, the others in a
        thread) and a state store the mailer opened; safe to call twice."""
        for driver in self._mailer._shut():
            try:
                await driver.aclose()
            except Exception:
                _logger.exception("closing %s failed", driver.name)
        self._mailer._close_store()

    async def __aenter__(self) -> AsyncFailoverMailer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        names = ", ".join(repr(d.name) for d in self.drivers)
        return f"<AsyncFailoverMailer strategy={self._mailer.strategy!r} drivers=[{names}]>"


def _check_async_requirements(drivers: Sequence[Driver]) -> None:
    """Each driver's :attr:`~mailfailover.driver.Driver.async_requires`, imported now: a
    missing transport is a setup error, not a failure of every send."""
    for driver in drivers:
        for module, extra in driver.async_requires:
            require(module, extra, driver=driver.name)
