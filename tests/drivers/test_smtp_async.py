"""``SMTPDriver.asend`` on aiosmtplib, against real SMTP servers (aiosmtpd) on 127.0.0.1.

The same assertions as tests/drivers/test_smtp.py on what the server received, and the
same classification, through the native asyncio path. Sections: payload and envelope,
security modes, AUTH, replies, timeouts and dropped connections (at each phase),
connection reuse and event loops, cancellation and the deadline, every aiosmtplib
exception, the aiosmtplib internals this path relies on, the mailer. The shared driver
contract runs on this path in tests/drivers/test_smtp.py (``TestSMTPContract``, colour
``async``). Every test drives its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import inspect
import os
import re
import smtplib
import socket
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import aiosmtplib
import aiosmtplib.errors as ae
import pytest
from aiosmtplib.protocol import SMTPProtocol
from smtp_support import GOOD_PASSWORD, GOOD_USER, body, parsed, plain_driver, run

from mailfailover import Attachment, MemoryDriver
from mailfailover.aio import AsyncFailoverMailer
from mailfailover.driver import Receipt
from mailfailover.drivers import _smtp_async
from mailfailover.drivers import _smtp_data as smtp_data
from mailfailover.drivers._smtp_async import AIOSMTPLIB_ERRORS, AsyncSMTP, failure
from mailfailover.drivers.smtp import SMTPDriver, _auth_mechanism, _Phase
from mailfailover.errors import (
    AllProvidersFailed,
    DeliveryError,
    MessageRejected,
    MissingDependency,
    ProviderUnavailable,
    UnsupportedFeature,
)
from mailfailover.message import Message
from mailfailover.testing import PDF_BYTES, PNG_BYTES, full_message, simple_message

LoopbackController = Any
ServerFactory = Any
T = TypeVar("T")


def asend(driver: SMTPDriver, *messages: Message) -> list[Receipt]:
    """Send ``messages`` one after another with ``asend`` in one event loop."""

    async def scenario() -> list[Receipt]:
        return [await driver.asend(message) for message in messages]

    return run(driver, scenario)


def afail(driver: SMTPDriver, message: Message | None = None) -> DeliveryError:
    """The DeliveryError ``asend`` raises for ``message``."""

    async def scenario() -> DeliveryError:
        with pytest.raises(DeliveryError) as caught:
            await driver.asend(message or simple_message())
        return caught.value

    return run(driver, scenario)


# -- payload and envelope -----------------------------------------------------------------


def test_full_message_arrives_whole_with_bcc_only_in_the_envelope(
    smtp_server: LoopbackController,
) -> None:
    """Envelope, headers, bodies and attachments arrive exactly; Bcc only in RCPT TO."""
    [receipt] = asend(plain_driver(smtp_server), full_message())
    [got] = smtp_server.handler.messages
    assert got.mail_from == "sender@example.com"
    assert got.rcpt_tos == [
        "ann@example.com", "bob@example.com", "cc1@example.com", "cc2@example.com",
        "bcc1@example.com", "bcc2@example.com",
    ]  # fmt: skip
    mime = parsed(got.content)
    assert "Bcc" not in mime
    assert b"bcc1@example.com" not in got.content
    assert str(mime["From"]) == "Zoë Sender <sender@example.com>"
    assert str(mime["Subject"]) == "Grüße — your receipt"
    assert mime["Message-ID"] == "<full-message-1@example.com>"
    text = mime.get_body(preferencelist=("plain",))
    html = mime.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert body(text) == "Hallo, grüße!\nSee the PDF.\n"
    assert body(html) == '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">\n'
    parts = {part.get_filename(): part for part in mime.walk() if part.get_filename()}
    assert parts["Rechnung-ä.pdf"].get_content() == PDF_BYTES
    assert parts["logo.png"].get_content() == PNG_BYTES
    assert parts["logo.png"]["Content-ID"] == "<logo.png>"
    assert receipt == Receipt(
        driver="relay",
        message_id="Q00001",
        response={"code": 250, "reply": "2.0.0 Ok: queued as Q00001", "refused": {}},
    )


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(full_message(), id="full"),
        pytest.param(simple_message(text="grüße\n.\n.hidden\n..two"), id="8bit-dots"),
        pytest.param(
            simple_message(sender="ann@bücher.example", to=["bob@münchen.example"]), id="idn"
        ),
    ],
)
def test_the_server_receives_what_the_sync_driver_sends(
    smtp_server: LoopbackController, message: Message
) -> None:
    """Byte for byte: the same envelope, MAIL FROM options (SIZE=, BODY=8BITMIME) and
    content as the blocking driver sends for the same message."""
    with plain_driver(smtp_server) as sync:
        sync.send(message)
    asend(plain_driver(smtp_server), message)
    by_sync, by_async = smtp_server.handler.messages
    assert by_async.mail_from == by_sync.mail_from
    assert by_async.rcpt_tos == by_sync.rcpt_tos
    assert by_async.mail_options == by_sync.mail_options
    assert any(o.startswith("SIZE=") for o in by_async.mail_options)
    # the same bytes but the multipart boundaries (random per generation) and the Date
    varying = re.compile(rb"(?m)={15}\d+==|^Date: [^\r]*")
    assert varying.sub(b"~", by_async.content) == varying.sub(b"~", by_sync.content)


def test_eight_bit_body_goes_with_body_8bitmime_and_dots_survive(
    smtp_server: LoopbackController,
) -> None:
    text = "grüße\n.\n.hidden line\n..two dots\nlast"
    asend(plain_driver(smtp_server), simple_message(text=text))
    [got] = smtp_server.handler.messages
    assert "BODY=8BITMIME" in got.mail_options
    assert body(parsed(got.content)) == text + "\n"


def test_non_ascii_local_part_uses_smtputf8_when_offered(
    smtp_server_factory: ServerFactory,
) -> None:
    server = smtp_server_factory(enable_SMTPUTF8=True)
    message = simple_message(sender="jörg@example.com", to=["zoë@bücher.example"])
    asend(plain_driver(server), message)
    [got] = server.handler.messages
    assert got.mail_from == "jörg@example.com"
    assert got.rcpt_tos == ["zoë@bücher.example"]
    assert "SMTPUTF8" in got.mail_options
    assert str(parsed(got.content)["To"]) == "zoë@bücher.example"


def test_non_ascii_local_part_without_smtputf8_is_unsupported_and_keeps_the_connection(
    smtp_server: LoopbackController,
) -> None:
    driver = plain_driver(smtp_server)

    async def scenario() -> None:
        with pytest.raises(UnsupportedFeature):
            await driver.asend(simple_message(to=["zoë@example.com"]))
        await driver.asend(simple_message())

    run(driver, scenario)
    assert len(smtp_server.handler.messages) == 1
    assert smtp_server.handler.connections == 1


def test_dots_at_every_chunk_boundary_reach_the_wire_stuffed_once(
    smtp_server: LoopbackController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan's chunks are written as they are (aiosmtplib's protocol.write neither
    stuffs nor converts): the wire is the content with each leading dot doubled."""
    monkeypatch.setattr(smtp_data, "_CHUNK", 7)
    writes: list[bytes] = []
    real_write = SMTPProtocol.write

    def write(self: SMTPProtocol, data: bytes) -> None:
        writes.append(bytes(data))
        real_write(self, data)

    monkeypatch.setattr(SMTPProtocol, "write", write)
    text = "".join(f"{'x' * (n % 9)}\n.{n}\n..\n.\n" for n in range(40))
    asend(plain_driver(smtp_server), simple_message(text=text))
    [got] = smtp_server.handler.messages
    wire = b"".join(writes).split(b"DATA\r\n", 1)[1].rsplit(b"QUIT\r\n", 1)[0]
    assert len(writes) > 100
    assert wire == re.sub(rb"(?m)^\.", b"..", got.content) + b".\r\n"
    assert parsed(got.content).get_body().get_content().replace("\r\n", "\n") == text


