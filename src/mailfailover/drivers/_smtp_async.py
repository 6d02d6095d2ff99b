"""The asyncio side of :class:`~.smtp.SMTPDriver` (``asend``), on ``aiosmtplib``.

Only the I/O lives here. What is said to the server (the envelope, MAIL FROM's options,
the dot-stuffed DATA: :meth:`SMTPDriver.plan`), which AUTH mechanism is used
(:func:`~.smtp._auth_mechanism`), how a reply or a failure is classified (the sync
driver's ``_reply_error``, ``_all_refused`` and ``_transport_error``, by
:class:`~.smtp._Phase`: only a failure after the end-of-data mark is ambiguous) and the
receipt are the blocking driver's own, so the two paths cannot drift.

* **Connections**: one pool per event loop (a connection belongs to the loop that opened
  it). An idle connection answers RSET before it is reused; at most ``pool_size`` are kept
  idle; one dropped by the server before anything was sent is retried once on a fresh
  connection (``SMTPDriver._worth_retrying``). A send that fails in an unknown state, or is
  cancelled, aborts its connection: it is never pooled. Used from a new loop after the old
  one closed, the old loop's connections are dropped (their sockets closed without the
  loop, :func:`~._loops.reclaim`) and a new pool starts; used from a second loop while the
  first is still open, it raises ``RuntimeError``.
* **Timeouts**: each step (connect, greeting, each command, each 64 KB of DATA written,
  the final reply) waits at most ``timeout`` seconds, shortened to what is left of the
  mailer's deadline (:func:`~mailfailover.driver.remaining_time`).
* **Batches** (``asend_batch``, :mod:`._smtp_async_batch`): the blocking batch's
  sans-I/O session over a connection of this pool, pipelined where offered; aiosmtplib's
  protocol cannot read pipelined replies, so for the batch the transport is lent to a
  reply reader of the driver's (``transport.set_protocol``) and given back after.
* **Closing**: every close ends in ``transport.abort()`` (:class:`_Session`). aiosmtplib
  closes a connection itself after a 421, on an error and after QUIT; under TLS its
  ``transport.close()`` starts a ``close_notify`` exchange that needs more turns of the
  loop, and an ``asyncio.run`` that ends first leaves the socket open (a
  ``ResourceWarning`` for the garbage collector). The sync driver's ``smtplib`` closes the
  socket without ``close_notify`` too.
* **Errors**: :data:`AIOSMTPLIB_ERRORS` says, for every exception class ``aiosmtplib``
  defines, what the same failure is in :mod:`smtplib`'s (and the socket layer's) terms, so
  that the sync driver's classifier decides it; a test walks aiosmtplib's hierarchy so a
  class added by a future version fails until its meaning is decided. ``ValueError`` and
  ``RuntimeError`` (an address or a host name aiosmtplib refuses to put on a command line,
  a misuse of the client) are not caught: they are bugs, as in the sync driver.

**aiosmtplib internals relied on** (``tests/drivers/test_smtp_async.py`` fails if they
change). ``SMTP.data()`` dot-stuffs and takes the whole message; the plan's chunks are
already stuffed and may be streamed, so DATA is sent with ``execute_command`` and the
chunks are written through the client's protocol:

* ``SMTP.protocol`` (an :class:`aiosmtplib.protocol.SMTPProtocol`): ``write(data)`` puts
  bytes on the transport as they are (no stuffing, no line-end conversion), and
  ``read_response(timeout)`` reads one reply. Public methods, but of the protocol object.
* ``SMTPProtocol._drain_helper()`` (asyncio's ``FlowControlMixin`` convention, which
  aiosmtplib copies): waits while the transport's write buffer is above its high-water
  mark. Private; it is what keeps a streamed message from piling up in memory.
* A reply that arrives while no command awaits one is dropped by the protocol. So the last
  chunk (the end-of-data mark) is written with no ``await`` between it and
  ``read_response``, which marks a reply as expected before it first yields.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import aiosmtplib
import aiosmtplib.errors as ae
from aiosmtplib.protocol import SMTPProtocol

from ..driver import Receipt
from ..errors import DeliveryError, ProviderUnavailable
from ..message import Message
from ._loops import reclaim
from ._smtp_data import STREAM_ABOVE, estimated_size
from .smtp import _auth_mechanism, _fqdn, _Phase, _Plan, _RecipientReplies, _text

if TYPE_CHECKING:
    from .smtp import SMTPDriver

__all__ = ["AIOSMTPLIB_ERRORS", "CAUGHT", "AsyncSMTP", "in_smtplib_terms"]

logger = logging.getLogger("mailfailover")


def _wire(text: str) -> bytes:
    """A reply's text as the server sent it (aiosmtplib decodes with surrogateescape), so
    the shared classifiers read the same bytes smtplib would have given them."""
    return text.encode("utf-8", "surrogateescape")


def _connect_error(exc: BaseException) -> OSError:
    # aiosmtplib wraps the socket's own error (refused, unreachable, a TLS certificate
    # refused during an implicit-TLS handshake) as the cause; without one, the server
    # closed the connection before its greeting.
    cause = exc.__cause__
    if isinstance(cause, OSError) and not isinstance(cause, ae.SMTPException):
        return cause
    return smtplib.SMTPServerDisconnected(str(exc))


def _reply(cls: type[smtplib.SMTPResponseException]) -> Callable[[BaseException], OSError]:
    def convert(exc: BaseException) -> OSError:
        assert isinstance(exc, ae.SMTPResponseException)
        return cls(exc.code, _wire(exc.message))

    return convert


#: For every exception class aiosmtplib defines: the same failure in smtplib's terms (the
#: vocabulary of ``SMTPDriver._transport_error``). ``SMTPRecipientsRefused`` (every
#: recipient refused) goes to ``SMTPDriver._all_refused`` instead; it is only raised by
#: ``sendmail``, which this driver does not use.
AIOSMTPLIB_ERRORS: Mapping[type[BaseException], Callable[[BaseException], OSError] | None] = {
    ae.SMTPException: lambda exc: smtplib.SMTPException(str(exc)),
    ae.SMTPServerDisconnected: lambda exc: smtplib.SMTPServerDisconnected(str(exc)),
    ae.SMTPConnectError: _connect_error,
    ae.SMTPTimeoutError: lambda exc: TimeoutError(str(exc)),
    ae.SMTPConnectTimeoutError: lambda exc: TimeoutError(str(exc)),
    ae.SMTPReadTimeoutError: lambda exc: TimeoutError(str(exc)),
    ae.SMTPNotSupported: lambda exc: smtplib.SMTPNotSupportedError(str(exc)),
    ae.SMTPResponseException: _reply(smtplib.SMTPResponseException),
    ae.SMTPConnectResponseError: _reply(smtplib.SMTPConnectError),
    ae.SMTPHeloError: _reply(smtplib.SMTPHeloError),
    ae.SMTPDataError: _reply(smtplib.SMTPDataError),
    ae.SMTPAuthenticationError: _reply(smtplib.SMTPAuthenticationError),
    ae.SMTPSenderRefused: _reply(smtplib.SMTPResponseException),
    ae.SMTPRecipientRefused: _reply(smtplib.SMTPResponseException),
    ae.SMTPRecipientsRefused: None,
}

#: What the boundary catches: aiosmtplib's root, socket and TLS errors (a connection reset
#: while a chunk waits to drain, a certificate refused during STARTTLS) and a timeout of
#: our own (``asyncio.TimeoutError`` is not an ``OSError`` before Python 3.11). Never
#: ``asyncio.CancelledError``.
CAUGHT: tuple[type[BaseException], ...] = (ae.SMTPException, OSError, asyncio.TimeoutError)


def in_smtplib_terms(exc: BaseException) -> OSError:
    """``exc`` (anything in :data:`CAUGHT` but ``SMTPRecipientsRefused``) as smtplib and
    the socket layer would have raised it."""
    for cls in type(exc).__mro__:
        if cls in AIOSMTPLIB_ERRORS:
            convert = AIOSMTPLIB_ERRORS[cls]
            assert convert is not None, "SMTPRecipientsRefused is classified by _all_refused"
            return convert(exc)
    if isinstance(exc, OSError):
        return exc
    return TimeoutError(str(exc))  # asyncio.TimeoutError on Python 3.10


class _Abandoned(Exception):
    """The send that streamed this DATA is gone: stop generating it."""


class _Session(aiosmtplib.SMTP):
    """aiosmtplib's client, whose every close (its own, after a 421, an error or QUIT,
    and ours) releases the socket now rather than after a TLS goodbye (module doc)."""

    def close(self) -> None:
        transport = self.transport
        super().close()
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()  # after close(): ends a close_notify exchange it started


class _Connection:
    """One open aiosmtplib session, used by one send at a time, in its loop."""

    __slots__ = ("pool", "reused", "smtp")

    def __init__(self, smtp: aiosmtplib.SMTP, pool: _LoopPool) -> None:
        self.smtp = smtp
        self.pool = pool
        self.reused = False

    def discard(self) -> None:
        """Drop the connection at once, without a goodbye (its state is unknown): nothing
        still buffered is sent."""
        _abort(self.smtp)

    async def quit(self, timeout: float) -> None:
        """Say QUIT politely, then close; a dead peer is not an error here."""
        try:
            await self.smtp.quit(timeout=timeout)
        except CAUGHT:
            pass
        finally:
            self.discard()


class _LoopPool:
    """The idle connections of one event loop, at most ``size`` of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.size = size
        self.idle: list[_Connection] = []
        self.closed = False
        self.quitting: set[asyncio.Task[None]] = set()


