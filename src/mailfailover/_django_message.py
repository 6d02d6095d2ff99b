"""Turn a Django ``EmailMessage`` into a :class:`~mailfailover.Message`, whole or not at all.

Used by :mod:`mailfailover.django`; kept apart so the backend module holds only the backend.
Every part of a Django message is either carried or refused with :class:`InvalidEmail`
naming the Django attribute: nothing is dropped silently. Header values are checked for line
breaks first, and one found raises :class:`HeaderInjection`, which is also Django's own
``BadHeaderError``, so code written for Django's backends (``except BadHeaderError``) keeps
working.
"""

from __future__ import annotations

import email.message
import mimetypes
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.mail import BadHeaderError
from django.core.mail import EmailMessage as DjangoEmailMessage
from django.utils.functional import Promise

from .errors import MISSING_PARAMETER, InvalidMessage
from .message import Attachment, Message, parse_mailbox, split_addresses

__all__ = ["HeaderInjection", "InvalidEmail", "to_message"]

_DEFAULT_MIMETYPE = "application/octet-stream"

# Extra headers Django turns into the message's own fields.
_ADDRESS_HEADERS = {"to": "to", "cc": "cc"}
# Extra headers mailfailover writes itself and cannot take from the caller.
_REFUSED_HEADERS = {
    "bcc": "a Bcc header would show the blind copies to every recipient; use bcc=[...]",
    "subject": "use the subject argument",
    "date": "mailfailover dates each message when it is sent",
    "mime-version": "mailfailover writes the MIME structure itself",
}
# Headers a MIME attachment part may carry: everything else on the part would be lost.
_PART_HEADERS = frozenset(
    {"content-type", "content-transfer-encoding", "content-disposition", "content-id",
     "mime-version"}
)  # fmt: skip
_PART_TYPE_PARAMS = frozenset({"charset", "name"})
_PART_DISPOSITION_PARAMS = frozenset({"filename"})
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})

# django-anymail's send options with no provider-neutral equivalent: a message migrated from
# anymail that still sets one would otherwise lose it without a word.
_ANYMAIL_ONLY = (
    "envelope_sender",
    "esp_extra",
    "merge_data",
    "merge_global_data",
    "merge_headers",
    "merge_metadata",
    "send_at",
    "template_id",
    "track_clicks",
    "track_opens",
)

# Message's field names, as the Django attribute a user would look at.
_DJANGO_FIELDS = {
    "sender": "from_email",
    "headers": "extra_headers",
}


class InvalidEmail(InvalidMessage, ValueError):
    """A Django message mailfailover cannot send as it is: an invalid address, a header it
    would have to drop, a body or attachment it cannot carry. Nothing was sent.

    ``field`` names the Django attribute (``from_email``, ``to``, ``extra_headers``,
    ``alternatives``, ``attachments[1]``...). Also a ``ValueError``, as Django's SMTP backend
    raises for an invalid address.
    """


class HeaderInjection(InvalidEmail, BadHeaderError):
    """A value that becomes a header holds a line break (header injection). Nothing was sent.

    Also Django's ``django.core.mail.BadHeaderError``.
    """


def _refuse(field: str, reason: str, *, code: int | None = None) -> InvalidEmail:
    return InvalidEmail(f"{field}: {reason}", field=field, code=code)


def _text(value: Any, field: str) -> str:
    """A str, or a lazy translation string made one; anything else is refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, Promise):
        return str(value)
    raise _refuse(field, f"must be text, not {type(value).__name__}")


def _header_text(value: Any, field: str) -> str:
    text = _text(value, field)
    if "\n" in text or "\r" in text:
        # The value is not echoed: it is hostile input, and can be long.
        raise HeaderInjection(
            f"{field}: header values can't contain newlines", field=field, code=None
        )
    return text


def _addresses(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Promise, Mapping)) or not isinstance(value, Iterable):
        raise _refuse(field, "must be a list or tuple of addresses")
    # Django's recipients() skips empty entries; so does this.
    return [text for text in (_header_text(item, field) for item in value) if text.strip()]


def _bare(addresses: Iterable[str], field: str) -> list[str]:
    try:
        return [parse_mailbox(address).ascii_email.lower() for address in addresses]
    except ValueError as exc:
        raise _refuse(field, str(exc)) from None


def _unset(value: Any) -> bool:
    """None, or django-anymail's ``UNSET`` marker (a class of that name)."""
    return value is None or getattr(value, "__name__", None) == "UNSET"