def test_a_large_attachment_is_streamed_intact_with_an_exact_size(
    smtp_server: LoopbackController,
) -> None:
    """Above the streaming threshold the DATA is generated in a worker thread and written
    chunk by chunk; it arrives whole, SIZE= exact."""
    payload = os.urandom(3 * 1024 * 1024 + 11)
    message = simple_message(
        text=".starts with a dot\n", attachments=[Attachment("big.bin", payload)]
    )
    assert smtp_data.estimated_size(message) > smtp_data.STREAM_ABOVE
    [receipt] = asend(plain_driver(smtp_server, timeout=10), message)
    assert receipt.message_id == "Q00001"
    [got] = smtp_server.handler.messages
    mime = parsed(got.content)
    [part] = [p for p in mime.walk() if p.get_filename() == "big.bin"]
    assert hashlib.sha256(part.get_content()).digest() == hashlib.sha256(payload).digest()
    assert mime.get_body(("plain",)).get_content().startswith(".starts with a dot")
    assert [o for o in got.mail_options if o.startswith("SIZE=")] == [
        f"SIZE={len(got.content) + 1 + 3}"
    ]


# -- security modes -----------------------------------------------------------------------


def test_starttls_with_the_test_ca_delivers(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext, ca_file: str
) -> None:
    server = smtp_server_factory(tls_context=server_tls_context, require_starttls=True)
    driver = SMTPDriver(name="tls", host="127.0.0.1", port=server.port, ca_file=ca_file)
    asend(driver, simple_message())
    assert len(server.handler.messages) == 1


def test_implicit_tls_with_the_test_ca_delivers(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext, ca_file: str
) -> None:
    server = smtp_server_factory(ssl_context=server_tls_context)
    driver = SMTPDriver(
        name="tls", host="127.0.0.1", port=server.port, security="ssl", ca_file=ca_file
    )
    asend(driver, simple_message(), simple_message())
    assert len(server.handler.messages) == 2
    assert server.handler.connections == 1


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_untrusted_certificate_is_refused_by_default(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext, security: str
) -> None:
    key = "tls_context" if security == "starttls" else "ssl_context"
    server = smtp_server_factory(**{key: server_tls_context})
    driver = SMTPDriver(name="tls", host="127.0.0.1", port=server.port, security=security,
                        timeout=5)  # fmt: skip
    error = afail(driver)
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous) == ("connection", False)
    assert "certificate" in str(error)
    assert server.handler.messages == []


def test_verify_false_accepts_an_untrusted_certificate(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext
) -> None:
    server = smtp_server_factory(tls_context=server_tls_context)
    asend(SMTPDriver(name="tls", host="127.0.0.1", port=server.port, verify=False),
          simple_message())  # fmt: skip
    assert len(server.handler.messages) == 1


def test_starttls_missing_on_the_server_is_not_downgraded(
    smtp_server: LoopbackController,
) -> None:
    error = afail(SMTPDriver(name="tls", host="127.0.0.1", port=smtp_server.port, timeout=5))
    assert isinstance(error, ProviderUnavailable)
    assert "STARTTLS" in str(error)
    assert smtp_server.handler.messages == []


