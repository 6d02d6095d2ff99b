"""A :class:`~mailfailover.Message` from an ``.eml`` file, to re-drive what the ``file``
driver (or any mail program) stored, keeping its Message-ID.

From, To, Cc, Reply-To, Subject and Message-ID become the fields of the same names; a
``Bcc`` header, when the file has one, the envelope's Bcc. The first ``text/plain`` and
``text/html`` bodies become ``text`` and ``html`` (LF line ends, without the final line end
the MIME builder adds); every other part is an attachment (``inline`` with its Content-ID
when it is), inline ones first, as the MIME tree holds them. ``X-Tags`` / ``X-Metadata``
(how the ``smtp`` and ``file`` drivers carry tags and metadata) become ``tags`` and
``metadata``; any other header a message may carry is kept in ``headers``.
"""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from typing import Any

from .driver import METADATA_HEADER, TAGS_HEADER
from .errors import InvalidMessage
from .message import _RESERVED_PREFIXES, RESERVED_HEADERS, Attachment, Message

__all__ = ["message_from_eml"]

_NOT_HEADERS = RESERVED_HEADERS | {"bcc", "sender", "received", "return-path"}


def message_from_eml(raw: bytes) -> Message:
    """The message an ``.eml`` file holds; :class:`InvalidMessage` (field ``eml``) if it
    cannot be one."""
    try:
        mime = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(mime, EmailMessage)
        fields = _fields(mime)
    except InvalidMessage:
        raise
    except Exception as exc:
        raise InvalidMessage(
            f"eml: not a message this can re-send ({type(exc).__name__})", field="eml"
        ) from None
    return Message(**fields)


def _addresses(mime: EmailMessage, name: str) -> list[str]:
    header = mime[name]
    if header is None:
        return []
    return [str(address) for address in getattr(header, "addresses", ())]


def _fields(mime: EmailMessage) -> dict[str, Any]:
    senders = _addresses(mime, "From")
    if len(senders) != 1:
        raise InvalidMessage("eml: the file needs exactly one From address", field="sender")
    text_part = mime.get_body(preferencelist=("plain",))
    html_part = mime.get_body(preferencelist=("html",))
    fields: dict[str, Any] = {
        "sender": senders[0],
        "to": _addresses(mime, "To"),
        "cc": _addresses(mime, "Cc"),
        "bcc": _addresses(mime, "Bcc"),
        "reply_to": _addresses(mime, "Reply-To"),
        "subject": str(mime["Subject"] or ""),
        "text": _body(text_part, "text/plain"),
        "html": _body(html_part, "text/html"),
        "attachments": _attachments(mime, {id(text_part), id(html_part)}),
    }
    message_id = mime["Message-ID"]
    if message_id:
        fields["message_id"] = str(message_id).strip()
    headers: dict[str, str] = {}
    for name, value in mime.items():
        lowered = name.lower()
        if lowered in (TAGS_HEADER.lower(), METADATA_HEADER.lower()):
            continue
        if lowered in _NOT_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
            continue
        headers[name] = str(value)
    fields["headers"] = headers
    tags = mime[TAGS_HEADER]
    if tags is not None:
        fields["tags"] = _json_header(TAGS_HEADER, str(tags), list)
    metadata = mime[METADATA_HEADER]
    if metadata is not None:
        fields["metadata"] = _json_header(METADATA_HEADER, str(metadata), dict)
    return fields


def _body(part: Any, kind: str) -> str | None:
    if part is None or part.get_content_type() != kind:
        return None
    content = part.get_content()
    if not isinstance(content, str):
        return None
    # Line ends as a Message holds them; the last one is the one the MIME builder added.
    text = content.replace("\r\n", "\n")
    return text[:-1] if text.endswith("\n") else text


def _attachments(mime: EmailMessage, bodies: set[int]) -> list[Attachment]:
    attachments = []
    for part in mime.walk():
        if part.is_multipart() or id(part) in bodies:
            continue
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes):
            continue
        content_id = part["Content-ID"]
        inline = part.get_content_disposition() == "inline"
        attachments.append(
            Attachment(
                part.get_filename(),
                content,
                part.get_content_type(),
                inline=inline,
                content_id=str(content_id) if content_id and inline else None,
            )
        )
    return attachments


def _json_header(name: str, value: str, kind: type) -> Any:
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, kind):
        raise InvalidMessage(f"eml: the {name} header is not what mailfailover writes",
                             field="eml")  # fmt: skip
    return parsed
