"""The driver API: :class:`Driver`, its declared :class:`Setting` s, and :class:`Receipt`.

A driver turns a :class:`~mailfailover.message.Message` into one provider's request. It has
exactly two outcomes: it returns a :class:`Receipt`, or it raises one of
:class:`~mailfailover.errors.ProviderUnavailable` (fail over),
:class:`~mailfailover.errors.MessageRejected` (stop) or
:class:`~mailfailover.errors.UnsupportedFeature` (skip me, raised before any network call).

Settings are declared, not parsed by hand: a driver lists them in ``settings_spec`` and the
base class refuses unknown ones, fills defaults, converts the strings that ``${ENV}``
interpolation produces to the declared type, and keeps ``secret`` ones out of ``repr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import importlib
import json
import math
import re
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import attrs

from .errors import ConfigError, MissingDependency, UnsupportedFeature, WebhookError
from .message import Message

if TYPE_CHECKING:
    from .events import DeliveryEvent
    from .webhooks import ReplayGuard, Webhooks

__all__ = [
    "ACCOUNT_PROBLEM",
    "METADATA_HEADER",
    "TAGS_HEADER",
    "Driver",
    "FromEnvironment",
    "Receipt",
    "Setting",
    "check_tags_and_metadata",
    "content_digest",
    "is_account_problem",
    "remaining_time",
    "require",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class FromEnvironment(str):
    """A configuration string that ``${VAR}`` interpolation produced (wholly or in part).

    The configuration loader marks such values so that no error text shows them: a
    variable meant for ``password`` put in ``port`` by mistake must not print the
    password. It is a ``str`` in every other way.
    """

    __slots__ = ()


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def redact_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it replaced by ``***@``."""
    return _USERINFO.sub(r"\1***@", text)


def shown_value(value: Any, *, secret: bool = False) -> str:
    """How error text and ``repr`` may show a setting's value: never a secret, never a
    value from the environment, never a URL's userinfo."""
    if secret:
        return "the given value"
    if isinstance(value, FromEnvironment):
        return "the value from the environment"
    return redact_userinfo(repr(value))


@attrs.frozen
class Setting:
    """One setting a driver accepts: its type, default, whether it is secret, allowed values.

    Numbers must be finite (``.inf`` and ``.nan`` are refused), ``int`` ones whole, and
    within ``minimum`` / ``maximum`` when the driver declares them (never negative).
    """

    default: Any = REQUIRED
    type: type = str
    secret: bool = False
    choices: tuple[Any, ...] | None = None
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    #: For a ``list`` setting given one string: split it at whitespace into several items
    #: (True), or take it as one item (False: items that contain spaces themselves).
    split: bool = True

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def convert(self, key: str, value: Any) -> Any:
        """Check ``value``, converting strings from ``${ENV}``; error text never shows secrets,
        values that came from the environment, or a URL's userinfo."""
        shown = shown_value(value, secret=self.secret)
        if value is None and not self.required and self.default is None:
            return None
        if self.type is bool:
            if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
                value = _BOOLEANS[value.strip().lower()]
            if not isinstance(value, bool):
                raise ConfigError(f"setting {key!r}: {shown} is not true or false")
        elif self.type in (int, float):
            value = self._number(key, value, shown)
        elif self.type is list:
            value = _string_list(key, value, shown, split=self.split)
        elif not isinstance(value, self.type):
            raise ConfigError(f"setting {key!r}: {shown} is not a {self.type.__name__}")
        if self.secret and isinstance(value, str):
            _check_secret(key, value)
        elif self.secret and isinstance(value, tuple):
            for item in value:
                _check_secret(key, item)
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ConfigError(f"setting {key!r}: {shown} is not one of {allowed}")
        if isinstance(value, FromEnvironment):
            value = str(value)  # the mark is for error text; drivers get a plain str
        return value

    def _number(self, key: str, value: Any, shown: str) -> Any:
        if isinstance(value, str):
            try:
                value = float(value.strip()) if self.type is float else int(value.strip())
            except ValueError:
                raise ConfigError(f"setting {key!r}: {shown} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting {key!r}: {shown} is not a number")
        if not math.isfinite(value):
            raise ConfigError(f"setting {key!r}: must be a finite number")
        if self.type is int and value != int(value):
            raise ConfigError(f"setting {key!r}: must be a whole number")
        value = self.type(value)
        if value < 0:
            raise ConfigError(f"setting {key!r}: may not be negative")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"setting {key!r}: must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"setting {key!r}: must be at most {self.maximum:g}")
        return value


