"""The provider-neutral message: :class:`Message`, :class:`Attachment` and address parsing.

A :class:`Message` is validated when it is built, so an invalid message never reaches a
driver. Anything that ends up in a header (subject, addresses and their display names,
header names and values, tags, metadata, attachment filenames and content ids) may not
contain CR, LF, NUL or another line-breaking character: that is the header-injection guard,
and it holds for every driver because every driver reads these fields from here. No field
may hold a lone surrogate, which no mail can encode.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import email.utils
import functools
import mimetypes
import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from email import _header_value_parser as _hvp
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from typing import Any, ClassVar

import attrs
import idna  # IDNA 2008 + UTS #46; a dependency of requests, so always installed

from .errors import MISSING_PARAMETER, InvalidMessage

__all__ = [
    "RESERVED_HEADERS",
    "Attachment",
    "FrozenDict",
    "Mailbox",
    "Message",
    "parse_mailbox",
    "split_addresses",
]

#: Headers a caller may not set through ``headers``: each is a field of its own, or is
#: written by the MIME builder.
RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "reply-to", "message-id", "date", "mime-version"}
)
_RESERVED_PREFIXES = ("content-",)

# CR, LF and NUL, and every other character str.splitlines() breaks on (VT, FF, FS, GS, RS,
# NEL, U+2028, U+2029): the email package refuses a header value it would split, so letting
# one through would only move the failure from here to every driver's MIME builder.
_FORBIDDEN_CHARS = re.compile("[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# RFC 5322 field name: printable US-ASCII except colon.
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]{1,76}$")
_MIME_PART = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MIMETYPE = re.compile(rf"^{_MIME_PART}/{_MIME_PART}$")
_CONTENT_ID = re.compile(r"^[^\s<>()\[\]\\,;:\"]{1,250}$")
_MESSAGE_ID = re.compile(r"^<[^\s<>@]{1,200}@[^\s<>@]{1,253}>$")
_DOMAIN_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@attrs.frozen
class Mailbox:
    """One parsed address: display name, local part and domain (as given and as ASCII)."""

    name: str
    local: str
    domain: str
    ascii_domain: str

    @property
    def email(self) -> str:
        """The bare address, ``local@domain``, with the domain as given."""
        return f"{self.local}@{self.domain}"

    @property
    def ascii_email(self) -> str:
        """The bare address with the domain in IDNA (punycode) form."""
        return f"{self.local}@{self.ascii_domain}"

    @property
    def needs_smtputf8(self) -> bool:
        """True when the local part is not ASCII: only SMTPUTF8 can carry it."""
        return not self.local.isascii()

    def address(self, *, ascii_domain: bool = True) -> Address:
        """This mailbox as an :class:`email.headerregistry.Address`."""
        domain = self.ascii_domain if ascii_domain else self.domain
        local = _unquote(self.local) if self.local.startswith('"') else self.local
        return Address(display_name=self.name, username=local, domain=domain)

    def header_text(self, *, ascii_domain: bool = True) -> str:
        """``str(self.address(ascii_domain=...))``, without building the ``Address`` when
        there is nothing to quote: no display name and an unquoted local part (a dot-atom,
        which ``Address`` never quotes) give ``local@domain`` as it is."""
        if self.name or self.local.startswith('"'):
            return str(self.address(ascii_domain=ascii_domain))
        return f"{self.local}@{self.ascii_domain if ascii_domain else self.domain}"

    def formatted(self) -> str:
        """``"Name <local@domain>"`` with the name quoted where RFC 5322 needs it."""
        return self.header_text(ascii_domain=False)


def _refuse_controls(value: str, what: str) -> None:
    if _FORBIDDEN_CHARS.search(value):
        raise ValueError(f"{what} may not contain CR, LF, NUL or other line-breaking characters")
    _refuse_surrogates(value, what)


def _refuse_surrogates(value: str, what: str) -> None:
    # isascii() is a flag check and strict UTF-8 encoding fails only on a surrogate: both are
    # far cheaper than a regex scan of a long body.
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text (it holds a lone surrogate)") from None


def _ascii_domain(domain: str) -> str:
    """The domain's ASCII form, by IDNA 2008 with UTS #46 mapping (non-transitional).

    Python's ``idna`` codec is IDNA 2003, which maps ``straße.de`` to ``strasse.de``: a
    different domain, owned by somebody else. IDNA 2008 keeps the ß (``xn--strae-oqa.de``)
    and refuses what it disallows (symbols such as ``☃``). An ASCII domain is kept as
    written; its ``xn--`` labels must be valid A-labels.
    """
    if domain.isascii():
        ascii_domain = domain
        for label in domain.split("."):
            if label[:4].lower() == "xn--":
                try:
                    idna.decode(label)
                except (idna.IDNAError, UnicodeError) as exc:
                    raise ValueError(f"domain {domain!r} has an invalid IDNA label") from exc
    else:
        try:
            ascii_domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise ValueError(
                f"domain {domain!r} is not a valid internationalised domain (IDNA 2008)"
            ) from exc
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise ValueError(f"domain {domain!r} is not a valid domain name")
    if len(labels) < 2 and ascii_domain.lower() != "localhost":
        raise ValueError(f"domain {domain!r} has no top-level domain")
    return ascii_domain


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = re.compile(rf"^{_ATEXT}+(?:\.{_ATEXT}+)*$")
_QUOTED_LOCAL = re.compile(r'^"(?:[^"\\]|\\.)*"$')
_NAME_SPECIALS = re.compile(r'[<>@,;:"\[\]\\]')


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _parse_display_name(text: str) -> str:
    if not text:
        return ""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        if not _QUOTED_LOCAL.match(text):
            raise ValueError("the display name has an unbalanced quote")
        return _unquote(text)
    if _NAME_SPECIALS.search(text):
        raise ValueError("a display name with , ; : @ < > or quotes must be in double quotes")
    return " ".join(text.split())


@functools.lru_cache(maxsize=8192)
def parse_mailbox(value: str) -> Mailbox:
    """Parse one mailbox (``"a@b.com"`` or ``"Ann <a@b.com>"``); raise ``ValueError`` if invalid.

    Internationalised domains are accepted and also returned in IDNA form; a non-ASCII
    local part is accepted (it needs an SMTPUTF8-capable transport). Groups, lists,
    comments, domain literals and source routes are refused.
    """
    if not isinstance(value, str):
        raise ValueError(f"an address must be a string, not {type(value).__name__}")
    _refuse_controls(value, "an address")
    text = value.strip()
    if not text:
        raise ValueError("an address may not be empty")
    if len(text) > 998:
        raise ValueError("an address may not be longer than 998 characters")
    name = ""
    if text.endswith(">"):
        opening = text.rfind("<")
        if opening < 0:
            raise ValueError(f"{value!r} has a '>' without a '<'")
        name = _parse_display_name(text[:opening].strip())
        addr_spec = text[opening + 1 : -1].strip()
    else:
        addr_spec = text
    local, at, domain = addr_spec.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{value!r} is not a valid email address")
    if _QUOTED_LOCAL.match(local):
        if len(local) == 2:
            raise ValueError(f"{value!r} has an empty local part")
    elif not _DOT_ATOM.match(local):
        raise ValueError(f"{value!r} is not a valid email address")
    if len(local.encode("utf-8")) > 64:
        raise ValueError(f"the local part of {value!r} is longer than 64 bytes")
    return Mailbox(
        name=name,
        local=local,
        domain=domain,
        ascii_domain=_ascii_domain(domain),
    )


def split_addresses(value: str) -> list[str]:
    """Split a comma-separated address list, respecting quotes and angle brackets.

    ``'"Doe, John" <j@x.com>, b@y.com'`` gives two addresses; empty items are dropped.
    """
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    depth = 0
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            depth += 1
        elif not quoted and char == ">":
            depth = max(depth - 1, 0)
        elif char == "," and not quoted and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


class FrozenDict(dict[str, str]):
    """A ``dict`` that cannot be changed, and so can be hashed: ``Message.headers`` and
    ``Message.metadata``.

    A frozen message whose headers could still be changed in place would let a header
    value skip the validation (the header-injection guard) that ran when it was built, and
    could not be hashed. It is still a ``dict``: JSON encoding, ``dict(...)``, ``==`` with a
    plain dict and ``isinstance(x, dict)`` work as before.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a message's headers and metadata cannot be changed; use replace()")

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy rebuild a dict subclass item by item, which __setitem__ refuses.
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: Any) -> FrozenDict:
        return self