def _bodies(django_message: DjangoEmailMessage, origins: dict[str, str]) -> dict[str, str | None]:
    """``{"text": ..., "html": ...}`` from the body and the alternatives, as Django would build
    them; ``origins`` learns which Django attribute each came from."""
    subtype = _text(getattr(django_message, "content_subtype", "plain"), "content_subtype")
    body = _text(django_message.body if django_message.body is not None else "", "body")
    if subtype.lower() not in ("plain", "html"):
        raise _refuse(
            "content_subtype",
            f"a text/{subtype} body can't be carried: mailfailover sends text/plain and "
            "text/html bodies",
        )
    alternatives = list(getattr(django_message, "alternatives", None) or ())
    if alternatives and getattr(django_message, "alternative_subtype", "alternative") != (
        "alternative"
    ):
        raise _refuse("alternative_subtype", "only multipart/alternative can be carried")
    bodies: dict[str, str | None] = {"text": None, "html": None}
    # Django leaves an empty body out of a message that has alternatives.
    if body or not alternatives:
        key = "text" if subtype.lower() == "plain" else "html"
        bodies[key], origins[key] = body, "body"
    for index, alternative in enumerate(alternatives):
        field = f"alternatives[{index}]"
        if not isinstance(alternative, tuple) or len(alternative) != 2:
            raise _refuse(field, "must be a (content, mimetype) pair")
        content, mimetype = alternative
        kind = _text(mimetype, field).strip().lower()
        if kind not in ("text/plain", "text/html"):
            raise _refuse(
                field,
                f"a {kind!r} alternative can't be carried: mailfailover sends one text/plain "
                "and one text/html version",
            )
        key = "text" if kind == "text/plain" else "html"
        if bodies[key] is not None:
            raise _refuse(field, f"a message carries one {kind} version, and this is a second")
        bodies[key], origins[key] = _text(content, field), field
    return bodies


def _utf8_text(content: bytes, charset: str | None, field: str) -> bytes:
    """Text content re-encoded as UTF-8 (mailfailover declares no charset on attachments)."""
    if charset is None or charset.lower() in _UTF8_NAMES:
        return content
    try:
        return content.decode(charset).encode("utf-8")
    except (LookupError, UnicodeError):
        raise _refuse(field, f"the text is not valid {charset}") from None


def _content_bytes(content: Any, mimetype: str, field: str) -> bytes:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content)
    if isinstance(content, (str, Promise)):
        return str(content).encode("utf-8")
    if mimetype == "message/rfc822":
        if isinstance(content, DjangoEmailMessage):
            content = content.message()
        if isinstance(content, email.message.Message):
            return content.as_bytes()
    raise _refuse(field, f"content must be bytes or text, not {type(content).__name__}")


def _tuple_attachment(item: tuple[Any, ...], field: str) -> Attachment:
    if len(item) != 3:
        raise _refuse(field, "must be a (filename, content, mimetype) triple or a MIME part")
    filename, content, mimetype = item
    name = None if filename is None else _header_text(filename, f"{field}.filename")
    if mimetype is None:
        guessed = mimetypes.guess_type(name)[0] if name else None
        kind = guessed or _DEFAULT_MIMETYPE
    else:
        kind = _text(mimetype, f"{field}.mimetype").strip().lower()
    return _attachment(field, name, _content_bytes(content, kind, field), kind)