#: The longest wait any driver setting accepts: an hour. Anything longer is a typo, and an
#: absurd value (``1e300``) would only fail later, inside the socket layer, at send time.
MAX_TIMEOUT = 3600.0
#: Connections a driver may keep open: more is a typo, not a plan.
MAX_POOL_SIZE = 1000


def timeout_setting(default: float, help: str) -> Setting:
    """A ``timeout``-like setting: seconds, more than 0, at most :data:`MAX_TIMEOUT`."""
    return Setting(default, float, help=help, minimum=0.001, maximum=MAX_TIMEOUT)


def pool_size_setting(default: int, help: str, *, minimum: int = 0) -> Setting:
    """A connection-pool size: a whole number from ``minimum`` to :data:`MAX_POOL_SIZE`."""
    return Setting(default, int, help=help, minimum=minimum, maximum=MAX_POOL_SIZE)


def _check_secret(key: str, value: str) -> None:
    """Refuse a secret that cannot be what the provider issued, without showing it.

    A key read from a CRLF ``.env`` file ends in ``\\r``; sent in a header it makes the HTTP
    library raise an error whose text holds the header, key included, on every send.
    """
    if value != value.strip():
        raise ConfigError(
            f"setting {key!r}: the value starts or ends with whitespace (a line end copied "
            "from a file?); remove it"
        )
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in value):
        raise ConfigError(f"setting {key!r}: the value contains a control character; remove it")


def _string_list(key: str, value: Any, shown: str, *, split: bool = True) -> tuple[str, ...]:
    """A ``list`` setting: a list of strings, or one string of whitespace-separated items
    (one item when ``split`` is False).

    Several values are how secrets rotate: a webhook signed with any of them is accepted.
    """
    if isinstance(value, str):
        items: Any = value.split() if split else [value]
    else:
        items = value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"setting {key!r}: {shown} is not a string or a list of strings")
    return tuple(item.strip() for item in items if item.strip())


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}  # fmt: skip


@attrs.frozen
class Receipt:
    """What a driver returns when the provider accepted the message.

    ``message_id`` is the provider's own id (``None`` when it gives none); ``response`` is
    the provider's parsed answer, never containing credentials; ``refused_recipients``
    lists recipients the provider refused while accepting the others.
    """

    driver: str
    message_id: str | None
    response: Mapping[str, Any] | None = None
    refused_recipients: tuple[str, ...] = ()


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "mailfailover_deadline", default=None
)


def remaining_time() -> float | None:
    """Seconds left of the current ``FailoverMailer.send`` deadline, or ``None`` without one.

    Drivers shorten their own timeouts to this so one slow provider cannot eat the budget.
    """
    deadline = _deadline.get()
    return None if deadline is None else max(deadline - time.monotonic(), 0.001)


@contextlib.contextmanager
def deadline_scope(seconds: float | None) -> Iterator[None]:
    """Set the deadline :func:`remaining_time` reports for the code inside."""
    token = _deadline.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


#: The shared rule for *account problems* (docs/errors.md#account-problems): a provider's
#: refusal whose reason says that this account, not the message, cannot send it: the
#: sender or its domain is not verified or not authorised for the account, the account is
#: suspended, disabled, paused or under review, it has no credits or its plan does not
#: allow it, or it is a sandbox or trial that may only send to its own addresses. Another
#: provider may well deliver the message, so every driver reports these as
#: ``ProviderUnavailable(reason="account")`` (failed over, logged at ERROR), never as
#: ``MessageRejected``. Drivers apply it to the text of a refusal that would otherwise be
#: a rejection or an ``auth`` failure, on top of their own codes that say the same.
ACCOUNT_PROBLEM = re.compile(
    r"not (?:yet )?(?:been )?verified|unverified|not (?:yet )?validated|validate your sender"
    r"|verified sender|sender identity|sender signature|business verification"
    r"|not (?:allowed|authori[sz]ed|permitted) to send|authority to send|not owned by|may not send"
    r"|suspended|deactivated|account (?:is )?(?:disabled|paused|blocked|inactive)"
    r"|(?:sending|domain) (?:is )?(?:disabled|paused)|under (?:review|validation)"
    r"|credits?\b|billing|payment required|upgrade (?:your|the|to)"
    r"|\bsandbox\b|authori[sz]ed recipients|(?:only|can only) send (?:testing )?e?-?mails? to",
    re.IGNORECASE,
)


