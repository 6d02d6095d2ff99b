"""Many messages over one SMTP connection under asyncio: :meth:`SMTPDriver.asend_batch`.

The session is the blocking batch's own (:class:`._smtp_batch.Transactions`: the same
groups, the same bytes, the same per-message answers); only its I/O is done here, on a
connection of the async pool (:class:`._smtp_async.AsyncSMTP`: checked out with RSET,
released to its loop's pool when the batch ended in a known state, aborted otherwise).

aiosmtplib's protocol reads one reply per command it sends and drops a reply that arrives
while none is awaited, so it cannot read pipelined replies. For the length of a batch the
connection's transport is handed to :class:`_Replies` (``transport.set_protocol``, public
asyncio API), which keeps every byte the server sends and parses replies as smtplib's
``getreply()`` does; aiosmtplib's protocol is put back afterwards and is told if the
connection is lost meanwhile.

**Ambiguity.** Bytes handed to the transport are not known to have reached the kernel, let
alone the server; so they count as sent as soon as they are handed over: when the
connection fails after a message's end-of-data mark was handed over (drained or not), that
message is ``ambiguous``; before that, it is not. Each step (a write waiting to drain, a
reply) waits at most ``timeout`` seconds, shortened to the mailer's deadline. A cancelled
batch aborts its connection (nothing still buffered is sent; it is never pooled).
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..driver import Receipt
from ..errors import DeliveryError
from ..message import Message
from ._smtp_async import CAUGHT, in_smtplib_terms
from ._smtp_batch import Batch, Content, Op, Outbox, Read, Transactions
from ._smtp_data import STREAM_ABOVE, estimated_size
from .smtp import _Phase, _Plan

if TYPE_CHECKING:
    from ._smtp_async import AsyncSMTP, _Connection
    from .smtp import SMTPDriver

__all__ = ["send_batch"]

#: smtplib's longest reply line (``smtplib._MAXLINE``).
MAX_LINE = 8192


async def send_batch(side: AsyncSMTP, messages: Sequence[Message]) -> list[Receipt | Exception]:
    """Each message's receipt or error, in order: ``batch_size`` messages per connection."""
    out: list[Receipt | Exception] = []
    size = max(side.driver.batch_size, 1)
    for start in range(0, len(messages), size):
        out.extend(await _one_connection(side, messages[start : start + size]))
    return out


async def _one_connection(
    side: AsyncSMTP, messages: Sequence[Message]
) -> list[Receipt | Exception]:
    """As the blocking ``_one_connection``, with the async pool and runner."""
    driver = side.driver
    batch = Batch(driver, messages)
    for attempt in (1, 2):
        if not batch.todo:
            break
        try:
            connection = await side._checkout(_Phase())
        except DeliveryError as exc:  # nothing was sent: each message fails over on its own
            batch.unreachable(exc)
            break
        session = _AsyncSession(driver, connection, messages, batch.out, batch.todo)
        try:
            clean = await session.run()
        except BaseException:  # cancelled, or a bug: the session's state is unknown
            connection.discard()
            raise
        if clean:
            side._release(connection)
            break
        connection.discard()
        if not batch.again(session, attempt, reused=connection.reused):
            break
    return batch.answers()


class _Abandoned(Exception):
    """The batch that streamed this DATA is gone: stop generating it."""