def _part_attachment(part: email.message.Message, field: str) -> Attachment:
    if part.is_multipart():
        raise _refuse(field, "a multipart attachment can't be carried; attach its parts")
    for name in part:
        if name.lower() not in _PART_HEADERS:
            raise _refuse(field, f"the attachment's {name} header can't be carried")
    for header, allowed in (
        ("content-type", _PART_TYPE_PARAMS),
        ("content-disposition", _PART_DISPOSITION_PARAMS),
    ):
        for param, _ in part.get_params(header=header, failobj=[])[1:]:
            if param.lower() not in allowed:
                raise _refuse(field, f"the {header} parameter {param!r} can't be carried")
    kind = part.get_content_type()
    if kind == "message/rfc822":
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else payload
        content = _content_bytes(inner, kind, field)
    else:
        decoded = part.get_payload(decode=True)
        if not isinstance(decoded, bytes):
            raise _refuse(field, "the attachment has no content")
        content = decoded
        if part.get_content_maintype() == "text":
            content = _utf8_text(content, part.get_content_charset(), field)
    filename = part.get_filename()
    if filename is not None:
        _header_text(filename, f"{field}.filename")
    content_id = part.get("Content-ID")
    if content_id is not None:
        content_id = _header_text(str(content_id), f"{field}.Content-ID")
    disposition = part.get_content_disposition()
    # A part with a Content-ID and no disposition is an inline image, as mail clients read it.
    inline = disposition == "inline" or (disposition is None and content_id is not None)
    return _attachment(field, filename, content, kind, inline=inline, content_id=content_id)


def _attachment(
    field: str, filename: str | None, content: bytes, mimetype: str, **options: Any
) -> Attachment:
    try:
        return Attachment(filename, content, mimetype, **options)
    except InvalidMessage as exc:
        reason = exc.message.split(": ", 1)[-1]
        raise _refuse(f"{field}.{str(exc.field).split('.')[-1]}", reason) from None


def _attachments(django_message: DjangoEmailMessage) -> list[Attachment]:
    attachments = []
    mixed = getattr(django_message, "mixed_subtype", "mixed")
    items = list(django_message.attachments or ())
    if items and mixed not in ("mixed", "related"):
        raise _refuse("mixed_subtype", f"multipart/{mixed} can't be carried")
    for index, item in enumerate(items):
        field = f"attachments[{index}]"
        if isinstance(item, email.message.Message):  # MIMEBase, and Django 6's MIMEPart
            attachments.append(_part_attachment(item, field))
        elif isinstance(item, tuple):  # EmailAttachment is a namedtuple
            attachments.append(_tuple_attachment(item, field))
        else:
            kind = type(item).__name__
            raise _refuse(field, f"must be a (filename, content, mimetype) triple, not {kind}")
    return attachments


def _fields_from_headers(
    django_message: DjangoEmailMessage, fields: dict[str, Any], origins: dict[str, str]
) -> None:
    """Apply ``extra_headers`` the way Django's ``message()`` does, into ``fields``."""
    extra = django_message.extra_headers or {}
    if not isinstance(extra, Mapping):
        raise _refuse("extra_headers", "must be a dict of header names to values")
    headers: dict[str, str] = {}
    for raw_name, raw_value in extra.items():
        name = _header_text(raw_name, "extra_headers")
        field = f"extra_headers.{name}"
        value = (
            str(raw_value)
            if isinstance(raw_value, int) and not isinstance(raw_value, bool)
            else _header_text(raw_value, field)
        )
        lowered = name.lower()
        if lowered in _REFUSED_HEADERS:
            raise _refuse(field, f"can't be set here: {_REFUSED_HEADERS[lowered]}")
        if lowered == "from":
            # The From header is what recipients see; the providers own the envelope sender.
            fields["sender"], origins["sender"] = value, field
        elif lowered == "reply-to":
            fields["reply_to"], origins["reply_to"] = split_addresses(value), field
        elif lowered == "message-id":
            fields["message_id"], origins["message_id"] = value.strip(), field
        elif lowered in _ADDRESS_HEADERS:
            # Django shows this header instead of the list; only the same addresses can go.
            listed = fields[_ADDRESS_HEADERS[lowered]]
            if sorted(_bare(split_addresses(value), field)) != sorted(_bare(listed, field)):
                raise _refuse(
                    field,
                    f"a {name} header that differs from the {lowered} list (shown to the "
                    "recipients but not sent to) can't be carried",
                )
        else:
            headers[name] = value
    fields["headers"] = headers


