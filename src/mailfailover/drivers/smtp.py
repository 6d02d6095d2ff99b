"""``smtp``: delivers through any SMTP server (a relay, Gmail, Office 365, a local Postfix).

Built on the standard library's :mod:`smtplib`. Connections are kept in a small pool and
reused across sends (``RSET`` checks one is alive before it is reused), so a batch does not
pay a TCP + TLS + AUTH handshake per message. Every failure is translated at one boundary
(:meth:`SMTPDriver._errors`) using the phase of the transaction it happened in: only a
failure after the whole message was handed over (waiting for the final reply) is
``ambiguous``.

The message is never held whole as one bytes object. :class:`_Generator` writes the MIME
tree part by part (a base64 attachment is encoded block by block from the attachment's own
bytes: the driver's policies use a content manager that leaves base64 to the generator) into
:class:`DataWriter`, which dot-stuffs on the fly (a line split across two writes
included) and hands the socket chunks of 64 KB with the end-of-data mark on the last.
``SIZE=`` and ``BODY=8BITMIME`` need the message's length and whether it is all ASCII before
``MAIL FROM``: a message estimated at up to 1 MB (text, HTML and attachments) is generated
once into a list of chunks, measured and sent from it; a larger one is generated twice,
once into a counter (which also surfaces any error in building it before the envelope)
and once to the socket after ``DATA``. So ``SIZE=`` is always exact and declared whenever
the server offers it. The second pass costs CPU (about 10 ms per MB of attachment on the
benchmark machine, where the standard ``as_bytes()`` took about 90) only for messages large
enough that holding them would cost far more memory.

Under asyncio, :meth:`SMTPDriver.asend` sends the same plan natively on ``aiosmtplib``
(:mod:`._smtp_async`: only the I/O is there; the plan, the AUTH choice and the
classifiers are this module's).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from email.message import EmailMessage
from email.policy import Policy
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ..driver import (
    Driver,
    Receipt,
    Setting,
    check_tags_and_metadata,
    is_account_problem,
    pool_size_setting,
    remaining_time,
    require,
    timeout_setting,
    tracking_headers,
)
from ..errors import (
    ConfigError,
    DeliveryError,
    MessageRejected,
    ProviderUnavailable,
    UnsupportedFeature,
)
from ..message import Message, parse_mailbox
from ._smtp_data import (
    STREAM_ABOVE,
    SizeCounter,
    estimated_size,
    generate,
    policy_for,
)

if TYPE_CHECKING:
    from ._smtp_async import AsyncSMTP

__all__ = ["SMTPDriver"]

logger = logging.getLogger("mailfailover")

DEFAULT_PORTS: Mapping[str, int] = {"starttls": 587, "ssl": 465, "none": 25}

# send_many's messages per connection checkout (docs/drivers/smtp.md#batches-and-pipelining).
# Pipelined, a batch costs about one round trip per message plus one RSET per checkout, so
# 25 already makes the RSET 4% of it; smaller batches let send_many's workers (4) spread
# as few as 100 messages over 4 connections, and a dropped connection fails over fewer.
DEFAULT_BATCH = 25
MAX_BATCH = 10_000

# Replies that mean "your credentials or authorisation", not "your message":
# 530 authentication required, 534 mechanism too weak, 535 invalid credentials,
# 538 encryption required for the mechanism.
_AUTH_CODES = frozenset({530, 534, 535, 538})

# Postfix "250 2.0.0 Ok: queued as 4bX9...", Exim "250 OK id=1rAbc-000123-XY",
# Sendmail "250 2.0.0 4A1B2C3D Message accepted for delivery".
_QUEUE_ID = (
    re.compile(r"queued as\s+<?([A-Za-z0-9._@:+-]+)>?", re.IGNORECASE),
    re.compile(r"\bid=([A-Za-z0-9._@:+-]+)", re.IGNORECASE),
    re.compile(r"^2\.\d\.\d\s+([A-Za-z0-9]{6,})\s+Message accepted", re.IGNORECASE),
)


class _Phase:
    """Where the SMTP transaction is; decides how a failure is classified."""

    CONNECT = "connect"  # TCP, greeting, EHLO, STARTTLS, AUTH: never ambiguous
    ENVELOPE = "envelope"  # MAIL FROM, RCPT TO, the DATA command itself
    CONTENT = "content"  # writing the message; the end-of-data mark is not out yet
    SENT = "sent"  # the whole message is out; waiting for the final reply: ambiguous

    #: How error text names each phase ("... closed the connection while connecting").
    WORDS: ClassVar[Mapping[str, str]] = {
        CONNECT: "while connecting (greeting, EHLO, STARTTLS, AUTH)",
        ENVELOPE: "during the envelope (MAIL FROM, RCPT TO, DATA)",
        CONTENT: "while sending the message",
        SENT: "after the whole message was sent, waiting for the server's final reply",
    }

    def __init__(self) -> None:
        self.value = self.CONNECT

    def words(self) -> str:
        return self.WORDS[self.value]


class _Connection:
    """One open SMTP session, owned by one thread at a time."""

    __slots__ = ("reused", "smtp")

    def __init__(self, smtp: smtplib.SMTP) -> None:
        self.smtp = smtp
        self.reused = False

    def set_timeout(self, seconds: float) -> None:
        if self.smtp.sock is not None:
            self.smtp.sock.settimeout(seconds)

    def discard(self) -> None:
        """Drop the connection without a goodbye (it is broken or in an unknown state)."""
        with contextlib.suppress(OSError):
            self.smtp.close()

    def quit(self, timeout: float) -> None:
        """Say QUIT politely, then close; a dead peer is not an error here."""
        try:
            self.set_timeout(timeout)
            self.smtp.quit()
        except OSError:
            pass
        finally:
            self.discard()


class _Pool:
    """Idle connections, at most ``size`` of them; the lock is never held during I/O."""

    def __init__(self, size: int) -> None:
        self.size = max(size, 0)
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> _Connection | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def give_back(self, connection: _Connection) -> bool:
        """Keep ``connection`` for reuse; False when the caller must close it instead."""
        with self._lock:
            if self._closed or len(self._idle) >= self.size:
                return False
            self._idle.append(connection)
            return True

    def drain(self) -> list[_Connection]:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            return idle

    def reopen(self) -> None:
        with self._lock:
            self._closed = False


@attrs.frozen
class _Plan:
    """One message's SMTP transaction as the server will see it, worked out before any I/O.

    Shared by the blocking driver and its asyncio twin: only the I/O differs.
    """

    sender: str  # MAIL FROM's address, ASCII unless the transaction is SMTPUTF8
    options: list[str]  # MAIL FROM's parameters (SMTPUTF8, BODY=8BITMIME, SIZE=)
    recipients: list[tuple[str, str]]  # (the message's address, the RCPT TO address)
    mime: EmailMessage
    policy: Policy
    chunks: list[bytes] | None  # the DATA, dot-stuffed with its end mark; None: streamed

    def write(self, send: Callable[[bytes], object]) -> None:
        """Hand the DATA (dot-stuffed, with the end-of-data mark) to ``send`` in pieces."""
        if self.chunks is None:
            generate(self.mime, self.policy, send)
        else:
            for chunk in self.chunks:
                send(chunk)


class _RecipientReplies:
    """The server's answers to RCPT TO, recipient by recipient."""

    __slots__ = ("accepted", "refused")

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.refused: dict[str, tuple[int, str]] = {}

    def add(self, recipient: str, code: int, reply: bytes | str) -> None:
        if 200 <= code < 300:
            self.accepted.append(recipient)
        else:
            self.refused[recipient] = (code, _text(reply))


