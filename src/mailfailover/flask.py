"""The HTTP adapter: the original email service's ``POST /send``, on Flask (extra ``flask``).

:func:`create_app` builds a small Flask application; :class:`MailFailover` mounts the same
endpoints in an application of your own; :func:`serve` (``mailfailover serve``) runs it under
gunicorn. The adapter only parses, authenticates, limits, maps the request to a
:class:`~mailfailover.Message` and maps the outcome to a response; everything else is the
library's. ``docs/http.md`` documents every field, code and status.

Secure by default:

- when an API token is configured (``http.api_token`` or ``$MAILFAILOVER_API_TOKEN``),
  ``/send`` and ``/health`` need ``Authorization: Bearer <token>``, compared in constant
  time; without one, :func:`serve` refuses to listen on anything but loopback;
- ``http.allowed_senders`` restricts who a request may send as (403 otherwise);
- the body limit (``http.max_body_bytes``, 25 MiB) is checked against ``Content-Length``
  before anything is read, and a body without one (chunked) is read only up to the limit;
- the request is parsed by hand (JSON, urlencoded and multipart alike), strictly: every
  malformed, mistyped or hostile input gets a 4xx with the original service's codes, and the
  :class:`~mailfailover.Message` constructor's validation (the header-injection guard) runs
  before any driver sees anything;
- nothing logged contains a body, an attachment or a token.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import attrs

from .config import HttpConfig, MailerConfig, build_drivers, load_config
from .errors import (
    INVALID_JSON,
    INVALID_PARAMETER,
    MISSING_PARAMETER,
    NO_PROVIDER,
    UNSUPPORTED_MEDIA_TYPE,
    AllProvidersFailed,
    ConfigError,
    InvalidMessage,
    MessageRejected,
    MissingDependency,
)
from .mailer import FailoverMailer
from .message import Attachment, Mailbox, Message, parse_mailbox, split_addresses

try:  # absolute imports: this is the real Flask, not this module
    import flask
    from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
    from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("flask", "flask") from None

__all__ = [
    "API_TOKEN_ENV",
    "FIELDS",
    "MailFailover",
    "SenderAllowList",
    "create_app",
    "serve",
]

logger = logging.getLogger("mailfailover.flask")

#: The environment variable read when the configuration sets no ``http.api_token``.
API_TOKEN_ENV = "MAILFAILOVER_API_TOKEN"  # noqa: S105 - a variable name, not a secret

#: Response codes beyond the original service's 1-5 (6 is ``ConfigError``'s).
UNAUTHORIZED = 7
SENDER_NOT_ALLOWED = 8
TOO_LARGE = 9
NOT_FOUND = 10
INTERNAL_ERROR = 11

#: Every field ``POST /send`` takes, whatever the content type.
FIELDS = frozenset(
    {
        "sender", "to", "cc", "bcc", "reply_to", "subject", "text", "html",
        "attachments", "headers", "tags", "metadata", "message_id",
    }
)  # fmt: skip
_SINGLE_FIELDS = ("sender", "subject", "text", "html", "message_id")
_ADDRESS_FIELDS = ("to", "cc", "bcc", "reply_to")
_ATTACHMENT_KEYS = frozenset({"filename", "data", "mimetype", "inline", "content_id"})
_BRACKETED = re.compile(r"^(headers|metadata)\[(.*)\]$", re.DOTALL)
_BASE64_SPACE = re.compile(r"[\t\n\r ]+")
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

MAX_FORM_FIELDS = 1000
_READ_CHUNK = 64 * 1024
_MAX_MESSAGE_CHARS = 500
_MAX_FIELD_CHARS = 100
_EXTENSION_KEY = "mailfailover"


# -- errors as responses ----------------------------------------------------------------------


class ApiError(Exception):
    """A request the adapter answers with an error; becomes ``{"error", "message", "field"}``."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        field: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _missing(field: str, message: str | None = None) -> ApiError:
    return ApiError(400, MISSING_PARAMETER, message or f"{field}: is required", field)