# -- AUTH ---------------------------------------------------------------------------------


@pytest.fixture
def auth_server(smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext) -> Any:
    def start(**kwargs: Any) -> LoopbackController:
        return smtp_server_factory(
            credentials=(GOOD_USER, GOOD_PASSWORD), tls_context=server_tls_context, **kwargs
        )

    return start


def auth_driver(server: LoopbackController, ca_file: str, password: str) -> SMTPDriver:
    return SMTPDriver(name="auth", host="127.0.0.1", port=server.port, ca_file=ca_file,
                      username=GOOD_USER, password=password, timeout=5)  # fmt: skip


@pytest.mark.parametrize(("exclude", "mechanism"), [(["LOGIN"], "PLAIN"), (["PLAIN"], "LOGIN")])
def test_auth_with_good_credentials_delivers(
    auth_server: Any, ca_file: str, exclude: list[str], mechanism: str
) -> None:
    """One mechanism, the sync driver's choice: PLAIN, else LOGIN."""
    server = auth_server(auth_exclude_mechanism=exclude)
    asend(auth_driver(server, ca_file, GOOD_PASSWORD), simple_message())
    assert server.handler.auth_attempts == [(mechanism, GOOD_USER)]
    assert len(server.handler.messages) == 1


@pytest.mark.parametrize("password", [GOOD_PASSWORD, "wrong-Pa55word"])
def test_auth_cram_md5_against_a_server_that_offers_only_it(
    auth_server: Any, ca_file: str, password: str
) -> None:
    """aiosmtplib's CRAM-MD5 (RFC 2195), as the sync driver's: the right password
    delivers; a wrong one is a 535, unavailable ('auth'), tried once."""
    server = auth_server(auth_exclude_mechanism=["PLAIN", "LOGIN"], cram_md5=True)
    driver = auth_driver(server, ca_file, password)
    if password == GOOD_PASSWORD:
        asend(driver, simple_message())
    else:
        error = afail(driver)
        assert isinstance(error, ProviderUnavailable)
        assert (error.reason, error.status) == ("auth", 535)
        assert password not in f"{error} {error.response!r} {_formatted(error)}"
    assert server.handler.auth_attempts == [("CRAM-MD5", GOOD_USER)]
    assert len(server.handler.messages) == (1 if password == GOOD_PASSWORD else 0)


def test_auth_with_a_bad_password_is_tried_once_and_unavailable_auth(
    auth_server: Any, ca_file: str
) -> None:
    """A wrong password: one AUTH attempt (aiosmtplib's login() would try each mechanism),
    reason 'auth', status 535, the password nowhere."""
    server = auth_server()
    driver = auth_driver(server, ca_file, "wrong-Pa55word")
    error = afail(driver)
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.status, error.ambiguous) == ("auth", 535, False)
    assert len(server.handler.auth_attempts) == 1
    for text in (str(error), repr(error.response), repr(driver), _formatted(error)):
        assert "wrong-Pa55word" not in text
    assert server.handler.messages == []


def test_auth_not_offered_is_unavailable_auth(smtp_server: LoopbackController) -> None:
    driver = plain_driver(smtp_server, username=GOOD_USER, password=GOOD_PASSWORD,
                          allow_insecure_auth=True)  # fmt: skip
    error = afail(driver)
    assert isinstance(error, ProviderUnavailable)
    assert error.reason == "auth"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [("LOGIN PLAIN", "PLAIN"), ("cram-md5 login", "LOGIN"), ("CRAM-MD5", "CRAM-MD5")],
)
def test_one_auth_mechanism_is_chosen_for_both_paths(offered: str, chosen: str) -> None:
    assert _auth_mechanism(offered) == chosen


@pytest.mark.parametrize("offered", [None, "XOAUTH2 GSSAPI"])
def test_no_usable_auth_mechanism_is_an_auth_failure(offered: str | None) -> None:
    with pytest.raises(smtplib.SMTPNotSupportedError) as caught:
        _auth_mechanism(offered)
    driver = SMTPDriver(name="x", host="h.example")
    error = driver._transport_error(caught.value, _Phase())
    assert isinstance(error, ProviderUnavailable)
    assert error.reason == "auth"


# -- replies --------------------------------------------------------------------------------


def test_some_recipients_refused_still_delivers_and_lists_them(
    smtp_server: LoopbackController,
) -> None:
    smtp_server.handler.rcpt_replies = {
        "cc1@example.com": "550 5.1.1 no such user",
        "bcc2@example.com": "450 4.2.0 mailbox busy",
    }
    [receipt] = asend(plain_driver(smtp_server), full_message())
    assert receipt.refused_recipients == ("cc1@example.com", "bcc2@example.com")
    assert receipt.response is not None
    assert receipt.response["refused"]["cc1@example.com"] == {
        "code": 550, "reply": "5.1.1 no such user"}  # fmt: skip
    [got] = smtp_server.handler.messages
    assert "cc1@example.com" not in got.rcpt_tos
    assert "ann@example.com" in got.rcpt_tos


@pytest.mark.parametrize(
    ("reply", "error_type"),
    [("550 5.1.1 no such user", MessageRejected), ("450 4.2.0 busy", ProviderUnavailable)],
)
def test_every_recipient_refused(
    smtp_server: LoopbackController, reply: str, error_type: type[Exception]
) -> None:
    """All refused with 5xx: rejected; a 4xx among them: another provider may deliver."""
    smtp_server.handler.rcpt_replies = {"rcpt@example.com": reply}
    error = afail(plain_driver(smtp_server))
    assert type(error) is error_type
    assert error.status == int(reply[:3])
    assert smtp_server.handler.messages == []


