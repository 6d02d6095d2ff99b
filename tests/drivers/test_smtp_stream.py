"""The SMTP driver's streamed DATA: the chunking writer, dot-stuffing, and large messages."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import os
import re
import smtplib
from typing import Any

import pytest
from smtp_support import parsed

from mailfailover import Attachment
from mailfailover.drivers import _smtp_data as smtp_module
from mailfailover.drivers._smtp_data import DataWriter
from mailfailover.drivers.smtp import SMTPDriver
from mailfailover.testing import simple_message

# The fixtures live in tests/drivers/conftest.py; these names are only for annotations.
LoopbackController = Any


def plain_driver(server: LoopbackController, **settings: Any) -> SMTPDriver:
    settings.setdefault("timeout", 10)
    return SMTPDriver(name="relay", host="127.0.0.1", port=server.port, security="none", **settings)


def written(pieces: list[bytes], chunk: int) -> tuple[bytes, list[bytes]]:
    """What a :class:`DataWriter` sends for ``pieces``: the whole, and each send."""
    sent: list[bytes] = []
    writer = DataWriter(sent.append, chunk=chunk)
    for piece in pieces:
        assert writer.write(piece) == len(piece)
    writer.close()
    return b"".join(sent), sent


# -- the writer ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64 * 1024])
@pytest.mark.parametrize(
    ("pieces", "wire"),
    [
        ([b"a\r\n", b".b\r\n"], b"a\r\n..b\r\n.\r\n"),
        ([b".first\r\n"], b"..first\r\n.\r\n"),
        ([b"a\r", b"\n.b\r\n"], b"a\r\n..b\r\n.\r\n"),  # CRLF split across writes
        ([b"a\r\n.", b"b\r\n"], b"a\r\n..b\r\n.\r\n"),  # the dot ends one write
        ([b"a", b".b\r\n"], b"a.b\r\n.\r\n"),  # not at a line start: untouched
        ([b".\r\n", b"..\r\n"], b"..\r\n...\r\n.\r\n"),  # a lone dot, two dots
        ([b"x\n.y\rz"], b"x\r\n..y\r\nz\r\n.\r\n"),  # bare LF and CR made CRLF
        ([b"no line end"], b"no line end\r\n.\r\n"),
        ([], b"\r\n.\r\n"),
    ],
)
def test_writer_dot_stuffs_and_ends_the_data(pieces: list[bytes], wire: bytes, chunk: int) -> None:
    assert written(pieces, chunk)[0] == wire


def test_writer_sends_in_bounded_chunks() -> None:
    line = b"abcdefghij" * 7 + b"\r\n"
    whole, sent = written([line] * 10_000, chunk=4096)
    assert whole == line * 10_000 + b".\r\n"
    assert len(sent) > 100
    assert max(len(piece) for piece in sent) <= 4096 + 3


def test_writer_stuffs_dots_at_every_chunk_boundary() -> None:
    """Every byte offset of a line start falls on a chunk boundary for some chunk size."""
    pieces = [b"ab\r\n", b".c\r\n", b".", b".d\r\n", b"e\r", b"\n", b".f"]
    expected = b"ab\r\n..c\r\n...d\r\ne\r\n..f\r\n.\r\n"
    for chunk in range(1, 24):
        assert written(pieces, chunk)[0] == expected, chunk


# -- through a real server -------------------------------------------------------------------


def test_leading_dots_arrive_byte_for_byte_across_chunk_boundaries(
    smtp_server: LoopbackController, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines starting with '.' at every offset of small chunks reach the server unchanged."""
    monkeypatch.setattr(smtp_module, "_CHUNK", 7)
    sent: list[bytes] = []
    real_send = smtplib.SMTP.send

    def send(self: smtplib.SMTP, data: Any) -> None:
        sent.append(data.encode() if isinstance(data, str) else bytes(data))
        real_send(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", send)
    text = "".join(f"{'x' * (n % 9)}\n.{n}\n..\n.\n" for n in range(40))
    with plain_driver(smtp_server) as driver:
        driver.send(simple_message(text=text))
        wire = b"".join(sent).split(b"DATA\r\n", 1)[1]
    [got] = smtp_server.handler.messages
    assert len(sent) > 100  # the data went out in many small chunks
    # Byte for byte: the server holds the un-stuffed data, the wire has every dot doubled.
    assert wire == re.sub(rb"(?m)^\.", b"..", got.content) + b".\r\n"
    assert text.replace("\n", "\r\n").encode() in got.content
    assert parsed(got.content).get_body().get_content().replace("\r\n", "\n") == text


def test_large_attachment_arrives_intact_with_size(
    smtp_server: LoopbackController,
) -> None:
    """A message above the streaming threshold is generated straight to the socket."""
    payload = os.urandom(3 * 1024 * 1024 + 11)
    message = simple_message(
        text=".starts with a dot\n", attachments=[Attachment("big.bin", payload)]
    )
    assert smtp_module.estimated_size(message) > smtp_module.STREAM_ABOVE
    with plain_driver(smtp_server) as driver:
        receipt = driver.send(message)
    assert receipt.message_id == "Q00001"
    [got] = smtp_server.handler.messages
    mime = parsed(got.content)
    [part] = [p for p in mime.walk() if p.get_filename() == "big.bin"]
    assert hashlib.sha256(part.get_content()).digest() == hashlib.sha256(payload).digest()
    assert mime.get_body(("plain",)).get_content().startswith(".starts with a dot")
    size = [o for o in got.mail_options if o.startswith("SIZE=")]
    # SIZE is the exact length on the wire: the content, the stuffed dot, the end mark.
    assert size == [f"SIZE={len(got.content) + 1 + 3}"]
    assert not any(o.startswith("BODY=") for o in got.mail_options)


def test_large_eight_bit_message_is_announced_with_body_8bitmime(
    smtp_server: LoopbackController,
) -> None:
    message = simple_message(
        text="grüße\n" * 10, attachments=[Attachment("big.bin", os.urandom(2 * 1024 * 1024))]
    )
    with plain_driver(smtp_server) as driver:
        driver.send(message)
    [got] = smtp_server.handler.messages
    assert "BODY=8BITMIME" in got.mail_options
    assert parsed(got.content).get_body(("plain",)).get_content().startswith("grüße")


def test_streamed_output_matches_the_standard_generator() -> None:
    """Same bytes as ``as_bytes()`` with the same boundaries, dot-stuffed, plus the end mark."""
    payload = os.urandom(200_001)
    message = simple_message(
        text="a\n.b\n", html="<p>x</p>", attachments=[Attachment("a.bin", payload)]
    )
    mime = message.to_mime(policy=smtp_module.SMTP_POLICY)
    sent: list[bytes] = []
    smtp_module.generate(mime, smtp_module.SMTP_POLICY, sent.append)
    [part] = [p for p in mime.walk() if p.get_filename() == "a.bin"]
    part.set_payload(base64.encodebytes(payload).decode("ascii"))  # what the stdlib holds
    reference = mime.as_bytes(policy=email.policy.SMTP).replace(b"\r\n.", b"\r\n..")
    assert b"".join(sent) == reference + b".\r\n"


# -- if the email package's internals change: fall back to as_bytes(), never lose mail ------


@pytest.fixture
def fresh_self_check() -> Any:
    """Run the streaming self-check again for the test, and again after it."""
    smtp_module.streaming_supported.cache_clear()
    yield
    smtp_module.streaming_supported.cache_clear()


def _rename_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release renames Generator._dispatch (the standard generator still works)."""
    import email.generator as g

    original_write, original_dispatch = g.Generator._write, g.Generator._dispatch  # type: ignore[attr-defined]

    def write(self: Any, msg: Any) -> None:
        self._dispatch = original_dispatch.__get__(self)  # only the stdlib knows the new name
        original_write(self, msg)

    monkeypatch.setattr(g.Generator, "_dispatch_message", original_dispatch, raising=False)
    monkeypatch.delattr(g.Generator, "_dispatch")
    monkeypatch.setattr(g.Generator, "_write", write)


def _change_the_bytes_setter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release replaces the content manager's bytes setter with another function."""
    import email.contentmanager as cm

    handlers = dict(cm.raw_data_manager.set_handlers)  # type: ignore[attr-defined]
    original = handlers[bytes]
    handlers[bytes] = lambda *args, **kwargs: original(*args, **kwargs)
    monkeypatch.setattr(cm.raw_data_manager, "set_handlers", handlers)


def _change_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The streamed bytes stop matching the standard generator's (a changed line width)."""
    original = smtp_module._lines
    monkeypatch.setattr(smtp_module, "_lines", lambda data, width, nl: original(data, 64, nl))


def test_the_streaming_path_is_in_use_on_this_python(fresh_self_check: None) -> None:
    """The control: on this Python the self-check passes and the fast path is taken."""
    assert smtp_module.streaming_supported() is True
    assert smtp_module.policy_for(utf8=False, eight_bit=True) is smtp_module.SMTP_POLICY


@pytest.mark.parametrize(
    "change", [_rename_dispatch, _change_the_bytes_setter, _change_the_output],
    ids=["renamed-method", "changed-setter", "changed-output"],
)  # fmt: skip
def test_a_changed_email_package_costs_memory_never_mail(
    smtp_server: LoopbackController,
    monkeypatch: pytest.MonkeyPatch,
    fresh_self_check: None,
    change: Any,
) -> None:
    """Simulate a Python patch release changing what _Generator leans on: the self-check
    turns streaming off, and a large message with an attachment still arrives intact."""
    change(monkeypatch)
    assert smtp_module.streaming_supported() is False
    payload = os.urandom(2 * 1024 * 1024 + 5)
    message = simple_message(text=".dot first\n", attachments=[Attachment("big.bin", payload)])
    with plain_driver(smtp_server) as driver:
        driver.send(message)
    [got] = smtp_server.handler.messages
    mime = parsed(got.content)
    [part] = [p for p in mime.walk() if p.get_filename() == "big.bin"]
    assert part.get_content() == payload
    assert mime.get_body(("plain",)).get_content().startswith(".dot first")
    assert [o for o in got.mail_options if o.startswith("SIZE=")] == [
        f"SIZE={len(got.content) + 1 + 3}"
    ]