#: Headers that carry tags and metadata where a provider has no fields for them (SMTP, the
#: file outbox; SES for metadata): a JSON array of the tags, a JSON object of the metadata
#: (keys sorted), both ASCII (``\\u`` escapes), so any mail reader or script can read them.
TAGS_HEADER = "X-Tags"
METADATA_HEADER = "X-Metadata"


def tracking_headers(message: Message, *, tags: bool = True) -> dict[str, str]:
    """The :data:`TAGS_HEADER` and :data:`METADATA_HEADER` values for ``message`` (only those
    it needs; ``tags=False`` when the provider carries tags in fields of its own)."""
    headers: dict[str, str] = {}
    if tags and message.tags:
        headers[TAGS_HEADER] = json.dumps(list(message.tags))
    if message.metadata:
        headers[METADATA_HEADER] = json.dumps(dict(message.metadata), sort_keys=True)
    return headers


def check_tags_and_metadata(driver: Driver, message: Message) -> None:
    """For a driver with a ``tags_and_metadata`` setting (``headers`` or ``refuse``): refuse
    the message's tags and metadata when so configured, else check the headers that will
    carry them are free. Never a silent drop: before any I/O, :class:`UnsupportedFeature`."""
    if not (message.tags or message.metadata):
        return
    if driver.settings.get("tags_and_metadata") == "refuse":
        field = "tags" if message.tags else "metadata"
        driver.unsupported(
            "this driver is set to refuse tags and metadata (tags_and_metadata: refuse)",
            field=field,
        )
    driver.check_tracking_headers(message)


def is_account_problem(reason: str) -> bool:
    """Whether a provider's refusal ``reason`` is an account problem (:data:`ACCOUNT_PROBLEM`)."""
    return ACCOUNT_PROBLEM.search(reason) is not None