@pytest.mark.parametrize(
    ("where", "reply", "error_type", "reason"),
    [
        ("mail", "421 4.3.2 Service shutting down", ProviderUnavailable, "server_error"),
        ("mail", "451 4.3.0 Local error", ProviderUnavailable, "server_error"),
        ("mail", "530 5.7.0 Authentication required", ProviderUnavailable, "auth"),
        ("mail", "553 5.7.1 Sender address rejected: not owned by user", ProviderUnavailable,
         "account"),
        ("mail", "552 5.3.4 Message size exceeds fixed limit", MessageRejected, None),
        ("rcpt", "421 4.3.2 Service shutting down", ProviderUnavailable, "server_error"),
        ("rcpt", "554 5.7.1 <rcpt@example.com>: Relay access denied", ProviderUnavailable,
         "account"),
        ("data", "421 4.3.2 Service shutting down", ProviderUnavailable, "server_error"),
        ("data", "451 4.3.0 Queue file write error", ProviderUnavailable, "server_error"),
        ("data", "552 5.3.4 Message too big", MessageRejected, None),
        ("data", "554 5.7.1 Spam detected", MessageRejected, None),
    ],
)  # fmt: skip
def test_server_replies_are_classified_as_the_sync_driver_does(
    smtp_server: LoopbackController,
    where: str,
    reply: str,
    error_type: type[Exception],
    reason: str | None,
) -> None:
    """Each negative reply gives the very error the blocking driver gives (never
    ambiguous: the server answered)."""
    handler = smtp_server.handler
    if where == "mail":
        handler.mail_reply = reply
    elif where == "rcpt":
        handler.rcpt_replies = {"rcpt@example.com": reply}
    else:
        handler.data_reply = reply
    error = afail(plain_driver(smtp_server))
    with plain_driver(smtp_server) as sync, pytest.raises(DeliveryError) as caught:
        sync.send(simple_message())
    assert type(error) is error_type is type(caught.value)
    assert (error.status, error.detail) == (caught.value.status, caught.value.detail)
    assert error.status == int(reply[:3])
    assert getattr(error, "reason", None) == reason
    assert getattr(error, "ambiguous", False) is False
    assert error.driver == "relay"
    assert handler.messages == []


# -- timeouts, refused and dropped connections ---------------------------------------------


def test_nothing_listening_is_unavailable_connection(closed_port: int) -> None:
    error = afail(SMTPDriver(name="local", host="127.0.0.1", port=closed_port, security="none"))
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous, error.driver) == ("connection", False, "local")
    assert "refused" in error.detail


def test_server_that_never_greets_times_out_unambiguously(
    silent_server: tuple[str, int],
) -> None:
    host, port = silent_server
    error = afail(SMTPDriver(name="mute", host=host, port=port, security="none", timeout=0.3))
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous) == ("timeout", False)


def test_connection_dropped_at_mail_from_is_unambiguous(smtp_server: LoopbackController) -> None:
    """The server crashes at MAIL FROM (nothing of the message was sent): not ambiguous."""
    smtp_server.handler.down = True
    error = afail(plain_driver(smtp_server))
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous) == ("connection", False)
    assert error.detail.endswith("during the envelope (MAIL FROM, RCPT TO, DATA)")


def test_connection_dropped_after_data_is_ambiguous(smtp_server: LoopbackController) -> None:
    smtp_server.handler.drop_after_data = True
    error = afail(plain_driver(smtp_server))
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous) == ("connection", True)
    assert smtp_server.handler.dropped == 1
    assert error.detail.endswith(
        "closed the connection after the whole message was sent, waiting for the server's "
        "final reply"
    )


def test_timeout_after_data_is_ambiguous(smtp_server: LoopbackController) -> None:
    smtp_server.handler.stall_after_data = 2.0
    error = afail(plain_driver(smtp_server, timeout=0.3))
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous) == ("timeout", True)