class AsyncSMTP:
    """The asyncio I/O of one :class:`SMTPDriver`: its connections and its transaction."""

    def __init__(self, driver: SMTPDriver) -> None:
        self.driver = driver
        self._pool: _LoopPool | None = None
        self._closing: asyncio.Task[None] | None = None  # a close scheduled from in the loop

    # -- the send path ---------------------------------------------------------------------

    async def send(self, message: Message) -> Receipt:
        """As :meth:`SMTPDriver.send` (the caller has checked the message's limits)."""
        driver = self.driver
        for attempt in (1, 2):
            phase = _Phase()
            connection = await self._checkout(phase)
            try:
                with self._errors(phase):
                    receipt = await self._transaction(connection, message, phase)
            except ProviderUnavailable as exc:
                connection.discard()
                if attempt == 1 and connection.reused and driver._worth_retrying(exc, phase):
                    # A pooled connection the server dropped between our RSET and MAIL FROM:
                    # nothing was sent, so one fresh connection is safe and invisible.
                    logger.debug("%s: pooled connection dropped; reconnecting", driver.name)
                    continue
                raise
            except DeliveryError:
                self._release(connection)  # the session is fine; RSET on reuse clears it
                raise
            except BaseException:  # cancelled, or a bug: the session's state is unknown
                connection.discard()
                raise
            self._release(connection)
            return receipt
        raise AssertionError("unreachable")  # pragma: no cover

    async def _transaction(
        self, connection: _Connection, message: Message, phase: _Phase
    ) -> Receipt:
        driver = self.driver
        smtp = connection.smtp
        phase.value = _Phase.ENVELOPE
        if estimated_size(message) > STREAM_ABOVE:  # generating it takes a while: not here
            plan = await asyncio.to_thread(driver.plan, message, smtp.supports_extension)
        else:
            plan = driver.plan(message, smtp.supports_extension)
        encoding = "utf-8" if "SMTPUTF8" in plan.options else "ascii"
        try:
            await smtp.mail(
                plan.sender, options=plan.options, encoding=encoding, timeout=driver._timeout()
            )
        except ae.SMTPSenderRefused as exc:
            raise driver._reply_error(exc.code, _wire(exc.message), "MAIL FROM", phase) from None
        recipients = _RecipientReplies()
        for recipient, address in plan.recipients:
            try:
                answer = await smtp.rcpt(address, encoding=encoding, timeout=driver._timeout())
            except ae.SMTPRecipientRefused as exc:
                if exc.code == 421:
                    raise driver._reply_error(exc.code, _wire(exc.message), "RCPT TO",
                                              phase) from None  # fmt: skip
                recipients.add(recipient, exc.code, _wire(exc.message))
            else:
                recipients.add(recipient, answer.code, _wire(answer.message))
        if not recipients.accepted:
            raise driver._all_refused(recipients.refused)
        answer = await smtp.execute_command(b"DATA", timeout=driver._timeout())
        if answer.code != 354:
            raise driver._reply_error(answer.code, _wire(answer.message), "DATA", phase)
        protocol = smtp.protocol
        if protocol is None:
            raise ae.SMTPServerDisconnected("Connection lost")
        phase.value = _Phase.CONTENT
        await self._write(protocol, plan)
        # No await between the end-of-data mark (written last by _write) and this read.
        phase.value = _Phase.SENT
        answer = await protocol.read_response(timeout=driver._timeout())
        if answer.code != 250:
            raise driver._reply_error(answer.code, _wire(answer.message), "end of DATA", phase)
        return driver._receipt(message, answer.code, _wire(answer.message), recipients)

    async def _write(self, protocol: SMTPProtocol, plan: _Plan) -> None:
        """Write the plan's DATA, each chunk drained before the next; the last one (with
        the end-of-data mark) is written and not awaited, so the caller's read of the final
        reply is armed before the loop can deliver it."""
        timeout = self.driver._timeout
        if plan.chunks is not None:  # in memory already
            pieces: list[bytes] = []
            plan.write(pieces.append)
            for piece in pieces[:-1]:
                await _put(protocol, piece, timeout())
            protocol.write(pieces[-1])
            return
        # Streamed: generated in a worker thread, written here one chunk behind, so that
        # the last chunk is known when the generator returns.
        loop = asyncio.get_running_loop()
        held: list[bytes] = []
        abandoned = threading.Event()

        def send(chunk: bytes) -> None:  # in the worker thread
            if held:
                if abandoned.is_set():
                    raise _Abandoned
                seconds = timeout()
                put = asyncio.run_coroutine_threadsafe(_put(protocol, held.pop(), seconds), loop)
                put.result(timeout=seconds + 5.0)  # _put is bounded by ``seconds`` itself
            held.append(chunk)

        try:
            await asyncio.to_thread(plan.write, send)
        finally:
            abandoned.set()
        protocol.write(held.pop())

    # -- connections -----------------------------------------------------------------------

    def _pool_here(self) -> _LoopPool:
        """This event loop's pool (a new one when the loop changed; see the module doc)."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and pool.loop is loop:
            return pool
        if pool is not None:
            if not pool.loop.is_closed() and not pool.closed:
                raise RuntimeError(
                    "this SMTP driver's async connections belong to another event loop that "
                    "is still open; use one driver per event loop (or aclose() it first)"
                )
            self._abandon(pool)
        self._pool = _LoopPool(loop, int(self.driver.settings["pool_size"]))
        return self._pool

    async def _checkout(self, phase: _Phase) -> _Connection:
        """An idle connection of this loop that answers RSET, else a new one."""
        pool = self._pool_here()
        while pool.idle:  # bounded: each turn removes one
            connection = pool.idle.pop()
            if await self._alive(connection):
                connection.reused = True
                return connection
            connection.discard()
        return await self._connect(pool, phase)

    async def _alive(self, connection: _Connection) -> bool:
        try:
            await connection.smtp.rset(timeout=self.driver._timeout())
        except CAUGHT:
            return False
        except BaseException:
            connection.discard()
            raise
        return True

    async def _connect(self, pool: _LoopPool, phase: _Phase) -> _Connection:
        driver = self.driver
        s = driver.settings
        local_hostname = s["local_hostname"] or await asyncio.to_thread(_fqdn)
        implicit = s["security"] == "ssl"
        smtp = _Session(
            hostname=s["host"],
            port=s["port"],
            local_hostname=local_hostname,
            use_tls=implicit,
            start_tls=False,  # done below, where a missing STARTTLS is refused
            tls_context=driver._tls if implicit else None,
            timeout=driver._timeout(),
        )
        try:
            with self._errors(phase):
                await smtp.connect(timeout=driver._timeout())
                await self._hello(smtp)
                if s["security"] == "starttls":
                    if not smtp.supports_extension("starttls"):
                        raise driver._no_starttls()
                    await smtp.starttls(tls_context=driver._tls, timeout=driver._timeout())
                    await self._hello(smtp)
                if s["username"] is not None:
                    await self._login(smtp)
        except BaseException:
            _abort(smtp)
            raise
        return _Connection(smtp, pool)

    async def _hello(self, smtp: aiosmtplib.SMTP) -> None:
        """EHLO, else HELO (as smtplib's ``ehlo_or_helo_if_needed``)."""
        try:
            await smtp.ehlo(timeout=self.driver._timeout())
        except ae.SMTPHeloError:
            if not smtp.is_connected:
                raise
            await smtp.helo(timeout=self.driver._timeout())

    async def _login(self, smtp: aiosmtplib.SMTP) -> None:
        """AUTH with the one mechanism the sync driver would pick."""
        offered = smtp.esmtp_extensions.get("auth") if smtp.supports_extension("auth") else None
        mechanism = _auth_mechanism(offered)
        method = {"PLAIN": smtp.auth_plain, "LOGIN": smtp.auth_login,
                  "CRAM-MD5": smtp.auth_crammd5}[mechanism]  # fmt: skip
        s = self.driver.settings
        await method(s["username"], s["password"], timeout=self.driver._timeout())

    def _release(self, connection: _Connection) -> None:
        """Back to its loop's pool; or, when that is closed, replaced or full, QUIT it in
        the background (the send has its answer; a goodbye is not worth waiting for)."""
        connection.reused = False
        pool = connection.pool
        if pool is self._pool and not pool.closed and len(pool.idle) < pool.size:
            pool.idle.append(connection)
            return
        task = asyncio.ensure_future(connection.quit(self._quit_timeout()))
        pool.quitting.add(task)
        task.add_done_callback(pool.quitting.discard)

    def _quit_timeout(self) -> float:
        return min(float(self.driver.settings["timeout"]), 2.0)

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """QUIT this loop's idle connections and close the pool (later sends in this loop
        are not pooled, as after the sync driver's ``close()``); safe to call twice."""
        pool = self._pool
        if pool is None:
            return
        if pool.loop is not asyncio.get_running_loop():
            self.close()
            return
        pool.closed = True
        idle, pool.idle = pool.idle, []
        quits = [connection.quit(self._quit_timeout()) for connection in idle]
        await asyncio.gather(*quits, *pool.quitting, return_exceptions=True)

    def close(self) -> None:
        """Close the pool from synchronous code: in its own loop when that loop can be
        entered or reached, scheduled when called from inside it, and without the loop
        (sockets closed, no QUIT) when the loop is closed."""
        pool = self._pool
        if pool is None or (
            pool.closed and not pool.idle and all(task.done() for task in pool.quitting)
        ):
            return
        loop = pool.loop
        if loop.is_closed():
            self._abandon(pool)
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._closing = loop.create_task(self.aclose())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout=10)
        else:
            loop.run_until_complete(self.aclose())

    def _abandon(self, pool: _LoopPool) -> None:
        """Forget a pool whose loop is closed, closing its sockets here (no QUIT: nothing
        can be sent without the loop)."""
        pool.closed = True
        idle, pool.idle = pool.idle, []
        for connection in idle:
            reclaim(connection.smtp.transport)
        if self._pool is pool:
            self._pool = None

    # -- the one error boundary ------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, phase: _Phase) -> Iterator[None]:
        """Translate aiosmtplib, socket and TLS exceptions, by phase, with the sync
        driver's classifier."""
        driver = self.driver
        try:
            yield
        except DeliveryError as exc:
            exc.with_driver(driver.name)
            raise
        except CAUGHT as exc:
            error = failure(driver, exc, phase)
            if driver.shows_secret(exc):  # a server may echo what it was sent
                raise error from None
            raise error from exc


def failure(driver: SMTPDriver, exc: BaseException, phase: _Phase) -> DeliveryError:
    """The :class:`DeliveryError` for ``exc`` (in :data:`CAUGHT`) raised in ``phase``."""
    if isinstance(exc, ae.SMTPRecipientsRefused):
        refused = {r.recipient: (r.code, _text(_wire(r.message))) for r in exc.recipients}
        return driver._all_refused(refused)
    return driver._transport_error(in_smtplib_terms(exc), phase)


def _abort(smtp: aiosmtplib.SMTP) -> None:
    """Close ``smtp``'s connection at once: what is still buffered is not sent."""
    transport = smtp.transport
    if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
        transport.abort()
    smtp.close()


def _drain(protocol: SMTPProtocol) -> Any:
    return protocol._drain_helper()


async def _put(protocol: SMTPProtocol, chunk: bytes, seconds: float) -> None:
    """Write ``chunk`` and wait, up to ``seconds``, until the transport can take more."""
    protocol.write(chunk)
    await asyncio.wait_for(_drain(protocol), seconds)
