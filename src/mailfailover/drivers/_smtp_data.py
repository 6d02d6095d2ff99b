"""The message as SMTP DATA, generated in bounded chunks straight to the socket.

The email package's own generator renders every MIME part into a buffer before writing it,
and its content manager keeps each attachment as one base64 string: a 20 MB attachment
cost the SMTP driver about 8x its size. Here a :class:`_Generator` writes parts as it goes
and encodes attachments from their raw bytes in blocks, and a :class:`DataWriter` hands
the socket 64 KB pieces, doubling a leading '.' on every line (RFC 5321 dot-stuffing)
even across piece boundaries. The output is byte for byte what ``as_bytes()`` would give.
"""

from __future__ import annotations

import binascii
import email.contentmanager
import email.generator
import email.policy
import functools
import re
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import Policy
from typing import Any

from ..message import Message

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_CHUNK = 64 * 1024  # bytes handed to the socket at a time
STREAM_ABOVE = 1024 * 1024  # estimated size above which a message is never held whole
_RAW = "_mailfailover_base64_source"  # a part's attribute: (bytes, bytes per base64 line)


class DataWriter:
    """A file-like sink that turns the generator's output into SMTP DATA.

    It collects writes and passes them to ``send`` in pieces of ``chunk`` bytes (a few
    more when dots are doubled), with any bare CR or LF made CRLF (the email package with
    an SMTP policy writes CRLF already, so this is a count, not a copy, in practice) and a
    '.' starting a line doubled, including a line whose start falls at a piece boundary.
    :meth:`close` sends the rest with the end-of-data mark, in the same piece (one write,
    so a small message does not wait on Nagle's algorithm for its last three bytes).
    """

    def __init__(self, send: Callable[[bytes], object], chunk: int | None = None) -> None:
        self._send = send
        self._chunk = _CHUNK if chunk is None else chunk
        self._buffer = bytearray()
        self._line_start = True  # the next byte out starts a line
        self._held_cr = False  # a CR ended the last piece; its LF may start the next
        self._sent = False

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= self._chunk:
            piece = bytes(self._buffer[: self._chunk])
            del self._buffer[: self._chunk]  # cheap: a bytearray drops its head in place
            self._emit(piece, final=False)
        return len(data)

    def close(self) -> None:
        piece = bytes(self._buffer)
        self._buffer.clear()
        self._emit(piece, final=True)

    def _emit(self, data: bytes, *, final: bool) -> None:
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if not final and data.endswith(b"\r"):
            self._held_cr = True  # keep a CRLF split between pieces one line end
            data = data[:-1]
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            data = _LINE_ENDS.sub(b"\r\n", data)
        if self._line_start and data.startswith(b"."):
            data = b"." + data
        if b"\n." in data:
            data = data.replace(b"\n.", b"\n..")
        if data:
            self._line_start = data.endswith(b"\n")
            self._sent = True
        if final:
            data += b".\r\n" if self._sent and self._line_start else b"\r\n.\r\n"
        if data:
            self._send(data)


class SizeCounter:
    """A ``send`` that only measures: the size of the data and whether it is all ASCII."""

    __slots__ = ("ascii", "size")

    def __init__(self) -> None:
        self.size = 0
        self.ascii = True

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.ascii and not data.isascii():
            self.ascii = False