@contextlib.contextmanager
def scripted_server(after_data: str) -> Iterator[tuple[int, list[bytes]]]:
    """A minimal SMTP server on loopback that says 354 to DATA and then, per
    ``after_data``: "close" (hangs up at once) or "silent" (stops reading, never answers).
    Yields its port and the command lines it received."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    commands: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(0.2)
                connection.sendall(b"220 scripted ESMTP\r\n")
                buffer = b""
                while not stop.is_set():
                    try:
                        data = connection.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    buffer += data
                    while b"\r\n" in buffer:
                        line, buffer = buffer.split(b"\r\n", 1)
                        commands.append(line)
                        verb = line[:4].upper()
                        if verb == b"EHLO":
                            connection.sendall(b"250-scripted\r\n250 8BITMIME\r\n")
                        elif verb == b"QUIT":
                            connection.sendall(b"221 bye\r\n")
                        elif verb == b"DATA":
                            connection.sendall(b"354 go ahead\r\n")
                            if after_data == "close":
                                connection.setsockopt(
                                    socket.SOL_SOCKET,
                                    socket.SO_LINGER,
                                    b"\x01\x00\x00\x00\x00\x00\x00\x00",
                                )
                                break
                            stop.wait(30)  # silent: read nothing more, answer nothing
                            break
                        else:
                            connection.sendall(b"250 ok\r\n")
                    else:
                        continue
                    break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], commands
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def big_message(megabytes: int = 12) -> Message:
    return simple_message(attachments=[Attachment("big.bin", os.urandom(megabytes << 20))])


@pytest.mark.parametrize(("after_data", "reason"), [("close", "connection"),
                                                    ("silent", "timeout")])  # fmt: skip
def test_a_failure_while_the_message_is_written_is_unambiguous(
    after_data: str, reason: str
) -> None:
    """The server hangs up, or stops reading, while a large message is being written:
    the end-of-data mark never went out, so the message cannot have been accepted."""
    with scripted_server(after_data) as (port, commands):
        driver = SMTPDriver(name="relay", host="127.0.0.1", port=port, security="none",
                            timeout=0.5)  # fmt: skip
        error = afail(driver, big_message())
    assert b"DATA" in commands
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous) == (reason, False)
    assert "while sending the message" in error.detail


def test_driver_recovers_after_an_ambiguous_failure(smtp_server: LoopbackController) -> None:
    driver = plain_driver(smtp_server)

    async def scenario() -> None:
        smtp_server.handler.drop_after_data = True
        with pytest.raises(ProviderUnavailable):
            await driver.asend(simple_message())
        smtp_server.handler.drop_after_data = False
        await driver.asend(simple_message())

    run(driver, scenario)
    assert len(smtp_server.handler.messages) == 1
    assert smtp_server.handler.connections == 2


# -- connection reuse and event loops -------------------------------------------------------


def side(driver: SMTPDriver) -> AsyncSMTP:
    return driver._async()


def test_sequential_sends_reuse_one_connection(smtp_server: LoopbackController) -> None:
    asend(plain_driver(smtp_server), *(simple_message(subject=f"m{n}") for n in range(100)))
    assert len(smtp_server.handler.messages) == 100
    assert smtp_server.handler.connections == 1


def test_concurrent_sends_deliver_each_once_and_keep_at_most_pool_size_idle(
    smtp_server: LoopbackController,
) -> None:
    driver = plain_driver(smtp_server, pool_size=3)
    subjects = [f"message {n}" for n in range(60)]

    async def scenario() -> int:
        for _ in range(3):  # three waves of 20 sends at once
            wave, subjects_left = subjects[:20], subjects[20:]
            subjects[:] = subjects_left + wave
            await asyncio.gather(*(driver.asend(simple_message(subject=s)) for s in wave))
        pool = side(driver)._pool
        assert pool is not None
        return len(pool.idle)

    idle = run(driver, scenario)
    handler = smtp_server.handler
    assert idle == 3
    assert sorted(str(parsed(m.content)["Subject"]) for m in handler.messages) == sorted(subjects)
    assert handler.connections <= 20 + 2 * (20 - 3)  # later waves reuse the pooled three


def test_dead_pooled_connection_is_replaced_transparently(
    smtp_server: LoopbackController,
) -> None:
    driver = plain_driver(smtp_server)

    async def scenario() -> None:
        await driver.asend(simple_message())
        pool = side(driver)._pool
        assert pool is not None
        [idle] = pool.idle
        sock = idle.smtp.get_transport_info("socket")
        sock.shutdown(socket.SHUT_RDWR)  # as if the server had timed it out
        await driver.asend(simple_message())

    run(driver, scenario)
    assert len(smtp_server.handler.messages) == 2
    assert smtp_server.handler.connections == 2


def test_pooled_connection_closed_at_mail_from_is_retried_once(
    smtp_server: LoopbackController,
) -> None:
    """421 on MAIL FROM over a reused connection (nothing sent yet): one fresh retry."""
    handler = smtp_server.handler
    driver = plain_driver(smtp_server)

    async def scenario() -> None:
        await driver.asend(simple_message())
        handler.mail_replies_once.append("421 4.4.2 idle too long, closing")
        await driver.asend(simple_message())

    run(driver, scenario)
    assert len(handler.messages) == 2
    assert handler.connections == 2


def test_a_fresh_connection_closed_at_mail_from_is_not_retried(
    smtp_server: LoopbackController,
) -> None:
    smtp_server.handler.mail_replies_once.append("421 4.4.2 closing")
    error = afail(plain_driver(smtp_server))
    assert isinstance(error, ProviderUnavailable)
    assert error.status == 421
    assert smtp_server.handler.connections == 1


def test_aclose_says_quit_to_idle_connections(smtp_server: LoopbackController) -> None:
    """The idle connection gets a QUIT (the server then closes its side) and the pool
    keeps nothing; a later send in the same loop still delivers, without pooling."""
    driver = plain_driver(smtp_server)

    async def scenario() -> None:
        await driver.asend(simple_message())
        pool = side(driver)._pool
        assert pool is not None
        [idle] = pool.idle
        quit_replies: list[int] = []
        real_quit = idle.smtp.quit

        async def quit(**kwargs: Any) -> Any:
            answer = await real_quit(**kwargs)
            quit_replies.append(answer.code)
            return answer

        idle.smtp.quit = quit  # type: ignore[method-assign]
        await driver.aclose()
        assert quit_replies == [221]
        assert pool.idle == [] and pool.closed
        await driver.asend(simple_message())
        assert pool.idle == []

    run(driver, scenario)
    assert len(smtp_server.handler.messages) == 2


def test_a_new_event_loop_gets_a_new_pool_and_the_old_sockets_are_closed(
    smtp_server: LoopbackController,
) -> None:
    """asyncio.run twice without aclose: the first loop's idle connection is closed
    without its loop (no ResourceWarning left for the garbage collector) and the second
    loop opens its own."""
    driver = plain_driver(smtp_server)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        asyncio.run(driver.asend(simple_message()))
        first = side(driver)._pool
        assert first is not None and len(first.idle) == 1
        asyncio.run(driver.asend(simple_message()))
        assert side(driver)._pool is not first
        assert first.closed and first.idle == []
        driver.close()  # the second loop is closed too: its connection is reclaimed here
        gc.collect()
    assert [w for w in seen if issubclass(w.category, ResourceWarning)] == []
    assert len(smtp_server.handler.messages) == 2
    assert smtp_server.handler.connections == 2


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_a_tls_connection_closed_by_aiosmtplib_frees_its_socket_before_the_loop_ends(
    smtp_server_factory: ServerFactory,
    server_tls_context: ssl.SSLContext,
    ca_file: str,
    security: str,
) -> None:
    """aiosmtplib closes a connection itself after a 421; under TLS its close() starts a
    close_notify exchange that needs the peer and more turns of the loop. Here the server
    sleeps right after its 421, and the loop is closed as soon as the send has failed (as
    the contract tests do): the socket must be closed already, not left for the garbage
    collector (the ResourceWarning that once failed CI, attributed to a later test)."""
    if security == "starttls":
        server = smtp_server_factory(tls_context=server_tls_context, require_starttls=True)
    else:
        server = smtp_server_factory(ssl_context=server_tls_context)

    async def handle_mail(*args: Any) -> str:
        asyncio.get_running_loop().call_soon(time.sleep, 1.0)  # after the reply is written
        return "421 4.3.2 Service shutting down"

    server.handler.handle_MAIL = handle_mail
    driver = SMTPDriver(name="tls", host="127.0.0.1", port=server.port, ca_file=ca_file,
                        security=security, timeout=5)  # fmt: skip

    async def scenario() -> None:
        with pytest.raises(ProviderUnavailable):
            await driver.asend(simple_message())
        await driver.aclose()

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        loop = asyncio.new_event_loop()
        loop.run_until_complete(scenario())
        loop.close()
        del loop
        gc.collect()
    assert [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)] == []


def test_a_second_loop_while_the_first_is_open_is_refused(
    smtp_server: LoopbackController,
) -> None:
    driver = plain_driver(smtp_server)
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(driver.asend(simple_message()))
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(driver.asend(simple_message()))
        driver.close()  # the first loop is open and idle: close() QUITs in it
        pool = side(driver)._pool
        assert pool is not None and pool.closed and pool.idle == []
    finally:
        first.close()
    assert len(smtp_server.handler.messages) == 1


# -- cancellation and the deadline ----------------------------------------------------------


def test_a_cancelled_send_drops_its_connection(smtp_server: LoopbackController) -> None:
    """wait_for gives up while the server sits on the final reply: the connection (state
    unknown) is aborted, not pooled; the next send opens a fresh one and delivers."""
    handler = smtp_server.handler
    driver = plain_driver(smtp_server)

    async def scenario() -> None:
        handler.stall_after_data = 3.0
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(driver.asend(simple_message(subject="cancelled")), 0.3)
        pool = side(driver)._pool
        assert pool is not None and pool.idle == []
        handler.stall_after_data = 0.0
        await driver.asend(simple_message(subject="next"))

    run(driver, scenario)
    assert handler.connections == 2
    assert "next" in [str(parsed(m.content)["Subject"]) for m in handler.messages]


def test_a_send_cancelled_while_connecting_leaves_nothing_open(
    silent_server: tuple[str, int],
) -> None:
    host, port = silent_server
    driver = SMTPDriver(name="mute", host=host, port=port, security="none", timeout=30)

    async def scenario() -> None:
        task = asyncio.ensure_future(driver.asend(simple_message()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pool = side(driver)._pool
        assert pool is not None and pool.idle == []

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run(driver, scenario)
        gc.collect()
    assert [w for w in seen if issubclass(w.category, ResourceWarning)] == []


def test_a_send_cancelled_while_streaming_stops_its_worker_thread() -> None:
    """Cancelled while a large message is being written to a server that stopped reading
    (after DATA, with the writer waiting for the buffer to drain): the connection is
    aborted and the generating thread ends (asyncio.run, which waits for the default
    executor, returns) without any send left running."""
    with scripted_server("silent") as (port, commands):
        driver = SMTPDriver(name="relay", host="127.0.0.1", port=port, security="none",
                            timeout=30)  # fmt: skip
        written: list[int] = []
        real_put = _smtp_async._put

        async def put(protocol: SMTPProtocol, chunk: bytes, seconds: float) -> None:
            written.append(len(chunk))
            await real_put(protocol, chunk, seconds)

        async def scenario() -> None:
            task = asyncio.ensure_future(driver.asend(big_message()))
            for _ in range(2000):  # bounded: until chunks are being written after DATA
                if b"DATA" in commands and len(written) >= 2:
                    break
                await asyncio.sleep(0.01)
            assert b"DATA" in commands and len(written) >= 2
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            pool = side(driver)._pool
            assert pool is not None and pool.idle == []

        before = threading.active_count()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_smtp_async, "_put", put)
            run(driver, scenario)
    assert threading.active_count() <= before


def test_the_mailer_deadline_bounds_a_silent_server(silent_server: tuple[str, int]) -> None:
    """timeout is 30 s, the deadline 0.3 s: the attempt ends as an unambiguous timeout
    long before the guard (20 s) would fail the test."""
    host, port = silent_server
    driver = SMTPDriver(name="mute", host=host, port=port, security="none", timeout=30)

    async def scenario() -> AllProvidersFailed:
        async with AsyncFailoverMailer([driver], deadline=0.3) as mailer:
            with pytest.raises(AllProvidersFailed) as caught:
                await asyncio.wait_for(mailer.send(simple_message()), 20)
            return caught.value

    error = asyncio.run(scenario())
    first = error.attempts[0].error
    assert isinstance(first, ProviderUnavailable)
    assert (first.reason, first.ambiguous) == ("timeout", False)


# -- every aiosmtplib exception ---------------------------------------------------------------


def _walked() -> set[type[BaseException]]:
    """Every exception class aiosmtplib defines: its namespaces and every subclass of its
    root defined anywhere in aiosmtplib."""
    found: set[type[BaseException]] = set()
    for module in (aiosmtplib, ae):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("aiosmtplib"):
                found.add(cls)
    pending: list[type[BaseException]] = [ae.SMTPException]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("aiosmtplib"):
            found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_aiosmtplib_exception_class_is_mapped() -> None:
    assert _walked() == set(AIOSMTPLIB_ERRORS) == set(EXPECTED), (
        "decide what the new/removed aiosmtplib classes mean"
    )


def _refused(code: int) -> ae.SMTPRecipientsRefused:
    return ae.SMTPRecipientsRefused([ae.SMTPRecipientRefused(code, "x", "rcpt@example.com")])


# class: (an instance, the phase, the expected error type, reason, ambiguous)
EXPECTED: dict[type[BaseException], tuple[Callable[[], BaseException], str, type, str | None,
                                          bool]] = {
    ae.SMTPException: (lambda: ae.SMTPException("x"), _Phase.SENT, ProviderUnavailable,
                       "connection", True),
    ae.SMTPServerDisconnected: (lambda: ae.SMTPServerDisconnected("lost"), _Phase.SENT,
                                ProviderUnavailable, "connection", True),
    ae.SMTPConnectError: (lambda: ae.SMTPConnectError("no greeting"), _Phase.CONNECT,
                          ProviderUnavailable, "connection", False),
    ae.SMTPTimeoutError: (lambda: ae.SMTPTimeoutError("t"), _Phase.SENT, ProviderUnavailable,
                          "timeout", True),
    ae.SMTPConnectTimeoutError: (lambda: ae.SMTPConnectTimeoutError("t"), _Phase.CONNECT,
                                 ProviderUnavailable, "timeout", False),
    ae.SMTPReadTimeoutError: (lambda: ae.SMTPReadTimeoutError("t"), _Phase.CONTENT,
                              ProviderUnavailable, "timeout", False),
    ae.SMTPNotSupported: (lambda: ae.SMTPNotSupported("no such extension"), _Phase.CONNECT,
                          ProviderUnavailable, "connection", False),
    ae.SMTPResponseException: (lambda: ae.SMTPResponseException(451, "later"),
                               _Phase.ENVELOPE, ProviderUnavailable, "server_error", False),
    ae.SMTPConnectResponseError: (lambda: ae.SMTPConnectResponseError(554, "go away"),
                                  _Phase.CONNECT, ProviderUnavailable, "server_error", False),
    ae.SMTPHeloError: (lambda: ae.SMTPHeloError(501, "bad hostname"), _Phase.CONNECT,
                       ProviderUnavailable, "server_error", False),
    ae.SMTPDataError: (lambda: ae.SMTPDataError(554, "5.7.1 spam"), _Phase.SENT,
                       MessageRejected, None, False),
    ae.SMTPAuthenticationError: (lambda: ae.SMTPAuthenticationError(535, "bad login"),
                                 _Phase.CONNECT, ProviderUnavailable, "auth", False),
    ae.SMTPSenderRefused: (lambda: ae.SMTPSenderRefused(553, "5.1.7 malformed", "s@x"),
                           _Phase.ENVELOPE, MessageRejected, None, False),
    ae.SMTPRecipientRefused: (lambda: ae.SMTPRecipientRefused(550, "5.1.1 no", "r@x"),
                              _Phase.ENVELOPE, MessageRejected, None, False),
    ae.SMTPRecipientsRefused: (lambda: _refused(550), _Phase.ENVELOPE, MessageRejected, None,
                               False),
}  # fmt: skip


@pytest.mark.parametrize("cls", sorted(EXPECTED, key=lambda c: c.__name__),
                         ids=lambda c: c.__name__)  # fmt: skip
def test_class_error_reason_and_ambiguity(cls: type[BaseException]) -> None:
    make, where, error_type, reason, ambiguous = EXPECTED[cls]
    exc = make()
    assert type(exc) is cls
    phase = _Phase()
    phase.value = where
    error = failure(SMTPDriver(name="d", host="h.example"), exc, phase)
    assert type(error) is error_type
    assert getattr(error, "reason", None) == reason
    assert getattr(error, "ambiguous", False) is ambiguous
    assert error.driver == "d"


def _unverified() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate"  # set by the ssl module when raised
    return error


@pytest.mark.parametrize(
    ("cause", "reason", "words"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection", "refused"),
        (_unverified(), "connection", "not trusted"),
        (socket.gaierror(-2, "Name or service not known"), "connection", "gaierror"),
    ],
)
def test_a_connect_error_is_classified_by_its_cause(
    cause: OSError, reason: str, words: str
) -> None:
    """aiosmtplib wraps the socket's own error as the cause of SMTPConnectError."""
    exc = ae.SMTPConnectError("Error connecting")
    exc.__cause__ = cause
    error = failure(SMTPDriver(name="d", host="h.example"), exc, _Phase())
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous) == (reason, False)
    assert words in error.detail