@functools.lru_cache(maxsize=1)
def _fqdn() -> str:
    # smtplib calls socket.getfqdn() for every connection without a local_hostname; a slow
    # reverse DNS lookup would then be paid per connection, so it is done once.
    return socket.getfqdn()


class SMTPDriver(Driver):
    """Sends through an SMTP server, reusing connections from a small thread-safe pool."""

    async_requires: ClassVar[tuple[tuple[str, str], ...]] = (("aiosmtplib", "async"),)
    settings_spec: ClassVar[Mapping[str, Setting]] = {
        "host": Setting(help="the SMTP server's host name or address"),
        "port": Setting(None, int, help="default 587 for starttls, 465 for ssl, 25 for none"),
        "username": Setting(None, help="user name for AUTH; no AUTH when unset"),
        "password": Setting(None, secret=True, help="password for AUTH"),
        "security": Setting("starttls", choices=("starttls", "ssl", "none"),
                            help="starttls (upgrade, required), ssl (implicit TLS) or none"),
        "verify": Setting(True, bool, help="check the server's TLS certificate and host name"),
        "ca_file": Setting(None, help="PEM file of the CAs to trust instead of the system's"),
        "allow_insecure_auth": Setting(False, bool,
                                       help="allow a password over an unencrypted connection"),
        "timeout": timeout_setting(10.0, help="seconds to wait for the server at each step"),
        "local_hostname": Setting(None, help="name sent in EHLO; default the machine's FQDN"),
        "pool_size": pool_size_setting(4, help="idle connections kept open for reuse (0: none)"),
        "batch_size": Setting(DEFAULT_BATCH, int, minimum=1, maximum=MAX_BATCH,
                              help="messages per connection checkout in send_many (1: off)"),
        "tags_and_metadata": Setting("headers", choices=("headers", "refuse"),
                                     help="carry them as X-Tags/X-Metadata, or refuse them"),
    }  # fmt: skip

    def __init__(self, *, name: str, **settings: Any) -> None:
        super().__init__(name=name, **settings)
        s = self.settings
        if s["port"] is None:
            s["port"] = DEFAULT_PORTS[s["security"]]
        if not 0 < s["port"] < 65536:
            raise ConfigError(f"setting 'port': {s['port']} is not a TCP port", driver=name)
        if (s["username"] is None) != (s["password"] is None):
            raise ConfigError("'username' and 'password' go together: set both or neither",
                              driver=name)  # fmt: skip
        if s["username"] is not None and s["security"] == "none" and not s["allow_insecure_auth"]:
            raise ConfigError(
                "refusing to send a password over an unencrypted connection: use security "
                "'starttls' or 'ssl', or set allow_insecure_auth: true",
                driver=name,
            )
        self._tls = self._tls_context() if s["security"] != "none" else None
        self._pool = _Pool(int(s["pool_size"]))

    def _tls_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.settings["ca_file"])
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"setting 'ca_file': cannot load it ({exc})", driver=self.name
            ) from None
        if not self.settings["verify"]:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    # -- the send path ---------------------------------------------------------------------

    def send(self, message: Message) -> Receipt:
        self.check_limits(message)
        check_tags_and_metadata(self, message)
        for attempt in (1, 2):
            phase = _Phase()
            connection = self._checkout(phase)
            try:
                with self._errors(phase):
                    receipt = self._transaction(connection, message, phase)
            except ProviderUnavailable as exc:
                connection.discard()
                if attempt == 1 and connection.reused and self._worth_retrying(exc, phase):
                    # A pooled connection the server dropped between our RSET and MAIL FROM:
                    # nothing was sent, so one fresh connection is safe and invisible.
                    logger.debug("%s: pooled connection dropped; reconnecting", self.name)
                    continue
                raise
            except DeliveryError:
                self._release(connection)  # the session is fine; RSET on reuse clears it
                raise
            except BaseException:
                connection.discard()
                raise
            self._release(connection)
            return receipt
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def batch_size(self) -> int:
        return int(self.settings["batch_size"])

    def send_batch(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        """Send ``messages`` over one pooled connection per ``batch_size`` of them, one
        transaction each, pipelined where the server offers PIPELINING; each message's
        receipt or error is what ``send()`` would give (see :mod:`._smtp_batch`)."""
        if self.batch_size <= 1:
            return super().send_batch(messages)
        from ._smtp_batch import send_batch  # imports this module: loaded on first use

        return send_batch(self, messages)

    @staticmethod
    def _worth_retrying(exc: ProviderUnavailable, phase: _Phase) -> bool:
        dropped = isinstance(exc.__cause__, (smtplib.SMTPServerDisconnected, ConnectionError)) or (
            exc.status == 421
        )
        return dropped and phase.value in (_Phase.CONNECT, _Phase.ENVELOPE)

    def _transaction(self, connection: _Connection, message: Message, phase: _Phase) -> Receipt:
        smtp = connection.smtp
        phase.value = _Phase.ENVELOPE
        connection.set_timeout(self._timeout())
        plan = self.plan(message, smtp.has_extn)
        code, reply = smtp.mail(plan.sender, plan.options)
        if code != 250:
            raise self._reply_error(code, reply, "MAIL FROM", phase)
        recipients = _RecipientReplies()
        for recipient, address in plan.recipients:
            code, reply = smtp.rcpt(address)
            if code == 421:
                raise self._reply_error(code, reply, "RCPT TO", phase)
            recipients.add(recipient, code, reply)
        if not recipients.accepted:
            raise self._all_refused(recipients.refused)
        code, reply = smtp.docmd("DATA")
        if code != 354:
            raise self._reply_error(code, reply, "DATA", phase)
        phase.value = _Phase.CONTENT
        plan.write(smtp.send)
        phase.value = _Phase.SENT
        code, reply = smtp.getreply()
        if code != 250:
            raise self._reply_error(code, reply, "end of DATA", phase)
        return self._receipt(message, code, reply, recipients)

    def plan(self, message: Message, offers: Callable[[str], bool]) -> _Plan:
        """What to say to a server that ``offers`` these ESMTP extensions (no I/O).

        Raises :class:`UnsupportedFeature` when the message needs SMTPUTF8 and the server
        lacks it. A small message is built once, in memory. A large one is generated twice:
        into a counter first (its size for SIZE=, whether it is 8-bit, and any error in
        building it, all before MAIL FROM), then straight to the socket after DATA.
        """
        utf8 = message.needs_smtputf8
        if utf8 and not offers("smtputf8"):
            raise UnsupportedFeature(
                "an address has a non-ASCII local part and the server does not offer SMTPUTF8",
                field="to",
                driver=self.name,
            )
        eight_bit = offers("8bitmime")
        policy = policy_for(utf8=utf8, eight_bit=eight_bit)
        mime = message.to_mime(policy=policy)
        for name, value in tracking_headers(message).items():
            mime[name] = value
        counter = SizeCounter()
        chunks: list[bytes] | None = None
        if estimated_size(message) > STREAM_ABOVE:
            generate(mime, policy, counter.add)
        else:
            chunks = []
            generate(mime, policy, chunks.append)
            for chunk in chunks:
                counter.add(chunk)
        options: list[str] = []
        if utf8:
            options.append("SMTPUTF8")
        if eight_bit and (utf8 or not counter.ascii):
            options.append("BODY=8BITMIME")
        if offers("size"):
            options.append(f"SIZE={counter.size}")
        sender = message.sender_mailbox
        return _Plan(
            sender=sender.email if utf8 else sender.ascii_email,
            options=options,
            recipients=[
                (rcpt, rcpt if utf8 else parse_mailbox(rcpt).ascii_email)
                for rcpt in message.recipients()
            ],
            mime=mime,
            policy=policy,
            chunks=chunks,
        )

    def _receipt(
        self, message: Message, code: int, reply: bytes | str, recipients: _RecipientReplies
    ) -> Receipt:
        """The receipt for a final 250 to the message (no I/O)."""
        text = _text(reply)
        refused = recipients.refused
        return Receipt(
            driver=self.name,
            message_id=_queue_id(text) or message.message_id,
            response={
                "code": code,
                "reply": text,
                "refused": {rcpt: {"code": c, "reply": r} for rcpt, (c, r) in refused.items()},
            },
            refused_recipients=tuple(refused),
        )

    # -- connections -----------------------------------------------------------------------

    def _timeout(self) -> float:
        timeout = float(self.settings["timeout"])
        left = remaining_time()
        return timeout if left is None else min(timeout, left)

    def _checkout(self, phase: _Phase) -> _Connection:
        """An idle connection that answers RSET, else a new one."""
        for _ in range(self._pool.size + 1):
            connection = self._pool.take()
            if connection is None:
                break
            if self._alive(connection):
                connection.reused = True
                return connection
            connection.discard()
        with self._errors(phase):
            return self._connect()

    def _alive(self, connection: _Connection) -> bool:
        try:
            connection.set_timeout(self._timeout())
            code, _ = connection.smtp.rset()
        except OSError:
            return False
        return code == 250

    def _connect(self) -> _Connection:
        s = self.settings
        local_hostname = s["local_hostname"] or _fqdn()
        smtp: smtplib.SMTP
        if s["security"] == "ssl":
            smtp = smtplib.SMTP_SSL(
                local_hostname=local_hostname, timeout=self._timeout(), context=self._tls
            )
        else:
            smtp = smtplib.SMTP(local_hostname=local_hostname, timeout=self._timeout())
        # smtplib only records the host for TLS's server_hostname when the constructor
        # connects; connecting here instead keeps the socket closable on every failure.
        smtp._host = s["host"]  # type: ignore[attr-defined]
        try:
            code, reply = smtp.connect(s["host"], s["port"])
            if code != 220:
                raise smtplib.SMTPConnectError(code, reply)
            smtp.ehlo_or_helo_if_needed()
            if s["security"] == "starttls":
                if not smtp.has_extn("starttls"):
                    raise self._no_starttls()
                smtp.starttls(context=self._tls)
                smtp.ehlo()
            if s["username"] is not None:
                self._login(smtp)
        except BaseException:
            with contextlib.suppress(OSError):
                smtp.close()
            raise
        return _Connection(smtp)

    def _login(self, smtp: smtplib.SMTP) -> None:
        """AUTH with the one mechanism :func:`_auth_mechanism` picks (``smtplib.login``
        would try every offered one in turn)."""
        mechanism = _auth_mechanism(smtp.esmtp_features["auth"] if smtp.has_extn("auth") else None)
        smtp.user, smtp.password = self.settings["username"], self.settings["password"]
        for name, method in (
            ("PLAIN", smtp.auth_plain),
            ("LOGIN", smtp.auth_login),
            ("CRAM-MD5", smtp.auth_cram_md5),
        ):
            if name == mechanism:
                smtp.auth(mechanism, method)

    def _no_starttls(self) -> ProviderUnavailable:
        return ProviderUnavailable(
            "the server does not offer STARTTLS; refusing to continue without TLS",
            reason="connection",
            driver=self.name,
        )

    def _release(self, connection: _Connection) -> None:
        connection.reused = False
        if not self._pool.give_back(connection):
            connection.quit(min(self._timeout(), 2.0))

    def close(self) -> None:
        """Close every idle connection; connections in use close when their send ends."""
        for connection in self._pool.drain():
            connection.quit(min(float(self.settings["timeout"]), 2.0))
        side = self.__dict__.get("_async_side")
        if side is not None:
            side.close()

    # -- asyncio: the same transaction on aiosmtplib (see _smtp_async) -------------------------

    async def asend(self, message: Message) -> Receipt:
        """:meth:`send` natively on ``aiosmtplib`` (extra ``async``): the same plan, AUTH,
        classification and pooling, with one pool of connections per event loop. A
        cancelled ``asend`` drops its connection (its state is unknown); it is never pooled.
        """
        self.check_limits(message)
        check_tags_and_metadata(self, message)
        return await self._async().send(message)

    async def asend_batch(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        """:meth:`send_batch` natively on ``aiosmtplib``: one connection of this event
        loop's pool per ``batch_size`` messages, pipelined where the server offers
        PIPELINING, by the same session as :meth:`send_batch` (see
        :mod:`._smtp_async_batch`); never the blocking batch in a thread. A cancelled batch
        aborts its connection."""
        if self.batch_size <= 1:
            return await self.asend_each(messages)
        side = self._async()
        from ._smtp_async_batch import send_batch  # imports aiosmtplib: loaded on first use

        return await send_batch(side, messages)

    async def aclose(self) -> None:
        """Say QUIT to the idle connections of this event loop's pool, then close the
        blocking pool's (in a thread); safe to call twice."""
        side = self.__dict__.get("_async_side")
        if side is not None:
            await side.aclose()
        await asyncio.to_thread(self.close)

    def _async(self) -> AsyncSMTP:
        side: AsyncSMTP | None = self.__dict__.get("_async_side")
        if side is None:
            require("aiosmtplib", "async", driver=self.name)
            from ._smtp_async import AsyncSMTP

            side = self.__dict__["_async_side"] = AsyncSMTP(self)
        return side

    # -- the one error boundary ------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, phase: _Phase) -> Iterator[None]:
        """Translate smtplib, socket and TLS exceptions, by phase, into our own."""
        try:
            yield
        except DeliveryError as exc:
            exc.with_driver(self.name)
            raise
        except OSError as exc:  # smtplib.SMTPException, socket and ssl errors all are
            error = self._transport_error(exc, phase)
            if self.shows_secret(exc):  # a server may echo what it was sent
                raise error from None
            raise error from exc

    def _transport_error(self, exc: OSError, phase: _Phase) -> DeliveryError:
        where = f"{self.settings['host']}:{self.settings['port']}"
        ambiguous = phase.value == _Phase.SENT
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return ProviderUnavailable(
                # a server may echo what it was sent: never show a secret
                f"authentication failed: {exc.smtp_code} {self.scrub(_text(exc.smtp_error))}",
                reason="auth",
                status=exc.smtp_code,
                driver=self.name,
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return ProviderUnavailable(
                f"{where}: {exc}",
                reason="auth" if "AUTH" in str(exc) else "connection",
                driver=self.name,
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._reply_error(exc.smtp_code, exc.smtp_error, _step(exc), phase)
        # smtplib turns a read timeout into SMTPServerDisconnected; the cause tells them apart.
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            return ProviderUnavailable(
                f"no answer from {where} within the timeout {phase.words()}",
                reason="timeout",
                ambiguous=ambiguous,
                driver=self.name,
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ProviderUnavailable(
                f"TLS certificate of {where} not trusted: {exc.verify_message}",
                reason="connection",
                driver=self.name,
            )
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            detail = f"{where} closed the connection {phase.words()}"
        elif isinstance(exc, ConnectionRefusedError):
            detail = f"connection to {where} refused"
        else:
            detail = f"connection to {where} failed {phase.words()}: {type(exc).__name__}"
            if exc.strerror:
                detail += f" ({exc.strerror})"
        return ProviderUnavailable(
            detail,
            reason="connection",
            ambiguous=ambiguous and not isinstance(exc, ConnectionRefusedError),
            driver=self.name,
        )

    def _reply_error(
        self, code: int, reply: bytes | str, step: str, phase: _Phase
    ) -> DeliveryError:
        """Classify a negative SMTP reply to ``step``."""
        detail = self.scrub(f"{step}: {code} {_text(reply)}")
        kwargs: dict[str, Any] = {"driver": self.name, "status": code}
        if code in _AUTH_CODES:
            return ProviderUnavailable(detail, reason="auth", **kwargs)
        if phase.value == _Phase.CONNECT or code == 421 or 400 <= code < 500:
            return ProviderUnavailable(detail, reason="server_error", **kwargs)
        if step == "MAIL FROM" and 500 <= code < 600 and _account_problem(reply):
            # "553 5.7.1 Sender address rejected: not owned by user": this server will not
            # let this account send as this sender; another provider may.
            return ProviderUnavailable(detail, reason="account", **kwargs)
        if 500 <= code < 600:  # bad sender address, message too large (552), content refused
            return MessageRejected(detail, **kwargs)
        return ProviderUnavailable(f"unexpected reply to {detail}", reason="bad_response", **kwargs)

    def _all_refused(self, refused: Mapping[str, tuple[int, str]]) -> DeliveryError:
        summary = "; ".join(f"{rcpt}: {code} {text}" for rcpt, (code, text) in refused.items())
        codes = [code for code, _ in refused.values()]
        response = {rcpt: {"code": c, "reply": r} for rcpt, (c, r) in refused.items()}
        detail = f"every recipient was refused: {summary}"[:1000]
        status = codes[0] if codes else None
        if codes and all(500 <= c < 600 and _RELAY_DENIED.search(t) for c, t in refused.values()):
            # "554 5.7.1 <x>: Relay access denied": this server will not relay for this
            # client (not logged in, not in its networks); another provider may deliver.
            return ProviderUnavailable(
                detail, reason="account", status=status, response=response, driver=self.name
            )
        if all(500 <= code < 600 for code in codes):
            return MessageRejected(detail, status=status, response=response, driver=self.name)
        # Some refusals are temporary (4xx): another provider, or later, may deliver.
        return ProviderUnavailable(
            detail, reason="server_error", status=status, response=response, driver=self.name
        )


_ENHANCED = re.compile(r"^\s*5\.(\d{1,3})\.\d{1,3}\b")

#: A refused RCPT TO that says the server will not relay for this client, in the words of
#: Postfix ("Relay access denied"), Sendmail ("Relaying denied"), Exim ("relay not
#: permitted"), Exchange ("Unable to relay"), Gmail ("Mail relay denied") and qmail ("not
#: in my list of allowed rcpthosts"): a problem of this account, not of the recipient.
_RELAY_DENIED = re.compile(
    r"\brelay(?:ing)?(?: access)? (?:denied|not permitted|not allowed|prohibited)"
    r"|unable to relay|not permitted to relay|allowed rcpthosts",
    re.IGNORECASE,
)


def _account_problem(reply: bytes | str) -> bool:
    """The shared account rule (docs/errors.md#account-problems) for a refused MAIL FROM.

    A 5.7.x enhanced status is security or policy: the server will not let this login send
    as this sender (Postfix's ``reject_sender_login_mismatch`` answers ``553 5.7.1 Sender
    address rejected: not owned by user``), an account problem. 5.1.x is about the address
    itself (``5.1.8`` its domain does not exist, ``5.1.7`` it is malformed) and 5.3.4 is the
    message's size: no provider would take those, so they stay rejections. Without an
    enhanced status the reply's text decides, by the shared pattern.
    """
    text = _text(reply)
    enhanced = _ENHANCED.match(text)
    if enhanced is not None:
        return enhanced.group(1) == "7"
    return is_account_problem(text)


#: AUTH mechanisms in the order they are preferred; only one is ever tried.
_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")


def _auth_mechanism(offered: str | None) -> str:
    """The one AUTH mechanism to use with a server whose EHLO offered ``offered`` (the
    ``AUTH`` line's parameters; ``None``: no AUTH): PLAIN, else LOGIN, else CRAM-MD5.

    Client libraries try every offered mechanism in turn; after a 535 that only repeats
    the wrong password, and some servers answer a second attempt with silence. Raises
    :class:`smtplib.SMTPNotSupportedError` (classified ``auth``) when none fits.
    """
    if offered is None:
        raise smtplib.SMTPNotSupportedError("the server does not offer AUTH")
    names = offered.upper().split()
    for mechanism in _MECHANISMS:
        if mechanism in names:
            return mechanism
    raise smtplib.SMTPNotSupportedError(
        "the server offers no AUTH mechanism this driver speaks (PLAIN, LOGIN, CRAM-MD5)"
    )


def _step(exc: smtplib.SMTPResponseException) -> str:
    if isinstance(exc, smtplib.SMTPConnectError):
        return "greeting"
    if isinstance(exc, smtplib.SMTPHeloError):
        return "EHLO"
    return "STARTTLS" if exc.smtp_code in (454, 501) else "server reply"


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:500]


def _queue_id(reply: str) -> str | None:
    for pattern in _QUEUE_ID:
        found = pattern.search(reply)
        if found:
            return found.group(1)
    return None