def require(module: str, extra: str, *, driver: str | None = None) -> ModuleType:
    """Import an optional dependency or raise :class:`MissingDependency` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(module.split(".")[0], extra, driver=driver) from None


class Driver:
    """Base class of every driver, bundled or third-party.

    Subclasses declare ``settings_spec`` and implement :meth:`send`; they may declare the
    provider's limits (``max_recipients``, ``max_tags``, ``supports_inline``,
    ``max_message_bytes``, ``max_metadata_bytes``…) so that :meth:`check_limits` refuses
    what the provider cannot carry before anything is sent.
    """

    settings_spec: ClassVar[Mapping[str, Setting]] = {}
    max_recipients: ClassVar[int | None] = None
    max_tags: ClassVar[int | None] = None
    supports_inline: ClassVar[bool] = True
    supports_metadata: ClassVar[bool] = True
    max_message_bytes: ClassVar[int | None] = None
    #: The most bytes the provider takes for the metadata, measured as compact UTF-8 JSON
    #: (the object it travels as); ``None``: no limit of its own.
    max_metadata_bytes: ClassVar[int | None] = None
    #: Tags the provider takes: a regular expression each tag must match whole, and the
    #: rule in words for the error (e.g. ``r"[A-Za-z0-9_-]{1,256}"``, "ASCII letters...").
    tag_pattern: ClassVar[str | None] = None
    tag_rule: ClassVar[str] = ""
    #: Header names (lower case) the provider refuses, and refused name prefixes.
    forbidden_headers: ClassVar[frozenset[str]] = frozenset()
    forbidden_header_prefixes: ClassVar[tuple[str, ...]] = ()
    #: How many Reply-To addresses the provider takes (``None``: any number).
    max_reply_to: ClassVar[int | None] = None
    #: Optional dependencies as ``(module, extra)``: a missing one makes building the
    #: driver raise :class:`MissingDependency` naming ``pip install "mailfailover[extra]"``.
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: The same for :meth:`asend`'s native transport: checked when an
    #: :class:`~mailfailover.aio.AsyncFailoverMailer` is built with this driver, so a
    #: missing one is a setup error then, not a failure of every send later.
    async_requires: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: The provider's tracking webhooks (:mod:`mailfailover.webhooks`); their settings are
    #: added to ``settings_spec`` by ``__init_subclass__``. ``None``: no webhooks.
    webhooks: ClassVar[Webhooks | None] = None

    name: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("webhooks")
        if spec is not None:
            cls.settings_spec = {**cls.settings_spec, **spec.settings}

    def __init__(self, *, name: str, **settings: Any) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a driver needs a non-empty name")
        self.name = name
        self.settings: dict[str, Any] = self.validate_settings(settings, driver=name)
        if self.webhooks is not None and self.webhooks.check is not None:
            self.webhooks.check(self.settings, name)

    @classmethod
    def validate_settings(cls, settings: Mapping[str, Any], *, driver: str) -> dict[str, Any]:
        """Refuse unknown or missing settings, apply defaults, convert types."""
        unknown = sorted(set(settings) - set(cls.settings_spec))
        if unknown:
            known = ", ".join(sorted(cls.settings_spec)) or "none"
            raise ConfigError(
                f"unknown setting {unknown[0]!r} (this driver takes: {known})", driver=driver
            )
        values: dict[str, Any] = {}
        for key, spec in cls.settings_spec.items():
            if key not in settings or (settings[key] is None and spec.required):
                if spec.required:
                    raise ConfigError(f"missing required setting {key!r}", driver=driver)
                values[key] = spec.default
                continue
            try:
                values[key] = spec.convert(key, settings[key])
            except ConfigError as exc:
                raise ConfigError(exc.message, driver=driver) from None
        return values

    def send(self, message: Message) -> Receipt:
        """Deliver ``message`` or raise a :class:`~mailfailover.errors.DeliveryError`."""
        raise NotImplementedError

    async def asend(self, message: Message) -> Receipt:
        """:meth:`send` for an event loop; what :class:`~mailfailover.aio.AsyncFailoverMailer`
        calls.

        This default runs :meth:`send` in a worker thread (``asyncio.to_thread``, which
        carries the mailer's deadline along), so every driver works under asyncio: SES and
        third-party drivers included. HTTP drivers and SMTP override it with native async
        I/O. A cancelled ``asend`` of this default stops waiting at once, but the thread
        finishes its send (a thread cannot be interrupted): the message may still go out.
        """
        return await asyncio.to_thread(self.send, message)

    @property
    def batch_size(self) -> int:
        """How many messages :meth:`send_batch` carries in one request (1: no batching)."""
        return 1

    def send_batch(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        """Send ``messages``; for each, in order, its :class:`Receipt` or the exception its
        send raised. One message's failure never stops the others. The default sends them
        one by one; drivers with a batch endpoint send them in one request."""
        out: list[Receipt | Exception] = []
        for message in messages:
            try:
                out.append(self.send(message))
            except Exception as exc:
                out.append(exc)
        return out

    async def asend_batch(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        """:meth:`send_batch` for an event loop; what
        :meth:`~mailfailover.aio.AsyncFailoverMailer.send_many` calls for a batch.

        The default keeps a driver's own batches: a driver that overrides
        :meth:`send_batch` (and not this) has it run in a worker thread, as :meth:`asend`'s
        default runs :meth:`send` (the deadline goes along; a cancelled wait leaves the
        thread to finish its batch). Any other driver awaits :meth:`asend` for each
        message in turn (:meth:`asend_each`). HTTP drivers with a batch endpoint send the
        batch request natively.
        """
        if type(self).send_batch is not Driver.send_batch:
            return await asyncio.to_thread(self.send_batch, list(messages))
        return await self.asend_each(messages)

    async def asend_each(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        """Await :meth:`asend` for each message in turn; each one's receipt or exception."""
        out: list[Receipt | Exception] = []
        for message in messages:
            try:
                out.append(await self.asend(message))
            except Exception as exc:
                out.append(exc)
        return out

    def close(self) -> None:
        """Release connections; safe to call more than once."""

    def parse_webhook(
        self,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        url: str,
        *,
        now: float | None = None,
        replay: ReplayGuard | None = None,
    ) -> list[DeliveryEvent]:
        """Verify a request the provider sent to its webhook URL; its events, normalised.

        Raises :class:`~mailfailover.errors.WebhookError`: ``status`` 401 for a missing or
        bad signature, 400 for a malformed body, 404 when this driver has no webhooks or
        none are configured. ``now`` (epoch seconds) and ``replay`` (where seen tokens are
        kept) default to the wall clock and this driver's own memory; the mailer passes its
        state store's.
        """
        spec = self.webhooks
        if spec is None:
            raise WebhookError(
                f"the {type(self).__name__} driver has no webhooks", status=404, driver=self.name
            )
        if replay is None:
            replay = self.__dict__.get("_webhook_replay")
            if replay is None:
                from .webhooks import ReplayGuard

                replay = self.__dict__.setdefault("_webhook_replay", ReplayGuard())
        return spec.parse_request(self.name, self.settings, headers, body, url, now, replay)

    async def aclose(self) -> None:
        """:meth:`close` for an event loop; the default runs :meth:`close` in a thread (it
        may say goodbye to a server)."""
        await asyncio.to_thread(self.close)

    def check_limits(self, message: Message) -> None:
        """Raise :class:`UnsupportedFeature` for what this provider cannot carry."""
        if (
            self.max_recipients is not None
            # recipients() de-duplicates: only a message with more addresses than the
            # limit can have more recipients, so the others are spared parsing them all.
            and len(message.to) + len(message.cc) + len(message.bcc) > self.max_recipients
            and len(message.recipients()) > self.max_recipients
        ):
            self.unsupported(
                f"{len(message.recipients())} recipients; the provider takes at most "
                f"{self.max_recipients}",
                field="to",
            )
        if self.max_tags is not None and len(message.tags) > self.max_tags:
            self.unsupported(
                f"{len(message.tags)} tags; the provider takes at most {self.max_tags}",
                field="tags",
            )
        if self.tag_pattern is not None:
            for tag in message.tags:
                if not re.fullmatch(self.tag_pattern, tag):
                    self.unsupported(f"tag {tag!r} does not fit the provider's rule: "
                                     f"{self.tag_rule}", field="tags")  # fmt: skip
        if self.max_reply_to is not None and len(message.reply_to) > self.max_reply_to:
            self.unsupported(
                f"{len(message.reply_to)} Reply-To addresses; the provider takes at most "
                f"{self.max_reply_to}",
                field="reply_to",
            )
        for header in message.headers:
            lowered = header.lower()
            if lowered in self.forbidden_headers or lowered.startswith(
                self.forbidden_header_prefixes
            ):
                self.unsupported(f"the provider refuses the {header!r} header", field="headers")
        if not self.supports_inline and any(a.inline for a in message.attachments):
            self.unsupported("the provider cannot carry inline attachments", field="attachments")
        if not self.supports_metadata and message.metadata:
            self.unsupported("the provider cannot carry metadata", field="metadata")
        if self.max_metadata_bytes is not None and message.metadata:
            size = len(json.dumps(dict(message.metadata), ensure_ascii=False,
                                  separators=(",", ":")).encode())  # fmt: skip
            if size > self.max_metadata_bytes:
                limit = self.max_metadata_bytes
                self.unsupported(f"the metadata is {size} bytes as JSON; the provider takes "
                                 f"at most {limit}", field="metadata")  # fmt: skip
        if self.max_message_bytes is not None:
            size = estimated_size(message)
            if size > self.max_message_bytes:
                self.unsupported(
                    f"the message is about {size} bytes; the provider takes at most "
                    f"{self.max_message_bytes}",
                    field="attachments",
                )

    def secret_values(self) -> tuple[str, ...]:
        """The values of this driver's secret settings, for scrubbing error text."""
        return tuple(
            str(self.settings[key])
            for key, spec in self.settings_spec.items()
            if spec.secret and self.settings.get(key) not in (None, "")
        )

    def check_tracking_headers(self, message: Message, *, tags: bool = True) -> None:
        """Refuse (before any I/O) a message whose own headers already use the names that
        :func:`tracking_headers` would carry its tags or metadata in."""
        own = {name.lower() for name in message.headers}
        for name in tracking_headers(message, tags=tags):
            if name.lower() in own:
                field = "tags" if name == TAGS_HEADER else "metadata"
                self.unsupported(f"{field} travel in the {name} header, which the message "
                                 "already sets", field=field)  # fmt: skip

    def scrub(self, text: str) -> str:
        """``text`` with every trace of this driver's secrets replaced by ``***``."""
        return scrub(text, self.secret_values())

    def shows_secret(self, exc: BaseException) -> bool:
        """Whether ``exc``'s formatted traceback (its whole chain) shows one of the secrets;
        such an exception must not be chained as the cause of ours."""
        return shows_secret(exc, self.secret_values())

    def unsupported(self, detail: str, *, field: str | None = None) -> NoReturn:
        """Raise :class:`UnsupportedFeature` for this driver."""
        raise UnsupportedFeature(detail, field=field, driver=self.name)

    def __enter__(self) -> Driver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        shown = []
        for key, spec in self.settings_spec.items():
            value = self.settings.get(key)
            if value is None or (value == spec.default and not spec.secret):
                continue
            shown.append(f"{key}={'***' if spec.secret else redact_userinfo(repr(value))}")
        inner = " ".join([f"name={self.name!r}", *shown])
        return f"<{type(self).__name__} {inner}>"


def content_digest(message: Message) -> str:
    """A SHA-256 (hex) of everything a provider delivers: sender, recipients, subject,
    bodies, headers, attachments (their bytes included), tags and metadata.

    An idempotency key derived from the ``message_id`` alone lets a *different* message that
    reuses the id (a per-recipient copy made with ``replace(message_id=...)``) pass as the
    first one, and a provider would drop it as a duplicate while answering success. A key
    derived from the id and this digest is the same only for the very same message.
    """
    fields = {
        "sender": message.sender, "to": list(message.to), "cc": list(message.cc),
        "bcc": list(message.bcc), "reply_to": list(message.reply_to),
        "subject": message.subject, "text": message.text, "html": message.html,
        "headers": sorted(message.headers.items()), "tags": list(message.tags),
        "metadata": sorted(message.metadata.items()),
        "attachments": [
            [a.filename, a.mimetype, a.inline, a.content_id, len(a.content)]
            for a in message.attachments
        ],
    }  # fmt: skip
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode("utf-8"))
    for attachment in message.attachments:
        digest.update(attachment.content)
    return digest.hexdigest()