def test_a_temporary_refusal_among_all_refused_fails_over() -> None:
    error = failure(SMTPDriver(name="d", host="h.example"), _refused(450), _Phase())
    assert isinstance(error, ProviderUnavailable)
    assert error.status == 450


def test_a_reply_echoing_the_password_is_neither_shown_nor_chained(
    smtp_server: LoopbackController,
) -> None:
    """A server that echoes the password in its refusal: the error text is scrubbed and
    the original exception is not chained."""
    smtp_server.handler.mail_reply = f"451 4.3.0 try again, {GOOD_PASSWORD}"
    driver = plain_driver(smtp_server, username=GOOD_USER, password=GOOD_PASSWORD,
                          allow_insecure_auth=True)  # fmt: skip
    async_side = driver._async()

    async def scenario() -> ProviderUnavailable:
        with pytest.raises(ProviderUnavailable) as caught:  # noqa: SIM117
            with async_side._errors(_Phase()):
                raise ae.SMTPResponseException(451, f"4.3.0 try again, {GOOD_PASSWORD}")
        return caught.value

    error = run(driver, scenario)
    assert error.__cause__ is None
    assert GOOD_PASSWORD not in _formatted(error)
    assert "***" in str(error)


def _formatted(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))


# -- the aiosmtplib internals this path relies on (see _smtp_async's docstring) --------------


