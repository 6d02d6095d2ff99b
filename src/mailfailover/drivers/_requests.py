"""The ``requests`` transport of :class:`~mailfailover.drivers.HttpDriver`, and the one
boundary where ``requests`` and ``urllib3`` exceptions become our own.

It is the only module of the package that imports ``requests``: provider modules build an
:class:`~._wire.HttpRequest` and read an :class:`~._wire.HttpResponse`, and this module
carries one to the other. It owns the pooled ``requests.Session``, the User-Agent, the
environment (proxies, CA bundle: read once), and :func:`transport_error`, which maps
*every* exception class ``requests`` and ``urllib3`` define (:data:`REQUESTS_ERRORS`,
:data:`URLLIB3_ERRORS`; a test walks both libraries' hierarchies so that a class added in
a future version fails it until it is mapped here).

``ambiguous`` is true only when the request may have reached the provider: a read
timeout (also one while the body was being read), a connection reset or closed after the
request was sent, a broken or undecodable body. Refused connections, DNS failures, connect
timeouts, TLS handshakes and proxy failures happen before anything is sent. An error that
means the request could not even be built (an invalid header or URL, typically from a bad
setting) is reason ``bug``; its text can hold what was being built (an API key in a
header), so it is never chained as the cause, nor is any exception whose text holds one of
the driver's secrets.
"""

from __future__ import annotations

import email.errors
import http.client
import os
from collections.abc import Iterable, Mapping
from typing import Any

import requests
import requests.adapters
import requests.utils
import urllib3.exceptions as u3

from .._version import __version__
from ..errors import ProviderUnavailable, Reason
from ._boundary import OS_ERRORS, chained, holds, lookup
from ._wire import HttpRequest, HttpResponse, encode_json

__all__ = ["REQUESTS_ERRORS", "URLLIB3_ERRORS", "RequestsTransport", "transport_error"]

USER_AGENT = f"mailfailover/{__version__} python-requests/{requests.__version__}"

r = requests.exceptions

#: (reason, ambiguous, decided_by_cause) for every exception class ``requests`` defines.
#: When ``decided_by_cause`` is true, the urllib3 or socket error it wraps decides (see
#: :data:`URLLIB3_ERRORS`) and the pair is the fallback for a cause nobody knows.
REQUESTS_ERRORS: Mapping[type[BaseException], tuple[Reason, bool, bool]] = {
    r.RequestException: ("connection", True, True),  # the base: unknown, may have been sent
    r.ConnectionError: ("connection", True, True),
    r.ConnectTimeout: ("timeout", False, False),
    r.ReadTimeout: ("timeout", True, False),
    r.Timeout: ("timeout", True, False),
    # a TLS handshake (wrapped in MaxRetryError) sends nothing; one raised while the body
    # was read (a bare urllib3 SSLError) comes after the request went out
    r.SSLError: ("connection", False, True),
    r.ProxyError: ("connection", False, False),
    # raised while reading the body, so after the request was sent; a read timeout inside
    # makes it a timeout
    r.ChunkedEncodingError: ("connection", True, True),
    r.ContentDecodingError: ("connection", True, True),
    # redirects are not followed, no Retry with statuses is configured, raise_for_status
    # and .json() are never called inside the boundary: never raised from a send
    r.TooManyRedirects: ("server_error", True, False),
    r.RetryError: ("server_error", True, False),
    r.HTTPError: ("server_error", True, False),
    r.JSONDecodeError: ("bad_response", False, False),
    r.StreamConsumedError: ("bug", False, False),
    # the request could not be built: nothing left this process
    r.InvalidHeader: ("bug", False, False),
    r.InvalidURL: ("bug", False, False),
    r.InvalidProxyURL: ("bug", False, False),
    r.InvalidSchema: ("bug", False, False),
    r.MissingSchema: ("bug", False, False),
    r.URLRequired: ("bug", False, False),
    r.InvalidJSONError: ("bug", False, False),
    r.UnrewindableBodyError: ("bug", False, False),
}

#: (reason, ambiguous) for every exception class ``urllib3`` defines, as the cause inside a
#: ``requests`` exception (or raised bare, which requests lets some do). One inside a
#: ``MaxRetryError`` is judged by the error it wraps.
URLLIB3_ERRORS: Mapping[type[BaseException], tuple[Reason, bool]] = {
    u3.HTTPError: ("connection", True),  # the base: unknown, may have been sent
    u3.PoolError: ("connection", False),
    u3.ClosedPoolError: ("connection", False),
    u3.EmptyPoolError: ("connection", False),
    u3.FullPoolError: ("connection", True),  # raised putting a used connection back
    u3.HostChangedError: ("connection", False),
    u3.RequestError: ("connection", True),
    u3.MaxRetryError: ("connection", True),  # judged by .reason; this is for no reason
    u3.TimeoutError: ("timeout", True),
    u3.ConnectTimeoutError: ("timeout", False),
    u3.NewConnectionError: ("connection", False),
    u3.NameResolutionError: ("connection", False),
    u3.ReadTimeoutError: ("timeout", True),
    u3.TimeoutStateError: ("bug", False),
    u3.SSLError: ("connection", False),  # in a MaxRetryError: the handshake
    u3.ProxyError: ("connection", False),
    u3.ProtocolError: ("connection", True),  # also urllib3's ConnectionError alias
    u3.ResponseNotChunked: ("connection", True),
    u3.IncompleteRead: ("connection", True),
    u3.InvalidChunkLength: ("connection", True),
    http.client.IncompleteRead: ("connection", True),  # urllib3 re-exports it
    u3.DecodeError: ("connection", True),
    u3.HeaderParsingError: ("connection", True),
    u3.ResponseError: ("server_error", True),
    email.errors.MessageDefect: ("connection", True),  # urllib3 re-exports it
    u3.InvalidHeader: ("bug", False),
    u3.LocationValueError: ("bug", False),
    u3.LocationParseError: ("bug", False),
    u3.URLSchemeUnknown: ("bug", False),
    u3.ProxySchemeUnknown: ("bug", False),
    u3.ProxySchemeUnsupported: ("bug", False),
    u3.BodyNotHttplibCompatible: ("bug", False),
    u3.UnrewindableBodyError: ("bug", False),
}

