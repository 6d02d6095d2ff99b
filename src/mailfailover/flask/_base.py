"""What every route of the HTTP adapter shares: its state, JSON error responses,
authentication and the bounded body read. Route modules import this; it imports no route.
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
import flask
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from ..config import HttpConfig
from ..errors import (
    INTERNAL_ERROR,
    INVALID_PARAMETER,
    NOT_FOUND,
    SENDER_NOT_ALLOWED,
    TOO_LARGE,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
    ConfigError,
)
from ..mailer import FailoverMailer
from ..message import Mailbox, parse_mailbox
from ._send_request import ApiError, clip, invalid

__all__ = [
    "API_TOKEN_ENV",
    "EXTENSION_KEY",
    "METHODS",
    "AppState",
    "SenderAllowList",
    "api_token",
    "authenticate",
    "bearer_credentials",
    "current_state",
    "error_response",
    "http_error_response",
    "internal_error_response",
    "json_response",
    "known_token",
    "other_method",
    "read_body",
    "same_token",
    "too_large",
]

logger = logging.getLogger("mailfailover.flask")

#: The environment variable read when the configuration sets no ``http.api_token``.
API_TOKEN_ENV = "MAILFAILOVER_API_TOKEN"  # noqa: S105 - a variable name, not a secret

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

_READ_CHUNK = 64 * 1024
_MAX_MESSAGE_CHARS = 500
_MAX_FIELD_CHARS = 100
EXTENSION_KEY = "mailfailover"


# -- errors as responses ----------------------------------------------------------------------
def json_response(
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


def error_response(error: ApiError) -> flask.Response:
    field = None if error.field is None else clip(error.field, _MAX_FIELD_CHARS)
    if flask.has_request_context():
        # The code and the field name only (repr: a hostile name cannot forge log lines).
        logger.info(
            "%s %s: %d, error %d, field %r",
            flask.request.method,
            clip(flask.request.path, 100),
            error.status,
            error.code,
            field,
        )
    payload = {
        "error": error.code,
        "message": clip(error.message, _MAX_MESSAGE_CHARS),
        "field": field,
        **error.extra,
    }
    return json_response(error.status, payload, error.headers)


_HTTP_CODES = {
    400: INVALID_PARAMETER,
    401: UNAUTHORIZED,
    403: SENDER_NOT_ALLOWED,
    413: TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
}


def http_error_response(exc: HTTPException) -> flask.Response:
    status = exc.code or 500
    if isinstance(exc, RequestEntityTooLarge):
        return error_response(too_large(None))
    code = _HTTP_CODES.get(status, INTERNAL_ERROR if status >= 500 else NOT_FOUND)
    headers = {}
    allowed = getattr(exc, "valid_methods", None)
    if allowed:
        headers["Allow"] = ", ".join(allowed)
    description = exc.description or exc.name
    return error_response(ApiError(status, code, str(description), None, headers=headers))


def internal_error_response(exc: Exception) -> flask.Response:
    if isinstance(exc, HTTPException):
        return http_error_response(exc)
    if isinstance(exc, ApiError):
        return error_response(exc)
    # A real bug. The traceback names code, not request data; the body is never logged.
    logger.error(
        "unexpected %s while handling %s %s",
        type(exc).__name__,
        flask.request.method,
        flask.request.path,
        exc_info=exc,
    )
    return error_response(ApiError(500, INTERNAL_ERROR, "internal error"))


def other_method(methods: str) -> flask.Response:
    """204 with ``Allow`` for OPTIONS, a JSON 405 for any other method."""
    if flask.request.method == "OPTIONS":
        response = flask.Response(status=204)
        response.headers["Allow"] = methods
        return response
    return error_response(
        ApiError(
            405,
            NOT_FOUND,
            f"{flask.request.method} is not allowed here; use {methods.split(',')[0]}",
            headers={"Allow": methods},
        )
    )


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


def api_token(http: HttpConfig) -> str | None:
    """The configured token, else ``$MAILFAILOVER_API_TOKEN``; blank means none."""
    token = http.api_token if http.api_token is not None else os.environ.get(API_TOKEN_ENV)
    return token if token and token.strip() else None


@attrs.frozen
class AppState:
    mailer: FailoverMailer
    api_token: str | None = attrs.field(repr=lambda v: "None" if v is None else "***")
    allowed_senders: SenderAllowList
    max_body_bytes: int
    metrics_token: str | None = attrs.field(
        default=None, repr=lambda v: "None" if v is None else "***"
    )
    #: The status page's recent attempts (an ``_activity.Activity``).
    activity: Any = None
    #: ``http.max_recipients``: to + cc + bcc one ``POST /send`` may name.
    max_recipients: int = 1000
    #: ``_metrics.AdapterMetrics``, or None without prometheus_client.
    metrics: Any = None
    #: The :class:`mailfailover.celery.Outbox` when ``http.queue`` is on: /send enqueues.
    outbox: Any = attrs.field(default=None, repr=False)
    #: The wrong-token budget (``_auth_guard.AuthGuard``); None: ``http.auth_failures: off``.
    guard: Any = attrs.field(default=None, repr=False)


def current_state() -> AppState:
    state: AppState = flask.current_app.extensions[EXTENSION_KEY]
    return state


# -- authentication and reading ---------------------------------------------------------------


def _digest(value: bytes) -> bytes:
    # Comparing digests keeps the comparison constant-time whatever the lengths.
    return hashlib.sha256(value).digest()


def bearer_credentials() -> bytes | None:
    """The request's ``Authorization: Bearer`` credentials, or None (any other scheme)."""
    header = flask.request.headers.get("Authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    try:
        return credentials.encode("latin-1")  # WSGI hands header bytes over as latin-1
    except UnicodeEncodeError:
        return b""


def same_token(given: bytes, token: str) -> bool:
    """``given`` is ``token``, compared in constant time."""
    return bool(given) and hmac.compare_digest(_digest(given), _digest(token.encode("utf-8")))


def known_token(state: AppState, given: bytes, *tokens: str) -> bool:
    """Whether ``given`` is one of ``tokens`` (constant time), on the client's wrong-token
    budget (:mod:`._auth_guard`): raises a ``429`` :class:`ApiError` while the budget is
    spent, and a wrong ``given`` spends a slot of it. Every token check goes through here."""
    if state.guard is not None:
        state.guard.check()
    if any(same_token(given, token) for token in tokens):
        return True
    if state.guard is not None:
        state.guard.failed()
    return False


def authenticate(state: AppState) -> None:
    if state.api_token is None:
        return
    given = bearer_credentials()
    if given is None:
        logger.warning("refused %s %s: no bearer token", flask.request.method, flask.request.path)
        raise ApiError(
            401,
            UNAUTHORIZED,
            "this endpoint needs an 'Authorization: Bearer <token>' header",
            "Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="mailfailover"'},
        )
    if not known_token(state, given, state.api_token):
        logger.warning("refused %s %s: wrong token", flask.request.method, flask.request.path)
        raise ApiError(
            401,
            UNAUTHORIZED,
            "the bearer token is not valid",
            "Authorization",
            headers={"WWW-Authenticate": 'Bearer realm="mailfailover", error="invalid_token"'},
        )


def too_large(limit: int | None) -> ApiError:
    what = f"{limit} bytes" if limit is not None else "the limit"
    return ApiError(413, TOO_LARGE, f"the request body is larger than {what}", None)


def _bound_stream(limit: int) -> None:
    """Have Werkzeug bound the stream too (Flask >= 3.1), never above the app's own limit."""
    current = flask.request.max_content_length
    # Flask < 3.1 has no setter: our own bounded read below still holds.
    with contextlib.suppress(AttributeError):
        flask.request.max_content_length = limit if current is None else min(current, limit)


def read_body(limit: int) -> bytes:
    """The body, refused with 413 before reading when ``Content-Length`` is over ``limit``,
    and read at most ``limit + 1`` bytes otherwise (a chunked body has no length)."""
    length = flask.request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
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
                raise too_large(limit)
    except RequestEntityTooLarge:
        raise too_large(limit) from None
    except ClientDisconnected:
        raise invalid(None, "the request body ended before its Content-Length") from None
    return b"".join(chunks)