def test_aiosmtplib_internals_we_rely_on(smtp_server: LoopbackController) -> None:
    """protocol.write puts bytes on the wire unchanged; _drain_helper waits while writing
    is paused and returns once resumed; read_response reads one reply."""
    assert inspect.iscoroutinefunction(SMTPProtocol._drain_helper)
    assert inspect.iscoroutinefunction(SMTPProtocol.read_response)

    async def scenario() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_server.port, start_tls=False,
                               timeout=5)  # fmt: skip
        await smtp.connect()
        protocol = smtp.protocol
        assert isinstance(protocol, SMTPProtocol)
        protocol.pause_writing()
        drained = asyncio.ensure_future(_smtp_async._drain(protocol))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not drained.done()
        protocol.resume_writing()
        await asyncio.wait_for(drained, 5)
        protocol.write(b"NOOP\r\n")
        answer = await protocol.read_response(timeout=5)
        assert answer.code == 250
        await smtp.quit()

    asyncio.run(scenario())


@pytest.mark.parametrize("megabytes", [0, 2], ids=["in-memory", "streamed"])
def test_the_final_reply_is_awaited_before_the_loop_can_deliver_it(
    smtp_server: LoopbackController, monkeypatch: pytest.MonkeyPatch, megabytes: int
) -> None:
    """A reply the loop delivers at its very next turn after the end-of-data mark is
    written (call_soon: the earliest a real socket could) is the one read: the read was
    armed without an await in between (an unarmed protocol drops it, and the send would
    read the server's own reply, Q00001, instead)."""
    real_write = SMTPProtocol.write

    def write(self: SMTPProtocol, data: bytes) -> None:
        real_write(self, data)
        if data.endswith(b"\r\n.\r\n"):
            self._loop.call_soon(self.data_received, b"250 2.0.0 Ok: queued as EARLY1\r\n")

    monkeypatch.setattr(SMTPProtocol, "write", write)
    message = big_message(megabytes) if megabytes else simple_message()
    [receipt] = asend(plain_driver(smtp_server, pool_size=0, timeout=10), message)
    assert receipt.message_id == "EARLY1"