#: What the boundary catches: requests' root, urllib3's (requests lets some through bare),
#: and OSError (socket errors no library wrapped).
CAUGHT: tuple[type[BaseException], ...] = (requests.RequestException, u3.HTTPError, OSError)


class RequestsTransport:
    """Carries :class:`HttpRequest` s over one pooled ``requests.Session``."""

    def __init__(self, *, pool_size: int) -> None:
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        # With trust_env on, requests re-reads the environment for every request (the proxy
        # variables and NO_PROXY for the URL, a CA bundle, ~/.netrc): a quarter of a request
        # to a local server, and a .netrc entry for the provider's host would even replace
        # our Authorization header. A driver talks to one endpoint, so the environment is
        # read once, at the first send (see _use_environment).
        self.session.trust_env = False
        self._environment_read = False

    def send(
        self,
        request: HttpRequest,
        *,
        url: str,
        timeout: tuple[float, float],
        driver: str,
        secrets: Iterable[str] = (),
    ) -> HttpResponse:
        """Send ``request`` to ``url``; every failure leaves as :class:`ProviderUnavailable`.

        The translation happens outside the ``except`` block, so an exception that must not
        be chained is not even the implicit ``__context__``.
        """
        if not self._environment_read:
            self._use_environment(url)
        headers = dict(request.headers)
        data = request.data
        if request.json is not None:
            data = encode_json(request.json)
            headers.setdefault("Content-Type", "application/json")
        failure: BaseException
        try:
            answer = self.session.request(
                request.method,
                url,
                data=data,
                files=request.files,
                headers=headers,
                auth=request.auth,
                timeout=timeout,
                allow_redirects=False,
            )
            return HttpResponse(
                answer.status_code, answer.headers.items(), answer.content, answer.reason or ""
            )
        except CAUGHT as exc:
            failure = exc
        raise chained(transport_error(failure, driver), failure, secrets)

    def _use_environment(self, url: str) -> None:
        """Apply the proxy and CA-bundle variables requests would read per request."""
        self.session.proxies.update(requests.utils.get_environ_proxies(url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self.session.verify = bundle
        self._environment_read = True

    def close(self) -> None:
        self.session.close()


def transport_error(exc: BaseException, driver: str) -> ProviderUnavailable:
    """Map a ``requests``/``urllib3``/socket exception to :class:`ProviderUnavailable`."""
    reason, ambiguous = classify_transport(exc)
    return ProviderUnavailable(_describe(exc), reason=reason, ambiguous=ambiguous, driver=driver)


def classify_transport(exc: BaseException) -> tuple[Reason, bool]:
    """``(reason, ambiguous)`` for an exception raised by a send."""
    if isinstance(exc, requests.RequestException):
        reason, ambiguous, by_cause = lookup(REQUESTS_ERRORS, exc)
        if not by_cause:
            return reason, ambiguous
        cause: Any = exc.args[0] if exc.args else None
        if isinstance(exc, r.SSLError) and isinstance(cause, u3.SSLError):
            return "connection", True  # a TLS error while the body was being read
        return _by_cause(cause, (reason, ambiguous))
    return _by_cause(exc, ("connection", True))


def _by_cause(cause: Any, fallback: tuple[Reason, bool]) -> tuple[Reason, bool]:
    if isinstance(cause, u3.MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    if not isinstance(cause, BaseException):
        return fallback
    found = lookup(URLLIB3_ERRORS, cause) if isinstance(cause, u3.HTTPError) else None
    if found is None:
        found = lookup(OS_ERRORS, cause) or lookup(URLLIB3_ERRORS, cause) or fallback
    if found == ("connection", True) and holds(
        cause, (u3.ReadTimeoutError, TimeoutError), args=True
    ):
        return "timeout", True  # the connection "broke" because the provider stopped answering
    return found


def _describe(exc: BaseException) -> str:
    """A short reason without the URL's query string or any header (no secrets)."""
    kind = type(exc).__name__
    cause: Any = exc.args[0] if exc.args and isinstance(exc, requests.RequestException) else None
    if isinstance(cause, u3.MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    if isinstance(cause, u3.ProtocolError) and len(cause.args) > 1:
        cause = cause.args[1]
    reason = type(cause).__name__ if isinstance(cause, BaseException) else ""
    if isinstance(cause, u3.NewConnectionError):
        reason = "connection refused or host unreachable"
    elif isinstance(cause, u3.ReadTimeoutError):
        reason = "no answer within the read timeout"
    elif isinstance(cause, (ConnectionResetError, u3.ProtocolError)):
        reason = "connection reset by the provider"
    elif "RemoteDisconnected" in reason:
        reason = "the provider closed the connection without answering"
    return f"{kind}: {reason}" if reason else kind