#: The empty headers and metadata every message without them shares (it cannot change).
_EMPTY = FrozenDict()
#: Sequences taken as lists of addresses without asking the ABCs (the common case).
_PLAIN_SEQUENCES = (tuple, list)


def _invalid(field: str, reason: str) -> InvalidMessage:
    return InvalidMessage(f"{field}: {reason}", field=field)


def _too_many(field: str, count: int, limit: int) -> InvalidMessage:
    return _invalid(
        field,
        f"{count:,} recipients; a message takes at most {limit:,} "
        "(Message.max_recipients, for to, cc and bcc together)",
    )


def _addresses(field: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: Any = (value,)
    elif type(value) in _PLAIN_SEQUENCES:  # what messages carry: no ABC checks for them
        items = value
    elif isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise _invalid(field, "must be a string or a list of strings")
    else:
        items = value
    if field != "reply_to":
        # Counted before any address is parsed: a huge list is refused at once.
        items = list(items)
        if len(items) > Message.max_recipients:
            raise _too_many(field, len(items), Message.max_recipients)
    result = []
    for item in items:
        if not isinstance(item, str):  # parse_mailbox is cached: a list would not even hash
            raise _invalid(field, f"must hold strings, not {type(item).__name__}")
        try:
            parse_mailbox(item)
        except ValueError as exc:
            raise _invalid(field, str(exc)) from None
        result.append(item.strip())
    return tuple(result)


def _header_text(field: str, value: Any, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string, not {type(value).__name__}")
    try:
        _refuse_controls(value, "the value")
    except ValueError as exc:
        raise _invalid(field, str(exc)) from None
    if not allow_empty and not value.strip():
        raise _invalid(field, "may not be empty")
    return value


def _body(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(field, f"must be a string, not {type(value).__name__}")
    try:
        _refuse_surrogates(value, "the body")
    except ValueError as exc:
        raise _invalid(field, str(exc)) from None
    return value


def _convert_headers(value: Any) -> FrozenDict:
    if value is None or (type(value) is FrozenDict and not value):
        return _EMPTY  # the default: nothing to check
    if not isinstance(value, Mapping):
        raise _invalid("headers", "must be a mapping of header names to values")
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for name, header_value in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise _invalid("headers", f"{name!r} is not a valid header name")
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES):
            raise _invalid("headers", f"{name!r} is set by mailfailover and may not be given here")
        if lowered in seen:
            raise _invalid("headers", f"{name!r} is given twice")
        seen.add(lowered)
        headers[name] = _header_text(f"headers.{name}", header_value)
    return FrozenDict(headers)


def _convert_tags(value: Any) -> tuple[str, ...]:
    if value is None or (type(value) is tuple and not value):
        return ()
    items = (value,) if isinstance(value, str) else value
    if isinstance(items, (bytes, Mapping)) or not isinstance(items, Iterable):
        raise _invalid("tags", "must be a list of strings")
    return tuple(_header_text("tags", tag, allow_empty=False) for tag in items)


def _convert_metadata(value: Any) -> FrozenDict:
    if value is None or (type(value) is FrozenDict and not value):
        return _EMPTY
    if not isinstance(value, Mapping):
        raise _invalid("metadata", "must be a mapping of strings to strings")
    metadata: dict[str, str] = {}
    for key, item in value.items():
        key = _header_text("metadata", key, allow_empty=False)
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise _invalid(f"metadata.{key}", "values must be strings or numbers")
        metadata[key] = _header_text(f"metadata.{key}", str(item))
    return FrozenDict(metadata)


def _convert_attachments(value: Any) -> tuple[Attachment, ...]:
    if value is None or (type(value) is tuple and not value):
        return ()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise _invalid("attachments", "must be a list of Attachment objects")
    items = tuple(value)
    for item in items:
        if not isinstance(item, Attachment):
            kind = type(item).__name__
            raise _invalid("attachments", f"must hold Attachment objects, not {kind}")
    return items


def _convert_content(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise _invalid("attachments.content", f"must be bytes, not {type(value).__name__}")


def _guess_mimetype(filename: str | None) -> str:
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        if guessed:
            return guessed
    return "application/octet-stream"


def _short(value: str | None) -> str:
    return "None" if value is None else f"<{len(value)} characters>"


def _to(value: Any) -> tuple[str, ...]:
    return _addresses("to", value)


def _cc(value: Any) -> tuple[str, ...]:
    return _addresses("cc", value)


def _bcc(value: Any) -> tuple[str, ...]:
    return _addresses("bcc", value)


def _reply_to(value: Any) -> tuple[str, ...]:
    return _addresses("reply_to", value)


def _text(value: Any) -> str | None:
    return _body("text", value)


def _html(value: Any) -> str | None:
    return _body("html", value)


@attrs.frozen
class Attachment:
    """A file carried by a message; ``inline`` parts are referenced from HTML as ``cid:``.

    ``mimetype`` defaults to a guess from ``filename``, else ``application/octet-stream``.
    An inline attachment without a ``content_id`` uses its filename as the content id.
    """

    filename: str | None
    content: bytes = attrs.field(converter=_convert_content, repr=lambda v: f"<{len(v)} bytes>")
    mimetype: str | None = None
    inline: bool = False
    content_id: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.filename is not None:
            _header_text("attachments.filename", self.filename, allow_empty=False)
            if len(self.filename) > 255:
                raise _invalid("attachments.filename", "may not be longer than 255 characters")
        mimetype = self.mimetype if self.mimetype is not None else _guess_mimetype(self.filename)
        if not isinstance(mimetype, str) or not _MIMETYPE.match(mimetype):
            raise _invalid("attachments.mimetype", f"{mimetype!r} is not a MIME type")
        object.__setattr__(self, "mimetype", mimetype.lower())
        if not isinstance(self.inline, bool):
            raise _invalid("attachments.inline", "must be true or false")
        content_id = self.content_id
        if content_id is None and self.inline:
            content_id = self.filename
            if content_id is None:
                raise _invalid("attachments.content_id", "an inline attachment needs a content id")
        if content_id is not None:
            if not isinstance(content_id, str):
                raise _invalid("attachments.content_id", "must be a string")
            content_id = content_id.strip().removeprefix("<").removesuffix(">")
            if not _CONTENT_ID.match(content_id):
                raise _invalid("attachments.content_id", f"{content_id!r} is not a content id")
        object.__setattr__(self, "content_id", content_id)

    @property
    def maintype(self) -> str:
        return str(self.mimetype).split("/", 1)[0]

    @property
    def subtype(self) -> str:
        return str(self.mimetype).split("/", 1)[1]

    def filename_or(self, stem: str = "attachment", *, extension: bool = True) -> str:
        """The filename, or for providers that require one, ``stem`` plus an extension
        guessed from the MIME type (``.bin`` when there is no better guess)."""
        if self.filename:
            return self.filename
        if not extension:
            return stem
        return stem + (mimetypes.guess_extension(str(self.mimetype)) or ".bin")

    @property
    def content_b64(self) -> str:
        """The content base64-encoded, as JSON APIs want it."""
        return base64.b64encode(self.content).decode("ascii")


def _address_list(value: str) -> _hvp.AddressList:
    """The email package's parse tree of an address list, built in linear time.

    ``get_address_list`` re-scans the rest of the header for every address (1,000
    recipients took 0.07 s, 8,000 took 2.9 s). Here each address is parsed on its own and
    the tree assembled as ``get_address_list`` would build it; when that tree does not give
    back the header's exact text (or the package's internals are not what this expects)
    the stdlib parser is used: a Python release can cost time, never a wrong header.
    """
    items = split_addresses(value)
    if len(items) > 1:
        try:
            address_list = _hvp.AddressList()
            for index, item in enumerate(items):
                if index:
                    address_list.append(_hvp.ValueTerminal(",", "list-separator"))
                token, rest = _hvp.get_address(item if index == 0 else " " + item)
                if rest:
                    break
                address_list.append(token)
            else:
                if str(address_list) == value:
                    return address_list
        except Exception:  # noqa: S110 - any surprise means: use the stdlib's parser
            pass
    return _hvp.get_address_list(value)[0]


_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, keeping the class it builds for each header name.

    ``HeaderRegistry.__getitem__`` builds a new class with ``type()`` for every header
    object the email package makes, and :meth:`Message.to_mime` makes dozens (each part's
    Content-* headers, each read, each fold): that was a third of its time. Address
    headers parse their value with :func:`_address_list`, in linear time.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = super().__getitem__(name)
            if key in _ADDRESS_HEADERS:
                cls = type(cls.__name__, (cls,), {"value_parser": staticmethod(_address_list)})
            self._classes[key] = cls
        return cls


_HEADER_CLASSES = _HeaderClasses()
_STANDARD_HEADERS = HeaderRegistry().registry


def _with_header_cache(policy: Policy) -> Policy:
    """``policy`` using :class:`_HeaderClasses`, when it uses an unmodified standard registry
    (a caller's own registry is left alone)."""
    if not isinstance(policy, EmailPolicy):
        return policy
    factory = policy.header_factory
    if (
        type(factory) is not HeaderRegistry
        or factory.registry != _STANDARD_HEADERS
        or factory.base_class is not BaseHeader
        or factory.default_class is not UnstructuredHeader
    ):
        return policy
    return policy.clone(header_factory=_HEADER_CLASSES)


def _message_id_for(sender: Any) -> str:
    try:
        domain = parse_mailbox(sender).ascii_domain
    except (ValueError, TypeError):
        domain = "mailfailover.invalid"  # the sender check will refuse the message anyway
    return f"<{_uuid4_hex()}@{domain}>"


def _uuid4_hex() -> str:
    """``uuid.uuid4().hex`` without the ``UUID`` object: 16 random bytes with the version
    (4) and variant (RFC 4122) bits set exactly as ``uuid.UUID(version=4)`` sets them."""
    number = int.from_bytes(os.urandom(16), "big")
    number = (number & ~(0xC000 << 48)) | (0x8000 << 48)
    number = (number & ~(0xF000 << 64)) | (4 << 76)
    return f"{number:032x}"


def _default_message_id(message: Message) -> str:
    return _message_id_for(message.sender)


@attrs.frozen(eq=True)
class Message:
    """One email, independent of any provider.

    Construction validates every field and raises :class:`InvalidMessage` naming the
    first bad one (code 1 when a required field is missing, 2 when one is invalid).

    ``to``, ``cc`` and ``bcc`` together may hold at most :attr:`max_recipients` addresses
    (1,000 by default; set ``Message.max_recipients`` to change it for the process).
    """

    #: The most recipients (to + cc + bcc, before de-duplication) one message may have. The
    #: largest per-message limit among the bundled HTTP providers is 1,000 (SendGrid,
    #: Mailgun); SES and Postmark take 50, and their drivers skip larger messages. Above
    #: this a message is not a message but a mailing list, and building its headers costs
    #: real time. Set on the class, it applies to every message made afterwards.
    max_recipients: ClassVar[int] = 1000

    sender: str = attrs.field()
    to: tuple[str, ...] = attrs.field(converter=_to)
    subject: str = attrs.field()
    text: str | None = attrs.field(default=None, converter=_text, repr=_short)
    html: str | None = attrs.field(default=None, converter=_html, repr=_short, kw_only=True)
    cc: tuple[str, ...] = attrs.field(default=(), converter=_cc, kw_only=True)
    bcc: tuple[str, ...] = attrs.field(default=(), converter=_bcc, kw_only=True)
    reply_to: tuple[str, ...] = attrs.field(default=(), converter=_reply_to, kw_only=True)
    headers: FrozenDict = attrs.field(factory=FrozenDict, converter=_convert_headers, kw_only=True)
    attachments: tuple[Attachment, ...] = attrs.field(
        default=(), converter=_convert_attachments, kw_only=True
    )
    tags: tuple[str, ...] = attrs.field(default=(), converter=_convert_tags, kw_only=True)
    metadata: FrozenDict = attrs.field(
        factory=FrozenDict, converter=_convert_metadata, kw_only=True
    )
    message_id: str = attrs.field(
        default=attrs.Factory(_default_message_id, takes_self=True), kw_only=True
    )

    def __attrs_post_init__(self) -> None:
        if self.sender is None or self.sender == "":
            raise InvalidMessage("sender: is required", field="sender", code=MISSING_PARAMETER)
        if not isinstance(self.sender, str):
            raise _invalid("sender", "must be a string")
        try:
            parse_mailbox(self.sender)
        except ValueError as exc:
            raise _invalid("sender", str(exc)) from None
        object.__setattr__(self, "sender", self.sender.strip())
        if not self.to:
            raise InvalidMessage("to: at least one recipient is required", field="to", code=1)
        total = len(self.to) + len(self.cc) + len(self.bcc)
        if total > Message.max_recipients:
            field = "cc" if len(self.to) + len(self.cc) > Message.max_recipients else "bcc"
            raise _too_many(field, total, Message.max_recipients)
        if self.subject is None:
            raise InvalidMessage("subject: is required", field="subject", code=MISSING_PARAMETER)
        _header_text("subject", self.subject)
        if self.text is None and self.html is None:
            raise InvalidMessage(
                "text: a text or an html body is required", field="text", code=MISSING_PARAMETER
            )
        if not isinstance(self.message_id, str) or not _MESSAGE_ID.match(self.message_id):
            raise _invalid("message_id", "must look like <unique@domain>")
        if not self.message_id.isascii():
            raise _invalid("message_id", "must be ASCII")

    # -- views drivers use ------------------------------------------------------------

    @property
    def sender_mailbox(self) -> Mailbox:
        return parse_mailbox(self.sender)

    def mailboxes(self, field: str) -> tuple[Mailbox, ...]:
        """The parsed addresses of ``to``, ``cc``, ``bcc`` or ``reply_to``."""
        return tuple(parse_mailbox(value) for value in getattr(self, field))

    def recipients(self) -> tuple[str, ...]:
        """Every envelope recipient (to + cc + bcc) as a bare address, de-duplicated, in order."""
        seen: set[str] = set()
        result = []
        for field in ("to", "cc", "bcc"):
            for mailbox in self.mailboxes(field):
                key = f"{mailbox.local}@{mailbox.ascii_domain.lower()}"
                if key not in seen:
                    seen.add(key)
                    result.append(mailbox.email)
        return tuple(result)

    @property
    def needs_smtputf8(self) -> bool:
        """True when an address has a non-ASCII local part."""
        fields = ("to", "cc", "bcc", "reply_to")
        return self.sender_mailbox.needs_smtputf8 or any(
            mailbox.needs_smtputf8 for field in fields for mailbox in self.mailboxes(field)
        )

    def replace(self, **changes: Any) -> Message:
        """A copy with some fields changed, and a new ``message_id`` unless one is given.

        A copy is a different message: a per-recipient copy that kept the id would share
        the original's Message-ID (recipients' clients would merge them) and the idempotency
        key a provider derives from it (the provider would drop it as a duplicate). Pass
        ``message_id=message.message_id`` to keep the id, for a retry of the same message.
        """
        if "message_id" not in changes:
            sender = changes.get("sender", self.sender)
            changes["message_id"] = _message_id_for(sender)
        return attrs.evolve(self, **changes)

    # -- MIME -------------------------------------------------------------------------

    def to_mime(self, *, policy: Policy | None = None) -> EmailMessage:
        """Build the message as MIME: the one builder SMTP, SES and the file outbox share.

        text + html become ``multipart/alternative``; inline attachments are ``related`` to
        the HTML part; other attachments make it ``multipart/mixed``. Bcc never appears in
        the headers (it belongs to the envelope). Non-ASCII subjects, names and filenames
        are encoded (RFC 2047 / RFC 2231); a non-ASCII local part selects the SMTPUTF8
        policy unless ``policy`` is given.
        """
        if policy is None:
            policy = email.policy.SMTPUTF8 if self.needs_smtputf8 else email.policy.SMTP
        ascii_domains = not getattr(policy, "utf8", False)
        mime = EmailMessage(policy=_with_header_cache(policy))
        mime["From"] = self.sender_mailbox.address(ascii_domain=ascii_domains)
        for field, header in (("to", "To"), ("cc", "Cc"), ("reply_to", "Reply-To")):
            mailboxes = self.mailboxes(field)
            if mailboxes:
                mime[header] = [mb.address(ascii_domain=ascii_domains) for mb in mailboxes]
        mime["Subject"] = self.subject
        mime["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
        mime["Message-ID"] = self.message_id
        for name, value in self.headers.items():
            mime[name] = value

        if self.text is not None:
            mime.set_content(self.text)
            if self.html is not None:
                mime.add_alternative(self.html, subtype="html")
        else:
            mime.set_content(str(self.html), subtype="html")

        html_part = mime.get_body(preferencelist=("html",)) if self.html is not None else None
        for attachment in self.attachments:
            if attachment.inline and html_part is not None:
                html_part.add_related(
                    attachment.content,
                    maintype=attachment.maintype,
                    subtype=attachment.subtype,
                    cid=f"<{attachment.content_id}>",
                    filename=attachment.filename,
                    disposition="inline",
                )
        for attachment in self.attachments:
            if attachment.inline and html_part is not None:
                continue
            mime.add_attachment(
                attachment.content,
                maintype=attachment.maintype,
                subtype=attachment.subtype,
                filename=attachment.filename,
                disposition="inline" if attachment.inline else "attachment",
                cid=f"<{attachment.content_id}>" if attachment.content_id else None,
            )
        for part in mime.walk():
            if part is not mime:
                del part["MIME-Version"]  # the stdlib adds it to every part; once is right
        return mime

    # -- JSON-safe form -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (attachments base64) that :meth:`from_dict` turns back exactly."""
        return {
            "sender": self.sender,
            "to": list(self.to),
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "reply_to": list(self.reply_to),
            "headers": dict(self.headers),
            "attachments": [
                {
                    "filename": a.filename,
                    "content": a.content_b64,
                    "mimetype": a.mimetype,
                    "inline": a.inline,
                    "content_id": a.content_id,
                }
                for a in self.attachments
            ],
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "message_id": self.message_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from :meth:`to_dict`'s shape; unknown keys are refused."""
        if not isinstance(data, Mapping):
            raise InvalidMessage("a message must be a JSON object", field=None)
        unknown = sorted(set(data) - _DICT_KEYS)
        if unknown:
            raise _invalid(str(unknown[0]), "is not a message field")
        for required in ("sender", "to", "subject"):
            value = data.get(required)
            # An empty subject given explicitly is a subject, as in the constructor.
            if value is None or (required != "subject" and value in ("", [])):
                raise InvalidMessage(f"{required}: is required", field=required, code=1)
        attachments = data.get("attachments") or []
        if not isinstance(attachments, list):
            raise _invalid("attachments", "must be a list")
        kwargs = {key: data[key] for key in _DICT_KEYS - {"attachments"} if key in data}
        return cls(**kwargs, attachments=[_attachment_from_dict(a) for a in attachments])


_DICT_KEYS = frozenset(
    {
        "sender", "to", "subject", "text", "html", "cc", "bcc", "reply_to",
        "headers", "attachments", "tags", "metadata", "message_id",
    }
)  # fmt: skip
_ATTACHMENT_KEYS = frozenset({"filename", "content", "mimetype", "inline", "content_id"})


def _attachment_from_dict(data: Any) -> Attachment:
    if not isinstance(data, Mapping):
        raise _invalid("attachments", "each attachment must be an object")
    unknown = sorted(set(data) - _ATTACHMENT_KEYS)
    if unknown:
        raise _invalid(f"attachments.{unknown[0]}", "is not an attachment field")
    content = data.get("content")
    if not isinstance(content, str):
        raise InvalidMessage(
            "attachments.content: is required", field="attachments.content", code=1
        )
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("attachments.content", "is not valid base64") from None
    return Attachment(
        filename=data.get("filename"),
        content=raw,
        mimetype=data.get("mimetype"),
        inline=data.get("inline", False),
        content_id=data.get("content_id"),
    )