# -- the mailer -------------------------------------------------------------------------------


def test_async_mailer_fails_over_from_smtp_to_memory(smtp_server: LoopbackController) -> None:
    """SMTP primary that cannot take the message now (451): the memory backup delivers;
    then the primary recovers and delivers itself."""
    backup = MemoryDriver(name="backup")
    primary = plain_driver(smtp_server)

    async def scenario() -> list[str]:
        async with AsyncFailoverMailer([primary, backup]) as mailer:
            smtp_server.handler.mail_reply = "451 4.3.0 try later"
            first = await mailer.send(simple_message())
            assert [a.outcome for a in first.attempts] == ["unavailable", "sent"]
            smtp_server.handler.mail_reply = None
            second = await mailer.send(simple_message())
            return [first.driver, second.driver]

    assert asyncio.run(scenario()) == ["backup", "relay"]
    assert len(backup.outbox) == 1
    assert len(smtp_server.handler.messages) == 1


def test_asend_is_native_not_send_in_a_thread(
    smtp_server: LoopbackController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asend never calls the blocking send (Driver.asend's default would, in a thread)."""

    def blocking(self: SMTPDriver, message: Message) -> Receipt:
        raise AssertionError("the blocking send was used")

    monkeypatch.setattr(SMTPDriver, "send", blocking)
    [receipt] = asend(plain_driver(smtp_server), simple_message())
    assert receipt.message_id == "Q00001"


def test_async_mailer_stops_at_a_rejection(smtp_server: LoopbackController) -> None:
    smtp_server.handler.data_reply = "554 5.7.1 Spam detected"
    backup = MemoryDriver(name="backup")

    async def scenario() -> None:
        async with AsyncFailoverMailer([plain_driver(smtp_server), backup]) as mailer:
            with pytest.raises(MessageRejected):
                await mailer.send(simple_message())

    asyncio.run(scenario())
    assert backup.outbox == []


def test_missing_aiosmtplib_names_the_extra(
    smtp_server: LoopbackController, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aiosmtplib", None)
    driver = plain_driver(smtp_server)
    with pytest.raises(MissingDependency) as caught:
        asyncio.run(driver.asend(simple_message()))
    assert "aiosmtplib" in str(caught.value)
    assert 'pip install "mailfailover[async]"' in str(caught.value)
    assert smtp_server.handler.connections == 0
