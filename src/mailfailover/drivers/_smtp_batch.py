"""Many messages over one SMTP connection: the body of :meth:`SMTPDriver.send_batch`.

One pooled connection is checked out per ``batch_size`` messages and every message goes
over it in its own transaction (``MAIL FROM``, ``RCPT TO``…, ``DATA``, content), with the
same plan, the same receipt and the same error classification as ``send()``. ``RSET`` is
sent only on checkout and between a failed transaction and the next.

Where the server's EHLO offers PIPELINING (RFC 2920) the commands go in groups, one write
each, and the replies are read after the write, in order: the previous message's content
and end-of-data mark (content may start a group, §3.1), an ``RSET`` if the previous
transaction failed, then this message's ``MAIL FROM``, every ``RCPT TO`` and ``DATA``
(which must end a group: its answer changes state). Content is written only after its
``354``; when ``DATA`` is refused (every recipient refused: ``503``/``554``) no content is
sent, and when a server answers ``354`` although nothing can be delivered, a lone dot ends
the data (§3.1: "the client SMTP should send a single dot"). Without PIPELINING the same
transactions go in lock-step, one command per write.

Every unread reply belongs to a known message, so a failure mid-batch is exact: a message
whose final reply was read keeps its result; the message whose end-of-data mark the kernel
took and whose final reply is missing is ``ambiguous`` (as ``send()`` after the mark); a
message whose content was not (fully) handed over is not; the messages after it were not
sent. A ``421`` ends the session the same way. When some of the batch had gone through,
the messages none of whose content went out (their turn never came, or the session ended
in their envelope) are sent once more on a fresh connection (a server's cap on messages
per connection ends a session this way); a second early end leaves them to fail over. The
connection goes back to the pool only when the batch ended in a known state.

The session is sans-I/O (:class:`Transactions`): it yields what it needs done (hand the
gathered bytes over, add a message's DATA, read one reply) and is sent the answers. The
blocking runner here (:class:`_Session`, for ``send_batch``) and the asyncio runner
(:mod:`._smtp_async_batch`, for ``asend_batch``) only do that I/O, so both put the same
bytes on the wire and give the same answers.
"""

from __future__ import annotations

import copy
import smtplib
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from ..driver import Receipt, check_tags_and_metadata
from ..errors import DeliveryError, ProviderUnavailable
from ..message import Message
from .smtp import SMTPDriver, _Connection, _Phase, _Plan, _RecipientReplies

__all__ = ["Batch", "Content", "Outbox", "Transactions", "drive", "send_batch"]

T = TypeVar("T")

#: Content is handed to the socket in writes of about this size (as ``send()`` does).
FLUSH_AT = 64 * 1024

RSET = b"RSET\r\n"
DATA = b"DATA\r\n"
LONE_DOT = b".\r\n"


def send_batch(driver: SMTPDriver, messages: Sequence[Message]) -> list[Receipt | Exception]:
    """Each message's receipt or error, in order: ``batch_size`` messages per connection."""
    out: list[Receipt | Exception] = []
    size = max(driver.batch_size, 1)
    for start in range(0, len(messages), size):
        out.extend(_one_connection(driver, messages[start : start + size]))
    return out


def _one_connection(driver: SMTPDriver, messages: Sequence[Message]) -> list[Receipt | Exception]:
    batch = Batch(driver, messages)
    for attempt in (1, 2):
        if not batch.todo:
            break
        phase = _Phase()
        try:
            connection = driver._checkout(phase)
        except DeliveryError as exc:  # nothing was sent: each message fails over on its own
            batch.unreachable(exc)
            break
        session = _Session(driver, connection, messages, batch.out, batch.todo)
        try:
            clean = session.run()
        except BaseException:
            connection.discard()
            raise
        if clean:
            driver._release(connection)
            break
        connection.discard()
        if not batch.again(session, attempt, reused=connection.reused):
            break
    return batch.answers()