class _AsyncSession(Transactions):
    """:class:`Transactions` over a connection of the async pool."""

    def __init__(
        self,
        driver: SMTPDriver,
        connection: _Connection,
        messages: Sequence[Message],
        out: list[Receipt | Exception | None],
        todo: list[int],
    ) -> None:
        self.smtp = connection.smtp
        super().__init__(driver, messages, out, todo, Outbox(), self.smtp.supports_extension)
        self.replies: _Replies | None = None
        self.planned: dict[int, _Plan | Exception] = {}  # worked out in a worker thread

    async def run(self) -> bool:
        """Do the I/O :meth:`steps` asks for; True when the connection is clean for reuse."""
        transport = self.smtp.transport
        protocol = self.smtp.protocol
        if (
            isinstance(transport, asyncio.Transport)
            and not transport.is_closing()
            and protocol is not None
        ):  # else the first write finds the connection gone
            self.replies = _Replies(transport, protocol)
            transport.set_protocol(self.replies)
        await self._plan_large()
        try:
            steps = self.steps()
            answer: Any = None
            failed: Exception | None = None
            while True:
                try:
                    op = steps.send(answer) if failed is None else steps.throw(failed)
                except StopIteration as stop:
                    clean: bool = stop.value
                    return clean
                answer, failed = None, None
                try:
                    answer = await self._do(op)
                except CAUGHT as exc:  # in smtplib's terms, for the shared classifier
                    failed = in_smtplib_terms(exc)
                    if failed is not exc:
                        failed.__cause__ = exc
                except Exception as exc:  # a bug: the session records it as one
                    failed = exc
        finally:
            if self.replies is not None and protocol is not None:
                self.replies.transport.set_protocol(protocol)

    async def _plan_large(self) -> None:
        """The plans of messages above the in-memory limit, worked out in a worker thread
        (as ``asend`` does): generating them takes a while, not in the event loop."""
        for index in self.todo:
            message = self.messages[index]
            if estimated_size(message) > STREAM_ABOVE:
                try:
                    plan = await asyncio.to_thread(self.driver.plan, message, self.has_extn)
                except Exception as exc:  # raised where the session plans it
                    self.planned[index] = exc
                else:
                    self.planned[index] = plan

    def _plan(self, index: int, message: Message) -> _Plan:
        planned = self.planned.pop(index, None)
        if planned is None:
            return super()._plan(index, message)
        if isinstance(planned, Exception):
            raise planned
        return planned

    async def _do(self, op: Op) -> Any:
        replies = self.replies
        if replies is None:
            raise smtplib.SMTPServerDisconnected("Server not connected")
        if isinstance(op, Read):
            return await replies.read(self.driver._timeout())
        if isinstance(op, Content):
            await self._content(replies, op)
            return None
        await self._flush(replies)
        return None

    async def _flush(self, replies: _Replies) -> None:
        """Hand the outbox to the transport (counted as sent), then wait while the
        transport holds more than its high-water mark."""
        if not self.outbox.buffer:
            return
        replies.check()
        data = self.outbox.take()
        replies.transport.write(data)
        self.outbox.sent += len(data)
        await replies.drained(self.driver._timeout())

    async def _content(self, replies: _Replies, op: Content) -> None:
        """The DATA into the outbox, a write each time it is full; a streamed plan is
        generated in a worker thread (as ``asend`` does), its writes done here."""
        if op.plan.chunks is not None:  # in memory already
            pieces: list[bytes] = []
            op.plan.write(pieces.append)
            for piece in pieces:
                self.outbox.add(piece)
                if self.outbox.full():
                    await self._flush(replies)
            return
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()
        timeout = self.driver._timeout

        def add(chunk: bytes) -> None:  # in the worker thread; the loop waits meanwhile
            if abandoned.is_set():
                raise _Abandoned
            self.outbox.add(chunk)
            if self.outbox.full():
                seconds = timeout()
                flush = asyncio.run_coroutine_threadsafe(self._flush(replies), loop)
                flush.result(timeout=seconds + 5.0)  # _flush is bounded by ``seconds`` itself

        try:
            await asyncio.to_thread(op.plan.write, add)
        finally:
            abandoned.set()


class _Replies(asyncio.Protocol):
    """The connection's protocol during a batch: every byte the server sends is kept and
    parsed into replies on demand; flow control and the loss of the connection are passed
    on to aiosmtplib's protocol (``inner``), which gets the transport back afterwards."""

    def __init__(self, transport: asyncio.Transport, inner: asyncio.BaseProtocol) -> None:
        self.transport = transport
        self.inner = inner
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.gone: OSError | None = None  # why nothing more will come
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None  # a read or a drain waits on it

    # -- asyncio.Protocol ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self._lose(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(exc)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.paused = True
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.paused = False
        self.inner.resume_writing()
        self._wake()

    # -- for the runner --------------------------------------------------------------------

    def check(self) -> None:
        """Raise when nothing can be written any more."""
        if self.gone is not None:
            raise self.gone
        if self.transport.is_closing():
            raise smtplib.SMTPServerDisconnected("Server not connected")

    async def drained(self, seconds: float) -> None:
        """Wait, up to ``seconds``, until the transport's buffer is below its high mark."""
        deadline = self.loop.time() + seconds
        while self.paused:  # bounded by the deadline
            self.check()
            await self._wait(deadline)

    async def read(self, seconds: float) -> tuple[int, bytes]:
        """The next reply, within ``seconds``, as ``smtplib.SMTP.getreply()`` gives it."""
        deadline = self.loop.time() + seconds
        while True:  # bounded by the deadline
            reply = self._parse()
            if reply is not None:
                return reply
            if self.gone is not None:
                raise self.gone
            await self._wait(deadline)

    def _parse(self) -> tuple[int, bytes] | None:
        lines: list[bytes] = []
        offset = 0
        while True:
            end = self.buffer.find(b"\n", offset)
            if end == -1:
                if len(self.buffer) - offset > MAX_LINE:
                    raise smtplib.SMTPResponseException(500, "Line too long.")
                return None
            if end + 1 - offset > MAX_LINE:
                raise smtplib.SMTPResponseException(500, "Line too long.")
            line = bytes(self.buffer[offset : end + 1])
            offset = end + 1
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        del self.buffer[:offset]
        return code, b"\n".join(lines)

    async def _wait(self, deadline: float) -> None:
        waiter = self.waiter = self.loop.create_future()
        try:
            await asyncio.wait_for(waiter, max(deadline - self.loop.time(), 0.0))
        except asyncio.TimeoutError:
            raise TimeoutError("timed out") from None
        finally:
            self.waiter = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _lose(self, exc: Exception | None) -> None:
        if self.gone is None:
            self.gone = smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            self.gone.__cause__ = exc
        self._wake()
