"""Fixtures for the SMTP and SES driver tests: real SMTP servers on 127.0.0.1, moto for SES.

The SMTP servers are ``aiosmtpd`` controllers running in this process, each listening on a
port the kernel picked (the socket is bound before the server starts, so no two tests can
race for a port). A :class:`Recorder` is the server's handler: it stores what the server
actually received and can be told to answer MAIL, RCPT or DATA with any reply, to drop the
connection after the message, or to stall.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import ssl
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import responses
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from smtp_support import MODES, Wire, offer_pipelining


@attrs.define
class Received:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]


class Recorder:
    """An aiosmtpd handler that records what it receives and answers as it is told."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.connections = 0
        self.mail_reply: str | None = None
        self.mail_replies_once: list[str] = []  # answered (and consumed) before mail_reply
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply: str | None = None
        self.drop_after_data = False
        self.dropped = 0
        self.stall_after_data = 0.0
        self.queue_ids = True
        self.auth_attempts: list[tuple[str, str]] = []  # (mechanism, login)
        self.credentials: tuple[str, str] | None = None
        #: After this many messages the server "crashes": it stops listening, and every
        #: open connection is cut at its next MAIL FROM or end of DATA (nothing recorded).
        self.down_after: int | None = None
        self.down = False
        self.stop_listening: Callable[[], None] = lambda: None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.down:
            return self._crash(server)
        with self.lock:
            once = self.mail_replies_once.pop(0) if self.mail_replies_once else None
        if once is not None:
            return once
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def _crash(self, server: SMTP) -> str:
        assert server.transport is not None
        server.transport.abort()
        return "421 4.3.2 going down"  # never reaches the client: the transport is gone

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.down:
            return self._crash(server)
        if self.drop_after_data:
            with self.lock:
                self.dropped += 1
            assert server.transport is not None
            server.transport.abort()  # the message arrived whole; the reply never leaves
            return "250 OK"
        if self.stall_after_data:
            await asyncio.sleep(self.stall_after_data)
        if self.data_reply is not None:
            return self.data_reply
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=content,
                    mail_options=list(envelope.mail_options),
                )
            )
            count = len(self.messages)
            if self.down_after is not None and count >= self.down_after:
                self.down = True
        if self.down:
            self.stop_listening()  # runs on the server's loop: new connections are refused
        if not self.queue_ids:
            return "250 OK"
        return f"250 2.0.0 Ok: queued as Q{count:05d}"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = data.login.decode()
        with self.lock:
            self.auth_attempts.append((mechanism, login))
        ok = self.credentials == (login, data.password.decode())
        # handled=False: aiosmtpd then answers a failure with its own 535.
        return AuthResult(success=ok, handled=False)

    async def cram_md5(self, server: SMTP, args: list[str]) -> AuthResult:
        """AUTH CRAM-MD5 (RFC 2195), which aiosmtpd does not offer by itself: a fresh
        challenge, and the answer ``user hex(HMAC-MD5(password, challenge))`` checked."""
        if len(args) != 1:  # CRAM-MD5 has no initial response
            return AuthResult(success=False, handled=False)
        challenge = f"<{uuid.uuid4().hex}@127.0.0.1>".encode()
        answer = await server.challenge_auth(challenge)
        if not isinstance(answer, bytes):  # "*" or bad base64: aiosmtpd has answered 501
            return AuthResult(success=False, handled=True)
        login, _, digest = answer.decode(errors="replace").rpartition(" ")
        with self.lock:
            self.auth_attempts.append(("CRAM-MD5", login))
        if self.credentials is None:
            return AuthResult(success=False, handled=False)
        user, password = self.credentials
        expected = hmac.new(password.encode(), challenge, "md5").hexdigest()
        ok = login == user and hmac.compare_digest(digest, expected)
        return AuthResult(success=ok, handled=False)  # a failure: aiosmtpd answers 535


class _CountingSMTP(SMTP):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler = self.event_handler
        with handler.lock:
            handler.connections += 1
        super().connection_made(transport)


class LoopbackController(Controller):
    """An aiosmtpd controller on 127.0.0.1 and a port the kernel picked."""

    def __init__(self, handler: Recorder, **kwargs: Any) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self._sock.getsockname()[1], **kwargs)

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)

    def start(self) -> None:
        try:
            super().start()
        except BaseException:
            self._sock.close()
            raise
        # start() opened and read the greeting of one connection to prove the server is up.
        with self.handler.lock:
            self.handler.connections = 0


ServerFactory = Callable[..., LoopbackController]


@pytest.fixture
def smtp_server_factory() -> Iterator[ServerFactory]:
    """Start SMTP servers (``server.handler`` is their :class:`Recorder`); all stop after."""
    started: list[LoopbackController] = []

    def start(
        *, credentials: tuple[str, str] | None = None, cram_md5: bool = False, **kwargs: Any
    ) -> LoopbackController:
        """``credentials`` (user, password) turns on AUTH (PLAIN and LOGIN; ``cram_md5``
        adds CRAM-MD5); other options go to aiosmtpd."""
        handler = Recorder()
        if credentials is not None:
            handler.credentials = credentials
            kwargs["authenticator"] = handler.authenticate
        if cram_md5:  # aiosmtpd offers every auth_<NAME> of the handler ("__" is "-")
            handler.auth_CRAM__MD5 = handler.cram_md5  # type: ignore[attr-defined]
        kwargs.setdefault("enable_SMTPUTF8", False)
        controller = LoopbackController(handler, **kwargs)
        controller.start()
        handler.stop_listening = lambda: controller.server.close()  # type: ignore[union-attr]
        started.append(controller)
        return controller

    yield start
    for controller in started:
        if controller._thread is not None:
            controller.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: ServerFactory) -> LoopbackController:
    """A plain SMTP server (no TLS, no AUTH)."""
    return smtp_server_factory()


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 and localhost, made at test time."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test CA as a PEM file, for the driver's ``ca_file``."""
    path: Path = tmp_path_factory.mktemp("tls") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A listener that accepts connections (in the kernel backlog) and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield "127.0.0.1", listener.getsockname()[1]
    finally:
        listener.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


# -- SES (moto) ------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials and region, and no shared config files, for moto."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    """A `responses` mock for HTTP driver tests; unanswered requests fail the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


# -- the batch modules' server: with PIPELINING offered, and without ---------------------


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """``pipelining`` or ``lock-step``: each batch test runs against both servers."""
    return str(request.param)


@pytest.fixture
def server(smtp_server_factory: ServerFactory, mode: str) -> LoopbackController:
    """A plain SMTP server that offers PIPELINING or not, after ``mode``."""
    started = smtp_server_factory()
    if mode == "pipelining":
        offer_pipelining(started)
    return started


@pytest.fixture
def wire(server: LoopbackController, mode: str) -> Wire:
    """What ``server`` received, command by command, and its answers on demand."""
    return Wire(server, pipelined_group=mode == "pipelining")