def _invalid(field: str | None, message: str) -> ApiError:
    return ApiError(400, INVALID_PARAMETER, message, field)


def _bad_json(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, INVALID_JSON, f"invalid JSON: {message}", field)


def _json_response(
    status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> flask.Response:
    response = flask.Response(
        json.dumps(payload, separators=(",", ":")) + "\n",
        status=status,
        mimetype="application/json",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error_response(error: ApiError) -> flask.Response:
    field = None if error.field is None else _clip(error.field, _MAX_FIELD_CHARS)
    if flask.has_request_context():
        # The code and the field name only (repr: a hostile name cannot forge log lines).
        logger.info(
            "%s %s: %d, error %d, field %r",
            flask.request.method,
            _clip(flask.request.path, 100),
            error.status,
            error.code,
            field,
        )
    payload = {
        "error": error.code,
        "message": _clip(error.message, _MAX_MESSAGE_CHARS),
        "field": field,
        **error.extra,
    }
    return _json_response(error.status, payload, error.headers)


_HTTP_CODES = {
    400: INVALID_PARAMETER,
    401: UNAUTHORIZED,
    403: SENDER_NOT_ALLOWED,
    413: TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
}


def _http_error_response(exc: HTTPException) -> flask.Response:
    status = exc.code or 500
    if isinstance(exc, RequestEntityTooLarge):
        return _error_response(_too_large(None))
    code = _HTTP_CODES.get(status, INTERNAL_ERROR if status >= 500 else NOT_FOUND)
    headers = {}
    allowed = getattr(exc, "valid_methods", None)
    if allowed:
        headers["Allow"] = ", ".join(allowed)
    description = exc.description or exc.name
    return _error_response(ApiError(status, code, str(description), None, headers=headers))


def _internal_error_response(exc: Exception) -> flask.Response:
    if isinstance(exc, HTTPException):
        return _http_error_response(exc)
    if isinstance(exc, ApiError):
        return _error_response(exc)
    # A real bug. The traceback names code, not request data; the body is never logged.
    logger.error(
        "unexpected %s while handling %s %s",
        type(exc).__name__,
        flask.request.method,
        flask.request.path,
        exc_info=exc,
    )
    return _error_response(ApiError(500, INTERNAL_ERROR, "internal error"))


# -- settings ---------------------------------------------------------------------------------


class SenderAllowList:
    """Which senders ``/send`` accepts; an empty list accepts every sender.

    Entries are exact addresses (a display name is ignored; the local part compares
    exactly, the domain case-insensitively and in IDNA form) or ``*@domain`` for every
    address at that domain (not its subdomains). The check reads the parsed bare address
    of the message's sender, never the raw text, so a display name cannot smuggle one in.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._addresses: set[tuple[str, str]] = set()
        self._domains: set[str] = set()
        self.entries = tuple(entries)
        for entry in self.entries:
            if not isinstance(entry, str) or not entry.strip():
                raise ConfigError("http.allowed_senders: entries must be non-empty strings")
            text = entry.strip()
            try:
                if text.startswith("*@"):
                    self._domains.add(parse_mailbox(f"x{text[1:]}").ascii_domain.lower())
                else:
                    mailbox = parse_mailbox(text)
                    self._addresses.add((mailbox.local, mailbox.ascii_domain.lower()))
            except ValueError as exc:
                raise ConfigError(
                    f"http.allowed_senders: {entry!r} is neither an address nor *@domain ({exc})"
                ) from None

    def __bool__(self) -> bool:
        return bool(self._addresses or self._domains)

    def allows(self, mailbox: Mailbox) -> bool:
        """True when ``mailbox`` may be used as a sender."""
        if not self:
            return True
        domain = mailbox.ascii_domain.lower()
        return domain in self._domains or (mailbox.local, domain) in self._addresses

    def __repr__(self) -> str:
        return f"SenderAllowList({list(self.entries)!r})"


def _api_token(http: HttpConfig) -> str | None:
    """The configured token, else ``$MAILFAILOVER_API_TOKEN``; blank means none."""
    token = http.api_token if http.api_token is not None else os.environ.get(API_TOKEN_ENV)
    return token if token and token.strip() else None


@attrs.frozen
class _State:
    mailer: FailoverMailer
    api_token: str | None = attrs.field(repr=lambda v: "None" if v is None else "***")
    allowed_senders: SenderAllowList
    max_body_bytes: int


def _resolve_http(
    mailer: FailoverMailer | None, config: Any, http: HttpConfig | None
) -> tuple[FailoverMailer, HttpConfig]:
    if mailer is None:
        mailer = FailoverMailer.from_config(config)
        return mailer, http or (mailer.config.http if mailer.config else HttpConfig())
    if http is not None:
        return mailer, http
    if config is not None:
        return mailer, load_config(config).http
    return mailer, mailer.config.http if mailer.config is not None else HttpConfig()


# -- the extension ----------------------------------------------------------------------------


class MailFailover:
    """Mounts ``POST /send`` and ``GET /health`` in a Flask application.

    ``mailer`` is used as given; without it one is built with
    :meth:`FailoverMailer.from_config` from ``config`` (a path, a dict, or ``None`` for the
    default lookup). The adapter's settings come from ``http``, else the ``http:`` section of
    ``config``, else of the mailer's own configuration; the token falls back to
    ``$MAILFAILOVER_API_TOKEN``. ``url_prefix`` mounts the endpoints under a path.

    >>> app = flask.Flask(__name__)                                 # doctest: +SKIP
    >>> MailFailover(app, config="config/mail.yml")                  # doctest: +SKIP
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        mailer: FailoverMailer | None = None,
        *,
        config: Any = None,
        http: HttpConfig | None = None,
        url_prefix: str | None = None,
    ) -> None:
        self.mailer = mailer
        self.config = config
        self.http = http
        self.url_prefix = url_prefix
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Register the blueprint and this adapter's state on ``app``."""
        mailer, http = _resolve_http(self.mailer, self.config, self.http)
        try:
            state = _State(
                mailer=mailer,
                api_token=_api_token(http),
                allowed_senders=SenderAllowList(http.allowed_senders),
                max_body_bytes=http.max_body_bytes,
            )
        except BaseException:
            if self.mailer is None:  # built here: nobody else will close it
                mailer.close()
            raise
        self.mailer = mailer
        app.extensions[_EXTENSION_KEY] = state
        app.register_blueprint(blueprint, url_prefix=self.url_prefix)


def _state() -> _State:
    state: _State = flask.current_app.extensions[_EXTENSION_KEY]
    return state


def create_app(
    mailer: FailoverMailer | None = None,
    *,
    config: Any = None,
    http: HttpConfig | None = None,
) -> flask.Flask:
    """A Flask application serving ``POST /send`` and ``GET /health``.

    ``mailer`` is used as given; without it one is built from ``config`` (a path, a dict,
    or ``None`` for ``$MAILFAILOVER_CONFIG``, ``./config/mail.yml``, the built-in default).
    Every error this application answers, including 404, 405 and a bug's 500, is JSON.
    """
    app = flask.Flask(__name__)
    MailFailover(app, mailer, config=config, http=http)
    state: _State = app.extensions[_EXTENSION_KEY]
    # Also make Werkzeug refuse larger bodies: a second line behind our own check.
    app.config["MAX_CONTENT_LENGTH"] = state.max_body_bytes
    app.register_error_handler(HTTPException, _http_error_response)
    app.register_error_handler(Exception, _internal_error_response)
    return app


# -- the views --------------------------------------------------------------------------------

blueprint = flask.Blueprint("mailfailover", __name__)
blueprint.register_error_handler(ApiError, _error_response)
blueprint.register_error_handler(HTTPException, _http_error_response)
blueprint.register_error_handler(Exception, _internal_error_response)


def _other_method(methods: str) -> flask.Response:
    """204 with ``Allow`` for OPTIONS, a JSON 405 for any other method."""
    if flask.request.method == "OPTIONS":
        response = flask.Response(status=204)
        response.headers["Allow"] = methods
        return response
    return _error_response(
        ApiError(
            405,
            NOT_FOUND,
            f"{flask.request.method} is not allowed here; use {methods.split(',')[0]}",
            headers={"Allow": methods},
        )
    )


@blueprint.route("/send", methods=_METHODS, provide_automatic_options=False)
def send_view() -> flask.Response:
    """``POST /send``: validate, authenticate, build the message, send it."""
    if flask.request.method != "POST":
        return _other_method("POST, OPTIONS")
    state = _state()
    _authenticate(state)
    body = _read_body(state.max_body_bytes)
    data, uploads = _parse_body(body)
    message = _build_message(data, uploads)
    sender = message.sender_mailbox
    if not state.allowed_senders.allows(sender):
        logger.warning("refused a sender at %s: not on http.allowed_senders", sender.domain)
        raise ApiError(
            403, SENDER_NOT_ALLOWED, "sender: this address may not be used as the sender",
            "sender",
        )  # fmt: skip
    try:
        result = state.mailer.send(message)
    except MessageRejected as exc:
        raise ApiError(
            422,
            INVALID_PARAMETER,
            f"rejected by {exc.driver}: {exc.detail}",
            None,
            extra={
                "driver": exc.driver,
                "attempts": [attempt.to_dict() for attempt in exc.attempts],
            },
        ) from None
    except AllProvidersFailed as exc:
        raise ApiError(
            503,
            NO_PROVIDER,
            exc.message,
            None,
            extra={"attempts": [attempt.to_dict() for attempt in exc.attempts]},
        ) from None
    logger.debug("sent %s via %s", message.message_id, result.driver)
    return _json_response(200, {"status": "sent", **result.to_dict()})


@blueprint.route("/health", methods=_METHODS, provide_automatic_options=False)
def health_view() -> flask.Response:
    """``GET /health``: each driver's state (names and counters, never settings)."""
    if flask.request.method not in ("GET", "HEAD"):
        return _other_method("GET, HEAD, OPTIONS")
    state = _state()
    _authenticate(state)
    drivers = [health.to_dict() for health in state.mailer.health()]
    healthy = sum(1 for d in drivers if d["state"] == "healthy")
    status = "ok" if healthy == len(drivers) else ("degraded" if healthy else "down")
    return _json_response(200, {"status": status, "drivers": drivers})


# -- authentication and reading ---------------------------------------------------------------


def _digest(value: bytes) -> bytes:
    # Comparing digests keeps the comparison constant-time whatever the lengths.
    return hashlib.sha256(value).digest()


def _authenticate(state: _State) -> None:
    if state.api_token is None:
        return
    header = flask.request.headers.get("Authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        logger.warning("refused %s %s: no bearer token", flask.request.method, flask.request.path)
        raise ApiError(
            401,
            UNAUTHORIZED,
            "this endpoint needs an 'Authorization: Bearer <token>' header",
            "Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="mailfailover"'},
        )
    try:
        given = credentials.encode("latin-1")  # WSGI hands header bytes over as latin-1
    except UnicodeEncodeError:
        given = b""
    if not given or not hmac.compare_digest(
        _digest(given), _digest(state.api_token.encode("utf-8"))
    ):
        logger.warning("refused %s %s: wrong token", flask.request.method, flask.request.path)
        raise ApiError(
            401,
            UNAUTHORIZED,
            "the bearer token is not valid",
            "Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="mailfailover", error="invalid_token"'},
        )


def _too_large(limit: int | None) -> ApiError:
    what = f"{limit} bytes" if limit is not None else "the limit"
    return ApiError(413, TOO_LARGE, f"the request body is larger than {what}", None)


def _bound_stream(limit: int) -> None:
    """Have Werkzeug bound the stream too (Flask >= 3.1), never above the app's own limit."""
    current = flask.request.max_content_length
    # Flask < 3.1 has no setter: our own bounded read below still holds.
    with contextlib.suppress(AttributeError):
        flask.request.max_content_length = limit if current is None else min(current, limit)


def _read_body(limit: int) -> bytes:
    """The body, refused with 413 before reading when ``Content-Length`` is over ``limit``,
    and read at most ``limit + 1`` bytes otherwise (a chunked body has no length)."""
    length = flask.request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    _bound_stream(limit)
    chunks: list[bytes] = []
    total = 0
    try:
        stream = flask.request.stream
        while True:
            chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    except ClientDisconnected:
        raise _invalid(None, "the request body ended before its Content-Length") from None
    return b"".join(chunks)


# -- parsing the three content types ----------------------------------------------------------


@attrs.frozen
class _Upload:
    filename: str | None
    content: bytes = attrs.field(repr=False)
    mimetype: str | None


def _parse_body(body: bytes) -> tuple[dict[str, Any], list[_Upload]]:
    request = flask.request
    mimetype = request.mimetype
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.strip().lower() not in ("utf-8", "utf8", "us-ascii"):
        raise ApiError(
            415,
            UNSUPPORTED_MEDIA_TYPE,
            f"charset {_clip(charset, 40)!r} is not supported; send UTF-8",
        )
    if mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    ):
        return _parse_json(body), []
    if mimetype == "application/x-www-form-urlencoded":
        return _fields_from_form(_parse_urlencoded(body), [])
    if mimetype == "multipart/form-data":
        pairs, uploads = _parse_multipart(body, request.mimetype_params.get("boundary"))
        return _fields_from_form(pairs, uploads)
    what = f"{_clip(mimetype, 80)!r} is not supported" if mimetype else "no Content-Type was given"
    raise ApiError(
        415,
        UNSUPPORTED_MEDIA_TYPE,
        f"unsupported media type: {what}; send application/json, "
        "multipart/form-data or application/x-www-form-urlencoded",
    )


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates (``"\\ud800"``): no UTF-8 encoder downstream could send them."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _bad_json("a string holds an unpaired surrogate escape") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _loads(text: str) -> Any:
    return json.loads(
        text, object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant
    )


def _parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise _bad_json("the request body is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_json(f"the body is not UTF-8 (byte {exc.start})") from None
    text = text.removeprefix("\ufeff")
    try:
        data = _loads(text)
    except _DuplicateKey as exc:
        raise _bad_json(f"the key {_clip(exc.key, 60)!r} appears twice", exc.key) from None
    except json.JSONDecodeError as exc:
        raise _bad_json(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise _bad_json("the document is nested too deeply") from None
    except ValueError as exc:  # NaN / Infinity, integers too long to convert
        raise _bad_json(str(exc)) from None
    if not isinstance(data, dict):
        raise _bad_json(f"the body must be a JSON object, not {_json_type(data)}")
    _check_strings(data)
    return data


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _parse_urlencoded(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return urllib.parse.parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise _invalid(None, "the form is not UTF-8 text") from None
    except ValueError:
        raise _invalid(None, f"the form has more than {MAX_FORM_FIELDS} fields") from None


def _parse_multipart(
    body: bytes, boundary: str | None
) -> tuple[list[tuple[str, str]], list[_Upload]]:
    if not boundary or not _BOUNDARY.match(boundary):
        raise _invalid(None, "multipart/form-data needs a valid boundary parameter")
    decoder = MultipartDecoder(boundary.encode("ascii"), max_parts=MAX_FORM_FIELDS)
    pairs: list[tuple[str, str]] = []
    uploads: list[_Upload] = []
    current: Field | File | None = None
    buffer = bytearray()
    try:
        decoder.receive_data(body)
        decoder.receive_data(None)
        # Each event consumes input or moves the state on; the bound is a second guard.
        for _ in range(4 * MAX_FORM_FIELDS + 16):
            event = decoder.next_event()
            if isinstance(event, (Field, File)):
                current, buffer = event, bytearray()
            elif isinstance(event, Data):
                buffer += event.data
                if not event.more_data and current is not None:
                    _add_part(current, bytes(buffer), pairs, uploads)
                    current = None
            elif isinstance(event, Epilogue):
                return pairs, uploads
        raise ValueError("too many events")
    except ApiError:
        raise
    except RequestEntityTooLarge:
        raise _invalid(None, f"the form has more than {MAX_FORM_FIELDS} parts") from None
    except Exception:  # the decoder's ValueError, and whatever malformed input trips in it
        raise _invalid(None, "the multipart/form-data body is malformed or incomplete") from None


def _add_part(
    part: Field | File, data: bytes, pairs: list[tuple[str, str]], uploads: list[_Upload]
) -> None:
    if not part.name:
        raise _invalid(None, "a form part has no name")
    if isinstance(part, File) and part.name == "attachments":
        # Browsers send an empty part with filename="" for a file input left empty.
        filename = part.filename.replace("\\", "/").rsplit("/", 1)[-1] or None
        if filename is None and not data:
            return
        mimetype = part.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        uploads.append(_Upload(filename, data, mimetype or None))
        return
    if isinstance(part, File):
        raise _invalid(part.name, f"{_clip(part.name, 60)}: only 'attachments' takes files")
    try:
        pairs.append((part.name, data.decode("utf-8")))
    except UnicodeDecodeError:
        raise _invalid(part.name, f"{_clip(part.name, 60)}: is not UTF-8 text") from None


def _json_field(name: str, value: str, expected: type) -> Any:
    try:
        parsed = _loads(value)
    except (ValueError, RecursionError, _DuplicateKey):
        parsed = None
    if not isinstance(parsed, expected):
        shape = "an object" if expected is dict else "an array"
        raise _invalid(name, f"{name}: in a form, must be {shape} in JSON")
    try:
        _check_strings(parsed)
    except ApiError:
        raise _invalid(name, f"{name}: holds an unpaired surrogate escape") from None
    return parsed


def _fields_from_form(
    pairs: Sequence[tuple[str, str]], uploads: list[_Upload]
) -> tuple[dict[str, Any], list[_Upload]]:
    """Turn form fields into the JSON body's shape.

    Single fields may appear once; ``to``/``cc``/``bcc``/``reply_to`` and ``tags`` repeat;
    ``headers`` and ``metadata`` are a JSON object or ``headers[Name]`` fields (or both);
    ``attachments`` fields that are not files are a JSON array like the JSON body's.
    """
    data: dict[str, Any] = {}
    lists: dict[str, list[str]] = {}
    mappings: dict[str, dict[str, str]] = {}
    attachments: list[Any] = []
    for name, value in pairs:
        bracketed = _BRACKETED.match(name)
        if bracketed:
            kind, key = bracketed.groups()
            target = mappings.setdefault(kind, {})
            if key in target:
                raise _invalid(name, f"{_clip(name, 60)}: is given more than once")
            target[key] = value
        elif name in _SINGLE_FIELDS:
            if name in data:
                raise _invalid(name, f"{name}: is given more than once")
            data[name] = value
        elif name in _ADDRESS_FIELDS or name == "tags":
            lists.setdefault(name, []).append(value)
        elif name in ("headers", "metadata"):
            target = mappings.setdefault(name, {})
            for key, item in _json_field(name, value, dict).items():
                if key in target:
                    raise _invalid(name, f"{name}: {_clip(key, 60)!r} is given more than once")
                target[key] = item
        elif name == "attachments":
            attachments.extend(_json_field(name, value, list))
        else:
            raise _unknown(name)
    data.update(lists)
    if "tags" in data:
        data["tags"] = [tag for tag in data["tags"] if tag != ""]
    data.update(mappings)
    if attachments:
        data["attachments"] = attachments
    return data, uploads


def _unknown(name: str) -> ApiError:
    known = ", ".join(sorted(FIELDS))
    return _invalid(name, f"{_clip(name, 60)!r} is not a field; the fields are: {known}")


# -- building the message ---------------------------------------------------------------------


def _addresses(data: Mapping[str, Any], field: str) -> list[str]:
    value = data.get(field)
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _invalid(field, f"{field}: must be a string or an array of strings")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise _invalid(field, f"{field}: must hold strings, not {_json_type(item)}")
        result.extend(split_addresses(item))
    return result


def _optional_text(data: Mapping[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None or isinstance(value, str):
        return value
    raise _invalid(field, f"{field}: must be a string, not {_json_type(value)}")


def _decode_base64(field: str, value: str) -> bytes:
    try:
        return base64.b64decode(_BASE64_SPACE.sub("", value).encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(field, f"{field}: is not valid base64") from None


def _renamed(exc: InvalidMessage, where: str) -> ApiError:
    field = (exc.field or "attachments").replace("attachments.", f"{where}.", 1)
    message = exc.message.replace("attachments.", f"{where}.", 1)
    return ApiError(400, exc.code, message, field)


def _attachment(index: int, item: Any) -> Attachment:
    where = f"attachments[{index}]"
    if not isinstance(item, dict):
        raise _invalid(where, f"{where}: must be an object with filename, data and mimetype")
    for key in item:
        if key not in _ATTACHMENT_KEYS:
            raise _invalid(f"{where}.{_clip(key, 40)}", f"{where}: {_clip(key, 40)!r} is "
                           "not an attachment field (filename, data, mimetype, inline, "
                           "content_id)")  # fmt: skip
    data = item.get("data")
    if data is None:
        raise _missing(f"{where}.data")
    if not isinstance(data, str):
        raise _invalid(f"{where}.data", f"{where}.data: must be a base64 string")
    content = _decode_base64(f"{where}.data", data)
    try:
        return Attachment(
            filename=item.get("filename"),
            content=content,
            mimetype=item.get("mimetype"),
            inline=item.get("inline", False),
            content_id=item.get("content_id"),
        )
    except InvalidMessage as exc:
        raise _renamed(exc, where) from None


def _build_message(data: Mapping[str, Any], uploads: Sequence[_Upload] = ()) -> Message:
    """The :class:`Message` a request describes, or the :class:`ApiError` saying why not."""
    for name in data:
        if name not in FIELDS:
            raise _unknown(name)
    sender = data.get("sender")
    if sender is None or (isinstance(sender, str) and not sender.strip()):
        raise _missing("sender")
    if not isinstance(sender, str):
        raise _invalid("sender", f"sender: must be a string, not {_json_type(sender)}")
    to = _addresses(data, "to")
    if not to:
        raise _missing("to", "to: at least one recipient is required")
    subject = _optional_text(data, "subject")
    if subject is None:
        raise _missing("subject")
    # An empty body field is an absent one: HTML forms send empty inputs.
    text = _optional_text(data, "text") or None
    html = _optional_text(data, "html") or None
    if text is None and html is None:
        raise _missing("text", "text: a text or an html body is required")
    raw_attachments = data.get("attachments")
    if raw_attachments is None:
        raw_attachments = []
    if not isinstance(raw_attachments, list):
        raise _invalid("attachments", "attachments: must be an array of objects")
    attachments = [_attachment(i, item) for i, item in enumerate(raw_attachments)]
    for upload in uploads:
        try:
            attachments.append(Attachment(upload.filename, upload.content, upload.mimetype))
        except InvalidMessage as exc:
            raise _renamed(exc, f"attachments[{len(attachments)}]") from None
    options: dict[str, Any] = {}
    message_id = _optional_text(data, "message_id")
    if message_id is not None:
        options["message_id"] = message_id
    try:
        return Message(
            sender=sender,
            to=to,
            subject=subject,
            text=text,
            html=html,
            cc=_addresses(data, "cc"),
            bcc=_addresses(data, "bcc"),
            reply_to=_addresses(data, "reply_to"),
            headers=data.get("headers"),
            tags=data.get("tags"),
            metadata=data.get("metadata"),
            attachments=attachments,
            **options,
        )
    except InvalidMessage as exc:
        raise ApiError(400, exc.code, exc.message, exc.field) from None


# -- serving ----------------------------------------------------------------------------------

EXIT_USAGE = 2


def _is_loopback(host: str) -> bool:
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_config(config: MailerConfig, host: str) -> None:
    """Everything a worker needs must build, and no token means loopback only."""
    for driver in build_drivers(config):
        driver.close()
    SenderAllowList(config.http.allowed_senders)
    if _api_token(config.http) is None and not _is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without an API token: set {API_TOKEN_ENV} or "
            "http.api_token in the configuration, or listen on 127.0.0.1"
        )


def _app_from_config(config: MailerConfig) -> flask.Flask:
    """What each gunicorn worker runs: a fresh mailer from the master's validated config."""
    drivers = build_drivers(config)
    mailer = FailoverMailer(drivers, **config.mailer_options())
    app = create_app(mailer, http=config.http)
    logger.info("worker %d ready, drivers: %s", os.getpid(), ", ".join(d.name for d in drivers))
    return app


def _post_fork(server: Any, worker: Any) -> None:
    # Until the worker installs its own handlers it runs the master's, which would only
    # queue a SIGTERM sent now (at shutdown, just after a spawn) and leave the worker
    # running until gunicorn's graceful timeout kills it. The default action is right: a
    # worker that has not started serving has nothing to finish.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _close_worker_mailer(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get(_EXTENSION_KEY)
    if state is not None:
        state.mailer.close()


def _setup_logging() -> None:
    """Our records next to gunicorn's on standard error, at INFO, once."""
    library = logging.getLogger("mailfailover")
    if library.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "%Y-%m-%d %H:%M:%S %z",
        )
    )
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8025,
    workers: int = 2,
    threads: int = 4,
    config: Any = None,
) -> int:
    """Run the adapter under gunicorn (``gthread`` workers) until SIGTERM or SIGINT.

    The master validates the configuration first (exit code 2 if it is wrong, or if there
    is no API token and ``host`` is not loopback). Each worker builds its own mailer from
    the master's validated configuration. ``SIGHUP`` re-reads the configuration in the
    master and, when it is valid, gracefully replaces the workers: in-flight requests finish
    on the old ones, new requests reach workers built from the new configuration. An invalid
    configuration is logged and the previous one is kept. Returns gunicorn's exit status.
    """
    problems = []
    if not 0 <= port <= 65535:
        problems.append(f"--port must be between 0 and 65535, not {port}")
    if workers < 1:
        problems.append("--workers must be at least 1")
    if threads < 1:
        problems.append("--threads must be at least 1")
    if problems:
        print(f"mailfailover serve: {problems[0]}", file=sys.stderr)
        return EXIT_USAGE
    try:
        loaded = load_config(config)
        _check_config(loaded, host)
    except ConfigError as exc:
        print(f"mailfailover serve: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging()
    bind = f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": [bind],
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "graceful_timeout": 30,
        "timeout": 60,
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "mailfailover",
        "post_fork": _post_fork,
        "worker_exit": _close_worker_mailer,
        "control_socket_disable": True,  # gunicorn >= 24; skipped where unknown
    }
    server = _gunicorn_server(options, loaded, config, host)
    try:
        server.run()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _gunicorn_server(
    options: Mapping[str, Any], loaded: MailerConfig, source: Any, host: str
) -> Any:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def __init__(self) -> None:
            self.options = dict(options)
            self.loaded = loaded
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Callable[..., Any]:
            return _app_from_config(self.loaded)

        def reload(self) -> None:
            try:
                fresh = load_config(source)
                _check_config(fresh, host)
            except ConfigError as exc:
                logger.error("configuration not reloaded, keeping the previous one: %s", exc)
            else:
                self.loaded = fresh
                logger.info("configuration reloaded from %s", fresh.source)
            super().reload()

    return Server()