class Batch:
    """The messages of one checkout and their answers, for either runner: the checks made
    before any I/O, and what happens after a session (done, or retried once)."""

    def __init__(self, driver: SMTPDriver, messages: Sequence[Message]) -> None:
        self.messages = messages
        self.out: list[Receipt | Exception | None] = [None] * len(messages)
        self.todo: list[int] = []
        for index, message in enumerate(messages):
            try:  # the checks send() makes before connecting: no I/O
                driver.check_limits(message)
                check_tags_and_metadata(driver, message)
            except Exception as exc:
                self.out[index] = exc
                continue
            self.todo.append(index)

    def unreachable(self, exc: DeliveryError) -> None:
        """No connection: nothing was sent, each message fails over with ``exc``."""
        for number, index in enumerate(self.todo):
            self.out[index] = exc if number == 0 else copy.copy(exc)

    def again(self, session: Transactions, attempt: int, *, reused: bool) -> bool:
        """Whether to retry on a fresh connection after a session that did not end clean."""
        if attempt != 1:
            return False
        if reused and session.retryable():
            # A pooled connection the server dropped (or 421) before answering anything of
            # this batch: nothing was sent, so one fresh connection is safe and invisible.
            for index in self.todo:
                self.out[index] = None
            return True
        if session.answered > 0 and session.unsent:
            # Dropped (or 421: many servers cap messages per connection) after some of the
            # batch went through: the messages none of whose content went out were not
            # delivered, so they go once more, on a fresh connection, rather than each
            # failing over and counting against this driver's health. A message whose
            # content (or part of it) went out keeps its answer.
            for index in session.unsent:
                self.out[index] = None
            self.todo = list(session.unsent)
            return True
        return False

    def answers(self) -> list[Receipt | Exception]:
        done = [answer for answer in self.out if answer is not None]
        assert len(done) == len(self.messages)  # every message got its answer
        return done


class _Ended(Exception):
    """The session cannot go on (a ``421``, or a reply out of step); ``cause`` says why."""

    def __init__(self, cause: DeliveryError) -> None:
        super().__init__(cause.detail)
        self.cause = cause


class Outbox:
    """Bytes for the server, gathered so they go in as few writes as the protocol allows.

    ``queued`` counts the bytes added, ``sent`` the bytes handed over (a runner counts
    them), so after a failed write it is known whether a message's end-of-data mark went
    out (ambiguous) or not.
    """

    __slots__ = ("buffer", "queued", "sent")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.queued = 0  # bytes added so far
        self.sent = 0  # bytes handed over so far

    def add(self, data: bytes) -> None:
        self.buffer += data
        self.queued += len(data)

    def full(self) -> bool:
        return len(self.buffer) >= FLUSH_AT

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class _SocketOutbox(Outbox):
    """The blocking runner's outbox: a write goes to the socket as soon as it is full."""

    __slots__ = ("connection", "timeout")

    def __init__(self, connection: _Connection, timeout: Callable[[], float]) -> None:
        super().__init__()
        self.connection = connection
        self.timeout = timeout

    def add(self, data: bytes) -> None:
        super().add(data)
        if self.full():
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        sock = self.connection.smtp.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("Server not connected")
        data = memoryview(self.take())
        self.connection.set_timeout(self.timeout())
        done = 0
        try:
            while done < len(data):
                done += sock.send(data[done:])
        finally:
            self.sent += done


class _Item:
    """One message's transaction in the batch."""

    __slots__ = ("end_at", "index", "mail", "message", "phase", "plan", "rcpts", "recipients")

    def __init__(self, index: int, message: Message, plan: _Plan, phase: _Phase) -> None:
        self.index = index
        self.message = message
        self.plan = plan
        self.phase = phase
        self.recipients = _RecipientReplies()
        self.mail, self.rcpts = _commands(plan)
        self.end_at: int | None = None  # the outbox position just past the end-of-data mark


def _commands(plan: _Plan) -> tuple[bytes, list[bytes]]:
    """``MAIL FROM`` and each ``RCPT TO`` line, as smtplib's ``mail()``/``rcpt()`` put them."""
    encoding = "utf-8" if "SMTPUTF8" in plan.options else "ascii"
    options = "".join(f" {option}" for option in plan.options)
    lines = [f"MAIL FROM:{smtplib.quoteaddr(plan.sender)}{options}"]
    lines += [f"RCPT TO:{smtplib.quoteaddr(address)}" for _, address in plan.recipients]
    for line in lines:
        if "\r" in line or "\n" in line:  # smtplib's own guard; Message refuses these first
            raise ValueError("a line break in an SMTP command")
    mail, *rcpts = (f"{line}\r\n".encode(encoding) for line in lines)
    return mail, rcpts