class _Generator(email.generator.BytesGenerator):
    """A ``BytesGenerator`` that writes multiparts and base64 attachments as it goes.

    The standard generator renders every part into its own buffer first (to choose a
    multipart boundary that is not in the text, and to rewrite a header after the body),
    so the whole message is in memory at least twice. Here a multipart gets a random
    boundary before its parts are written (checked against its text parts; base64 cannot
    contain '-'), and a part set from bytes by :data:`_CONTENT` is base64-encoded from the
    original bytes one block at a time. Other leaf parts (text, small) are written by the
    standard code.
    """

    def _write(self, msg: Any) -> None:
        raw = getattr(msg, _RAW, None)
        if raw is None and not msg.is_multipart():
            super()._write(msg)  # type: ignore[misc]
            return
        if raw is None:
            self._choose_boundary(msg)
        write_headers = getattr(msg, "_write_headers", None)
        if write_headers is None:
            self._write_headers(msg)  # type: ignore[attr-defined]
        else:
            write_headers(self)
        if raw is None:
            self._dispatch(msg)  # type: ignore[attr-defined]
        else:
            self._write_base64(*raw)

    def _choose_boundary(self, msg: Any) -> None:
        if msg.get_boundary():
            return
        texts = [
            part._payload
            for part in msg.walk()
            if isinstance(part._payload, str) and getattr(part, _RAW, None) is None
        ]
        while True:
            boundary = self._make_boundary()  # type: ignore[attr-defined]
            if not any("--" + boundary in text for text in texts):
                msg.set_boundary(boundary)
                return

    def _handle_multipart(self, msg: Any) -> None:
        subparts = msg.get_payload()
        if not isinstance(subparts, list):
            super()._handle_multipart(msg)  # type: ignore[misc]
            return
        nl = self._NL  # type: ignore[attr-defined]
        boundary = msg.get_boundary()
        if msg.preamble is not None:
            self._write_lines(msg.preamble)  # type: ignore[attr-defined]
            self.write(nl)
        self.write("--" + boundary + nl)
        for index, part in enumerate(subparts):
            if index:
                self.write(nl + "--" + boundary + nl)
            self.clone(self._fp).flatten(part, unixfrom=False, linesep=nl)  # type: ignore[attr-defined]
        self.write(nl + "--" + boundary + "--" + nl)
        if msg.epilogue is not None:
            self._write_lines(msg.epilogue)  # type: ignore[attr-defined]

    def _write_base64(self, data: bytes, per_line: int) -> None:
        nl: bytes = self._encoded_NL  # type: ignore[attr-defined]
        width = per_line // 3 * 4
        block = per_line * 1024
        view = memoryview(data)
        for start in range(0, len(view), block):
            encoded = binascii.b2a_base64(view[start : start + block], newline=False)
            self._fp.write(_lines(encoded, width, nl))  # type: ignore[attr-defined]


_STANDARD_SET_BYTES: Callable[..., None] = email.contentmanager.raw_data_manager.set_handlers[bytes]  # type: ignore[attr-defined]


def _lines(encoded: bytes, width: int, nl: bytes) -> bytearray:
    """``encoded`` cut into lines of ``width`` bytes, each ended by ``nl``.

    Column by column with strided slices (``width`` + ``len(nl)`` copies in C) rather than
    line by line (one Python-level slice per line).
    """
    rows, rest = divmod(len(encoded), width)
    step = width + len(nl)
    out = bytearray(rows * step)
    full = rows * width
    for column in range(width):
        out[column::step] = encoded[column:full:width]
    for offset, byte in enumerate(nl):
        out[width + offset :: step] = bytes((byte,)) * rows
    if rest:
        out += encoded[full:] + nl
    return out


