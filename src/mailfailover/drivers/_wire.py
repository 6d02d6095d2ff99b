"""Transport-neutral HTTP values: what a provider module builds and what it reads.

A provider module is sans-I/O: it turns a message into an :class:`HttpRequest` and reads an
:class:`HttpResponse` (status, headers, body bytes, the body's JSON parsed on first use). It
never sees the transport that carries them, so the ``requests`` transport of
:class:`~mailfailover.drivers.HttpDriver` today, an async or batching one later, all send
the same descriptions and read the same answers. Nothing here imports ``requests``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

__all__ = [
    "B64",
    "MAX_RETRY_AFTER",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "encode_json",
    "parse_retry_after",
    "seconds_until",
]

#: Longest wait a provider may impose through Retry-After or a rate-limit reset: a broken
#: or hostile header must not take a driver out of rotation for days.
MAX_RETRY_AFTER = 3600.0


class B64:
    """Bytes to be sent base64-encoded inside a JSON body (see :func:`encode_json`)."""

    __slots__ = ("content",)

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __eq__(self, other: object) -> bool:
        return isinstance(other, B64) and other.content == self.content

    __hash__ = None  # type: ignore[assignment]


def encode_json(payload: Any) -> bytes:
    """Serialise ``payload`` to UTF-8 JSON, encoding each :class:`B64` straight into the bytes.

    Building the base64 text as a ``str`` and letting ``json.dumps`` copy it and then
    ``.encode()`` copy it again costs three copies of every attachment; splicing the base64
    bytes between the encoded pieces costs one.
    """
    blobs: list[bytes] = []
    # The marker is drawn at the first attachment, never before: a payload without one (most
    # of them; every item of a batch) pays nothing for it. Drawn during the encoding, it is
    # still unknowable to the payload's author, so it cannot occur in the payload's text.
    markers: list[str] = []

    def default(value: Any) -> str:
        if isinstance(value, B64):
            if not markers:
                markers.append(uuid.uuid4().hex)
            blobs.append(value.content)
            return f"{markers[0]}{len(blobs) - 1}{markers[0]}"
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=default)
    if not blobs:
        return text.encode("utf-8")
    pieces = text.split(markers[0])
    # pieces alternate: json text, blob index, json text, ...
    out: list[bytes] = []
    for position, piece in enumerate(pieces):
        if position % 2:
            out.append(base64.b64encode(blobs[int(piece)]))
        else:
            out.append(piece.encode("utf-8"))
    return b"".join(out)


@attrs.frozen
class HttpRequest:
    """What a provider module builds: the documented path and body, plus auth and headers."""

    path: str
    # The body can carry the key (Mandrill takes it as a JSON field) and always the message.
    json: Any = attrs.field(default=None, repr=False)
    data: Any = attrs.field(default=None, repr=False)
    files: Any = attrs.field(default=None, repr=False)
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)  # may carry the key
    auth: tuple[str, str] | None = attrs.field(default=None, repr=False)
    method: str = "POST"


class Headers(Mapping[str, str]):
    """Response headers, looked up without regard to case; a repeated header is joined
    with ``", "`` as RFC 9110 allows."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in self._items:
                value = f"{self._items[key][1]}, {value}"
            self._items[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


_UNPARSED: Any = object()


class HttpResponse:
    """A provider's answer as a provider module reads it, whatever transport fetched it.

    ``status`` is the HTTP status, ``headers`` a case-insensitive mapping, ``content`` the
    body's bytes; :attr:`text` decodes them (the ``charset`` the provider declared, else
    UTF-8) and :attr:`json` parses them once, on first use (``None`` when the body is not
    JSON).
    """

    __slots__ = ("_content", "_json", "headers", "reason", "status")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        content: bytes = b"",
        reason: str = "",
    ) -> None:
        self.status = status
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self._content: bytes | None = content
        self.reason = reason
        self._json: Any = _UNPARSED

    @classmethod
    def of_json(cls, status: int, value: Any, headers: Headers) -> HttpResponse:
        """An answer whose body is ``value``, already parsed (one item of a batch answer):
        :attr:`json` is ``value`` itself and :attr:`content` its UTF-8 JSON, encoded only if
        something reads it. The same answer as ``HttpResponse(status, headers,
        encode_json(value))`` for any ``value`` that came from ``json.loads``, without the
        encoding and the parsing back."""
        response = cls(status, headers)
        response._content = None
        response._json = value
        return response

    @property
    def content(self) -> bytes:
        """The body's bytes."""
        if self._content is None:
            self._content = encode_json(self._json)
        return self._content

    @property
    def text(self) -> str:
        return self.content.decode(self._charset(), "replace")

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or ``None`` when it is not JSON."""
        if self._json is _UNPARSED:
            try:
                # json.loads detects UTF-8/16/32 in bytes itself, as requests' .json() does.
                self._json = json.loads(self.content) if self.content.strip() else None
            except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
                self._json = None
        return self._json

    def _charset(self) -> str:
        content_type = self.headers.get("Content-Type", "")
        for parameter in content_type.split(";")[1:]:
            key, _, value = parameter.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"').strip()
                try:
                    "".encode(charset)
                except LookupError:
                    break
                return charset
        return "utf-8"

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status} {len(self.content)} bytes>"


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), capped at an hour."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def seconds_until(epoch: str | None) -> float | None:
    """A rate-limit reset given as epoch seconds, as seconds from now (capped)."""
    if not epoch:
        return None
    try:
        seconds = float(epoch) - time.time()
    except ValueError:
        return None
    if seconds != seconds:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