# -- the I/O a session asks its runner for -------------------------------------------------


class Flush:
    """Hand everything in the outbox to the server (one write); the answer is ``None``."""


class Read:
    """Read the next reply; the answer is ``(code, text as bytes)``, as smtplib's
    ``getreply()`` gives it."""


class Content:
    """Add ``plan``'s DATA (dot-stuffed, with its end-of-data mark) to the outbox, handing
    a write over each time it is full; the answer is ``None``."""

    __slots__ = ("plan",)

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan


FLUSH = Flush()
READ = Read()

#: What a session yields to its runner; the runner sends back the answer, or throws in
#: the exception the I/O raised (in smtplib's and the socket layer's terms).
Op = Flush | Read | Content
Steps = Generator[Op, Any, T]


class Transactions:
    """The messages of one checkout, over one connection, in order: sans I/O.

    :meth:`steps` yields the I/O it needs (:data:`Op`) and is sent each one's answer; the
    blocking runner (:class:`_Session`) and the asyncio one
    (:mod:`._smtp_async_batch`) only do that I/O, so both say exactly the same thing.
    """

    def __init__(
        self,
        driver: SMTPDriver,
        messages: Sequence[Message],
        out: list[Receipt | Exception | None],
        todo: list[int],
        outbox: Outbox,
        has_extn: Callable[[str], bool],
    ) -> None:
        self.driver = driver
        self.messages = messages
        self.out = out
        self.todo = todo
        self.has_extn = has_extn
        self.pipelining = has_extn("pipelining")
        self.outbox = outbox
        self.carry: _Item | None = None  # its content is queued or sent; final reply unread
        self.current: _Item | None = None  # its envelope is out; its replies are being read
        self.dirty = False  # the last transaction failed: RSET before the next MAIL FROM
        self.answered = 0  # replies read in this session
        self.failure: DeliveryError | None = None  # why the session ended early
        #: Messages none of whose content went out when the session ended early: their
        #: turn never came, or it ended during their envelope. Not delivered, so safe to
        #: send again (:meth:`Batch.again`).
        self.unsent: list[int] = []

    def steps(self) -> Steps[bool]:
        """Send every message of ``todo``; True when the connection is clean for reuse."""
        try:
            for index in self.todo:
                item = self._prepare(index)
                if item is None:
                    continue
                self.current = item
                if self.pipelining:
                    yield from self._pipelined(item)
                else:
                    yield from self._lockstep(item)
                self.current = None
            yield from self._finish_carry()
        except _Ended as ended:
            self._abandon(ended.cause)
            return False
        except Exception as exc:  # OSError: smtplib's, socket and TLS errors
            self._lost(exc)
            return False
        return True

    def retryable(self) -> bool:
        """The session ended before the server answered anything of it (see ``send()``)."""
        if self.failure is None or self.answered > 0:
            return False
        return isinstance(self.failure, ProviderUnavailable) and self.driver._worth_retrying(
            self.failure, _envelope()
        )

    # -- one message ---------------------------------------------------------------------

    def _prepare(self, index: int) -> _Item | None:
        """The message's plan and commands (no I/O), or None with its error recorded."""
        message = self.messages[index]
        phase = _envelope()
        try:
            with self.driver._errors(phase):
                return _Item(index, message, self._plan(index, message), phase)
        except Exception as exc:
            self.out[index] = exc
            return None

    def _plan(self, index: int, message: Message) -> _Plan:
        return self.driver.plan(message, self.has_extn)

    def _pipelined(self, item: _Item) -> Steps[None]:
        """One group: [previous content + end mark] [RSET] MAIL FROM, RCPT TO…, DATA."""
        rset, self.dirty = self.dirty, False
        if rset:
            yield from self._add(RSET)
        yield from self._add(item.mail)
        for line in item.rcpts:
            yield from self._add(line)
        yield from self._add(DATA)
        yield FLUSH
        yield from self._read_final()
        if rset:
            yield from self._read_rset(item)
        code, reply = yield from self._reply(item, "MAIL FROM")
        if code != 250:
            self._fail(item, self.driver._reply_error(code, reply, "MAIL FROM", item.phase))
        for (recipient, _), _line in zip(item.plan.recipients, item.rcpts, strict=True):
            code, reply = yield from self._reply(item, "RCPT TO")
            if self.out[item.index] is None:  # after a refused MAIL FROM they say 503
                item.recipients.add(recipient, code, reply)
        if self.out[item.index] is None and not item.recipients.accepted:
            self._fail(item, self.driver._all_refused(item.recipients.refused))
        code, reply = yield from self._reply(item, "DATA", go_ahead=True)
        yield from self._after_data(item, code, reply)

    def _lockstep(self, item: _Item) -> Steps[None]:
        """One command per write, as ``send()`` does, over the same connection."""
        if self.dirty:
            self.dirty = False
            yield from self._add(RSET)
            yield FLUSH
            yield from self._read_rset(item)
        code, reply = yield from self._command(item, item.mail, "MAIL FROM")
        if code != 250:
            self._fail(item, self.driver._reply_error(code, reply, "MAIL FROM", item.phase))
            return
        for (recipient, _), line in zip(item.plan.recipients, item.rcpts, strict=True):
            code, reply = yield from self._command(item, line, "RCPT TO")
            item.recipients.add(recipient, code, reply)
        if not item.recipients.accepted:
            self._fail(item, self.driver._all_refused(item.recipients.refused))
            return
        code, reply = yield from self._command(item, DATA, "DATA", go_ahead=True)
        yield from self._after_data(item, code, reply)
        yield from self._finish_carry()

    def _after_data(self, item: _Item, code: int, reply: bytes) -> Steps[None]:
        """Write the content after a 354; else record the refusal."""
        if code != 354:
            self._fail(item, self.driver._reply_error(code, reply, "DATA", item.phase))
            return
        if self.out[item.index] is not None:
            # RFC 2920 §3.1: DATA was accepted though nothing can be delivered (refused
            # sender or every recipient): a single dot ends it, with no content.
            yield from self._add(LONE_DOT)
            yield FLUSH
            yield from self._reply(item, "end of DATA")
            return
        item.phase.value = _Phase.CONTENT
        yield Content(item.plan)
        item.end_at = self.outbox.queued
        self.carry = item  # pipelined: the content starts the next group

    def _finish_carry(self) -> Steps[None]:
        if self.carry is not None:
            yield FLUSH
            yield from self._read_final()

    def _read_final(self) -> Steps[None]:
        """The final reply to the carried message, whose content and end mark are out."""
        item = self.carry
        if item is None:
            return
        item.phase.value = _Phase.SENT
        code, reply = yield from self._reply(item, "end of DATA")
        self.carry = None
        if code == 250:
            self.out[item.index] = self.driver._receipt(item.message, code, reply, item.recipients)
        else:  # the transaction is over either way (RFC 5321 §4.1.1.4): no RSET needed
            self.out[item.index] = self.driver._reply_error(code, reply, "end of DATA", item.phase)

    def _read_rset(self, item: _Item) -> Steps[None]:
        code, reply = yield from self._reply(None, "RSET")
        if code != 250:
            raise self._end(self.driver._reply_error(code, reply, "RSET", item.phase))

    def _fail(self, item: _Item, error: DeliveryError) -> None:
        if self.out[item.index] is None:
            self.out[item.index] = error
        self.dirty = True

    # -- writes and replies --------------------------------------------------------------

    def _add(self, data: bytes) -> Steps[None]:
        self.outbox.add(data)
        if self.outbox.full():
            yield FLUSH

    def _command(
        self, item: _Item, line: bytes, step: str, *, go_ahead: bool = False
    ) -> Steps[tuple[int, bytes]]:
        yield from self._add(line)
        yield FLUSH
        return (yield from self._reply(item, step, go_ahead=go_ahead))

    def _reply(
        self, item: _Item | None, step: str, *, go_ahead: bool = False
    ) -> Steps[tuple[int, bytes]]:
        """The next reply, which answers ``item``'s ``step``; a ``421``, or a reply that
        cannot answer that step, ends the session (``item`` gets it as its error)."""
        code, reply = yield READ
        in_step = 200 <= code < 300 or 400 <= code < 600 or (go_ahead and code == 354)
        if code == 421 or not in_step:
            phase = item.phase if item is not None else _envelope()
            error = self.driver._reply_error(code, reply, step, phase)
            if item is not None and self.out[item.index] is None:
                self.out[item.index] = error
                self._unsent_if_in_envelope(item)
            raise self._end(error)
        self.answered += 1
        return code, reply

    # -- the end of a session ------------------------------------------------------------

    def _end(self, cause: DeliveryError) -> _Ended:
        self.failure = cause
        return _Ended(cause)

    def _lost(self, exc: Exception) -> None:
        """The connection failed: each message in flight gets its error by its phase."""
        for item in (self.carry, self.current):
            if item is None or self.out[item.index] is not None:
                continue
            if item.end_at is not None and self.outbox.sent >= item.end_at:
                item.phase.value = _Phase.SENT
            self.out[item.index] = self._translated(exc, item.phase)
            self._unsent_if_in_envelope(item)
        cause = self._translated(exc, _envelope())
        self.failure = cause
        self._abandon(cause)

    def _unsent_if_in_envelope(self, item: _Item) -> None:
        if item.phase.value == _Phase.ENVELOPE:  # MAIL FROM, RCPT TO or DATA: no content
            self.unsent.append(item.index)

    def _translated(self, exc: Exception, phase: _Phase) -> DeliveryError:
        """``exc`` through the driver's one error boundary, as ``send()`` would raise it."""
        if not isinstance(exc, OSError):  # not a transport failure: a bug, kept as the cause
            error = ProviderUnavailable(
                f"the batch stopped {phase.words()}: {type(exc).__name__}",
                reason="bug", ambiguous=phase.value == _Phase.SENT, driver=self.driver.name,
            )  # fmt: skip
            error.__cause__ = exc
            return error
        try:
            with self.driver._errors(phase):
                raise exc
        except DeliveryError as error:
            return error
        raise AssertionError("unreachable")  # pragma: no cover

    def _abandon(self, cause: DeliveryError) -> None:
        """Every message still without an answer was not sent: it fails over."""
        for index in self.todo:
            if self.out[index] is None:
                error = ProviderUnavailable(
                    f"not sent: the connection ended before this message's turn ({cause.detail})",
                    reason=cause.reason if isinstance(cause, ProviderUnavailable) else "connection",
                    status=cause.status, driver=self.driver.name,
                )  # fmt: skip
                error.__cause__ = cause
                self.out[index] = error
                self.unsent.append(index)