def _set_bytes(msg: EmailMessage, data: bytes, *args: Any, **kwargs: Any) -> None:
    """The standard bytes setter, except that base64 is left to :class:`_Generator`."""
    cte = args[2] if len(args) > 2 else kwargs.get("cte", "base64")
    if cte != "base64":
        _STANDARD_SET_BYTES(msg, data, *args, **kwargs)
        return
    _STANDARD_SET_BYTES(msg, b"", *args, **kwargs)
    max_line_length = msg.policy.max_line_length
    assert max_line_length is not None  # the standard setter fails without one
    setattr(msg, _RAW, (bytes(data), max_line_length // 4 * 3))


def _content_manager() -> email.contentmanager.ContentManager:
    manager = email.contentmanager.ContentManager()
    standard = email.contentmanager.raw_data_manager
    manager.get_handlers = dict(standard.get_handlers)  # type: ignore[attr-defined]
    manager.set_handlers = dict(standard.set_handlers)  # type: ignore[attr-defined]
    for kind in (bytes, bytearray, memoryview):
        manager.add_set_handler(kind, _set_bytes)
    return manager


_CONTENT = _content_manager()
SMTP_POLICY = email.policy.SMTP.clone(content_manager=_CONTENT)
SMTPUTF8_POLICY = email.policy.SMTPUTF8.clone(content_manager=_CONTENT)
SMTP_7BIT_POLICY = SMTP_POLICY.clone(cte_type="7bit")
_STREAMING_POLICIES = (SMTP_POLICY, SMTPUTF8_POLICY, SMTP_7BIT_POLICY)

#: The private parts of the email package :class:`_Generator` and :func:`_set_bytes` lean
#: on. A Python release may rename or change any of them; :func:`streaming_supported` then
#: turns the streaming path off and the standard ``as_bytes()`` is used: more memory for a
#: large attachment, never a lost or mangled message.
_GENERATOR_INTERNALS = (
    "_write",
    "_dispatch",
    "_write_headers",
    "_make_boundary",
    "_handle_multipart",
    "_write_lines",
    "clone",
)  # fmt: skip  (_NL, _encoded_NL and _fp are set by flatten(): the sample run checks them)


@functools.lru_cache(maxsize=1)
def streaming_supported() -> bool:
    """Whether the email package is still what :class:`_Generator` expects.

    Checked once per process: the private methods and attributes exist, and a sample
    message (multipart, a text part, a base64 attachment, a line starting with a dot)
    generated by the streaming path is byte for byte what the standard generator gives.
    """
    try:
        if not all(hasattr(email.generator.BytesGenerator, n) for n in _GENERATOR_INTERNALS):
            return False
        handlers = getattr(email.contentmanager.raw_data_manager, "set_handlers", None)
        if not isinstance(handlers, dict) or handlers.get(bytes) is not _STANDARD_SET_BYTES:
            return False
        sample = EmailMessage(policy=email.policy.SMTP)
        sample["Subject"] = "self-check"
        sample.set_content(".dot\nplain text\n")
        sample.add_attachment(bytes(range(256)) * 5, "application", "octet-stream",
                              filename="a.bin")  # fmt: skip
        sample.set_boundary("mf-self-check")
        expected = bytearray()
        writer = DataWriter(expected.extend)
        writer.write(sample.as_bytes(policy=email.policy.SMTP))
        writer.close()
        streamed = EmailMessage(policy=SMTP_POLICY)
        streamed["Subject"] = "self-check"
        streamed.set_content(".dot\nplain text\n")
        streamed.add_attachment(bytes(range(256)) * 5, "application", "octet-stream",
                                filename="a.bin")  # fmt: skip
        streamed.set_boundary("mf-self-check")
        got = bytearray()
        _generate_streaming(streamed, SMTP_POLICY, got.extend)
        return bytes(got) == bytes(expected)
    except Exception:  # any surprise inside the email package means: do not stream
        return False


def policy_for(*, utf8: bool, eight_bit: bool) -> Policy:
    """The policy to build a message with for a server offering SMTPUTF8/8BITMIME: one
    whose attachments :func:`generate` streams, or the standard one when it cannot."""
    if streaming_supported():
        if utf8:
            return SMTPUTF8_POLICY
        return SMTP_POLICY if eight_bit else SMTP_7BIT_POLICY  # qp/base64 for a 7-bit server
    if utf8:
        return email.policy.SMTPUTF8
    return email.policy.SMTP if eight_bit else email.policy.SMTP.clone(cte_type="7bit")


def generate(mime: EmailMessage, policy: Policy, send: Callable[[bytes], object]) -> None:
    """Write ``mime`` as SMTP DATA (dot-stuffed, with the end mark) to ``send``, in chunks.

    A message built with a streaming policy (see :func:`policy_for`) is generated part by
    part; any other is rendered by the standard ``as_bytes()`` and then chunked.
    """
    if policy in _STREAMING_POLICIES:
        _generate_streaming(mime, policy, send)
        return
    writer = DataWriter(send)
    writer.write(mime.as_bytes(policy=policy))
    writer.close()


def _generate_streaming(
    mime: EmailMessage, policy: Policy, send: Callable[[bytes], object]
) -> None:
    writer = DataWriter(send)
    _Generator(writer, policy=policy).flatten(mime, linesep="\r\n")
    writer.close()


def estimated_size(message: Message) -> int:
    return (
        len(message.text or "")
        + len(message.html or "")
        + sum(len(attachment.content) for attachment in message.attachments)
    )