def secret_fragments(secret: str) -> set[str]:
    """What of ``secret`` can show in error text: itself, stripped, escaped as ``repr``
    shows it (a ``\\r`` in a header value), and each run of printable characters."""
    fragments = {secret, secret.strip(), repr(secret)[1:-1]}
    run = ""
    for char in secret + "\x00":
        if char.isprintable() and not char.isspace():
            run += char
            continue
        fragments.add(run)
        run = ""
    return {fragment for fragment in fragments if len(fragment) >= 6}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every fragment of every secret replaced by ``***``."""
    fragments = sorted({f for s in secrets for f in secret_fragments(s)}, key=len, reverse=True)
    for fragment in fragments:
        text = text.replace(fragment, "***")
    return text


def shows_secret(exc: BaseException, secrets: Iterable[str]) -> bool:
    """Whether the formatted traceback of ``exc`` (causes and contexts included) shows any
    fragment of any secret."""
    text = "".join(traceback.format_exception(exc))
    return any(f in text for s in secrets for f in secret_fragments(s))


def estimated_size(message: Message) -> int:
    """The message's size once encoded, estimated without building it (base64 is 4/3)."""
    body = len((message.text or "").encode("utf-8")) + len((message.html or "").encode("utf-8"))
    attachments = sum(len(a.content) for a in message.attachments)
    return body + attachments * 4 // 3 + 2048