class _Session(Transactions):
    """:class:`Transactions` over a blocking connection (``send_batch``)."""

    def __init__(
        self,
        driver: SMTPDriver,
        connection: _Connection,
        messages: Sequence[Message],
        out: list[Receipt | Exception | None],
        todo: list[int],
    ) -> None:
        self.connection = connection
        self.smtp = connection.smtp
        self.socket = _SocketOutbox(connection, driver._timeout)
        super().__init__(driver, messages, out, todo, self.socket, self.smtp.has_extn)

    def run(self) -> bool:
        """Do the I/O :meth:`steps` asks for; True when the connection is clean for reuse."""
        return drive(self.steps(), self._do)

    def _do(self, op: Op) -> Any:
        if isinstance(op, Read):
            self.connection.set_timeout(self.driver._timeout())
            return self.smtp.getreply()
        if isinstance(op, Content):
            op.plan.write(self.socket.add)
        else:
            self.socket.flush()
        return None


def drive(steps: Steps[T], do: Callable[[Op], Any]) -> T:
    """Run ``steps`` with ``do`` doing each I/O; an exception it raises is thrown in."""
    answer: Any = None
    failed: Exception | None = None
    while True:
        try:
            op = steps.send(answer) if failed is None else steps.throw(failed)
        except StopIteration as stop:
            result: T = stop.value
            return result
        answer, failed = None, None
        try:
            answer = do(op)
        except Exception as exc:
            failed = exc


def _envelope() -> _Phase:
    phase = _Phase()
    phase.value = _Phase.ENVELOPE
    return phase
