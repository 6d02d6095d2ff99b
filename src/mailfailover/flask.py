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

import contextlib
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .config import HttpConfig, load_config
from .errors import (
    INTERNAL_ERROR,
    INVALID_PARAMETER,
    NO_PROVIDER,
    NOT_FOUND,
    SENDER_NOT_ALLOWED,
    TOO_LARGE,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
    AllProvidersFailed,
    ConfigError,
    MessageRejected,
    MissingDependency,
)
from .mailer import FailoverMailer
from .message import Mailbox, parse_mailbox

try:  # absolute imports: this is the real Flask, not this module
    import flask
    from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("flask", "flask") from None

from ._send_request import FIELDS, ApiError, _build_message, _clip, _invalid, _parse_body

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

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

_READ_CHUNK = 64 * 1024
_MAX_MESSAGE_CHARS = 500
_MAX_FIELD_CHARS = 100
_EXTENSION_KEY = "mailfailover"


# -- errors as responses ----------------------------------------------------------------------
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
    data, uploads = _parse_body(body, flask.request.mimetype, flask.request.mimetype_params)
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


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8025,
    workers: int = 2,
    threads: int = 4,
    config: Any = None,
) -> int:
    """Run the adapter under gunicorn until SIGTERM (``mailfailover serve``).

    The configuration is checked before anything listens (exit code 2 when it is wrong, or
    when there is no API token and ``host`` is not loopback); SIGHUP reloads it. See
    :func:`mailfailover._gunicorn.serve`.
    """
    from ._gunicorn import serve as run

    return run(host=host, port=port, workers=workers, threads=threads, config=config)