def to_message(django_message: DjangoEmailMessage) -> Message:
    """The :class:`~mailfailover.Message` for a Django ``EmailMessage`` (or subclass).

    Carries from (``DEFAULT_FROM_EMAIL`` when unset; a ``From`` extra header wins), to, cc,
    bcc, reply_to (a ``Reply-To`` extra header wins), subject, the body and one text/html
    (or text/plain) alternative, extra headers (``Message-ID`` becomes the message id),
    attachments given as tuples, files and MIME parts (a part with a ``Content-ID`` is inline),
    and django-anymail style ``tags`` and ``metadata`` attributes. Lazy translation strings
    become text. Raises :class:`InvalidEmail` (or :class:`HeaderInjection`) for anything it
    cannot carry whole.
    """
    if not isinstance(django_message, DjangoEmailMessage):
        raise _refuse("message", f"must be a Django EmailMessage, not {type(django_message)}")
    for name in _ANYMAIL_ONLY:
        if not _unset(getattr(django_message, name, None)):
            raise _refuse(name, "is a django-anymail option mailfailover has no equivalent for")
    sender = django_message.from_email or settings.DEFAULT_FROM_EMAIL
    fields: dict[str, Any] = {
        "sender": _header_text(sender, "from_email"),
        "to": _addresses(django_message.to, "to"),
        "cc": _addresses(django_message.cc, "cc"),
        "bcc": _addresses(django_message.bcc, "bcc"),
        "reply_to": _addresses(getattr(django_message, "reply_to", None), "reply_to"),
        "subject": _header_text(
            django_message.subject if django_message.subject is not None else "", "subject"
        ),
    }
    origins: dict[str, str] = {}
    _fields_from_headers(django_message, fields, origins)
    fields.update(_bodies(django_message, origins))
    fields["attachments"] = _attachments(django_message)
    tags = getattr(django_message, "tags", None)
    if not _unset(tags):
        items = [tags] if isinstance(tags, (str, Promise)) else tags
        if not isinstance(items, Iterable) or isinstance(items, (bytes, Mapping)):
            raise _refuse("tags", "must be a list of strings")
        fields["tags"] = [_header_text(tag, "tags") for tag in items]
    metadata = getattr(django_message, "metadata", None)
    if not _unset(metadata):
        if not isinstance(metadata, Mapping):
            raise _refuse("metadata", "must be a dict")
        fields["metadata"] = {
            _header_text(key, "metadata"): str(value) if isinstance(value, Promise) else value
            for key, value in metadata.items()
        }
    if not fields["to"]:
        code = MISSING_PARAMETER if not (fields["cc"] or fields["bcc"]) else None
        raise _refuse("to", "mailfailover needs at least one To recipient", code=code)
    try:
        return Message(**fields)
    except InvalidMessage as exc:
        raise _as_django_error(exc, origins) from None


def _as_django_error(exc: InvalidMessage, origins: Mapping[str, str]) -> InvalidEmail:
    field = str(exc.field or "message")
    top, _, rest = field.partition(".")
    top = origins.get(top) or _DJANGO_FIELDS.get(top, top)
    django_field = top + (f".{rest}" if rest else "")
    reason = exc.message.split(": ", 1)[1] if ": " in exc.message else exc.message
    return InvalidEmail(f"{django_field}: {reason}", field=django_field, code=exc.code)
