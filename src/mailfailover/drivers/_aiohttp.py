"""The ``aiohttp`` transport of :class:`~mailfailover.drivers.HttpDriver` (``asend``), and
the one boundary where ``aiohttp`` exceptions become our own.

It carries the same :class:`~._wire.HttpRequest` the ``requests`` transport carries and
returns the same :class:`~._wire.HttpResponse`, so a provider module's request mapping,
success parsing and error table serve both unchanged. ``aiohttp`` was chosen over
``httpx.AsyncClient`` by measurement (docs/async.md, docs/benchmarks.md).

* One ``ClientSession`` per driver, created lazily in the running event loop (a session
  belongs to one loop: used from a new loop after the old one closed, it is replaced; used
  from a second loop while the first still runs, it is an error). HTTP/1.1 keep-alive over
  a connector of at most ``pool_size`` connections: a send beyond that waits for one.
* Timeouts as the ``requests`` transport has them: ``connect_timeout`` for a new
  connection, ``timeout`` between bytes of the answer, both shortened to the mailer's
  deadline; with a deadline, asyncio also enforces it as a total.
* The environment read once, at the first send: the proxy for the provider's URL
  (``HTTP(S)_PROXY``/``NO_PROXY``) and a CA bundle (``REQUESTS_CA_BUNDLE``,
  ``CURL_CA_BUNDLE``); never ``~/.netrc`` (it must not replace the provider's credentials).
* :func:`transport_error` maps *every* exception class ``aiohttp`` defines
  (:data:`AIOHTTP_ERRORS`; a test walks the library's hierarchy so a class added in a
  future version fails it until it is mapped here). ``ambiguous`` is true only when the
  request may have reached the provider. ``asyncio.CancelledError`` is never caught.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import aiohttp.client_exceptions as ce
import aiohttp.http_exceptions as he
from urllib3.fields import RequestField
from urllib3.filepost import encode_multipart_formdata

from .._version import __version__
from ..errors import ProviderUnavailable, Reason
from ._boundary import OS_ERRORS, chained, holds, lookup
from ._loops import reclaim as _reclaim
from ._wire import HttpRequest, HttpResponse, encode_json

__all__ = ["AIOHTTP_ERRORS", "CAUGHT", "AiohttpTransport", "transport_error"]

USER_AGENT = f"mailfailover/{__version__} aiohttp/{aiohttp.__version__}"

#: (reason, ambiguous) for every exception class ``aiohttp`` defines.
AIOHTTP_ERRORS: Mapping[type[BaseException], tuple[Reason, bool]] = {
    ce.ClientError: ("connection", True),  # the base: unknown, may have been sent
    ce.ClientConnectionError: ("connection", True),
    ce.ClientOSError: ("connection", True),  # e.g. a broken pipe while writing the request
    ce.ClientConnectionResetError: ("connection", True),
    # opening the connection (TCP, DNS, TLS handshake, the proxy): nothing was sent
    ce.ClientConnectorError: ("connection", False),
    ce.ClientConnectorDNSError: ("connection", False),
    ce.ClientProxyConnectionError: ("connection", False),
    ce.UnixClientConnectorError: ("connection", False),
    ce.ClientSSLError: ("connection", False),
    ce.ClientConnectorSSLError: ("connection", False),
    ce.ClientConnectorCertificateError: ("connection", False),
    ce.ServerFingerprintMismatch: ("connection", False),  # checked before the request
    ce.ClientHttpProxyError: ("connection", False),  # the proxy refused the CONNECT
    # the server closed the connection before answering: it may have taken the request
    ce.ServerConnectionError: ("connection", True),
    ce.ServerDisconnectedError: ("connection", True),
    ce.ServerTimeoutError: ("timeout", True),
    ce.ConnectionTimeoutError: ("timeout", False),  # no connection within connect_timeout
    ce.SocketTimeoutError: ("timeout", True),  # no byte of the answer within timeout
    # the answer was unreadable (a bad status line or header; a body cut short or
    # undecodable): the request went out
    ce.ClientResponseError: ("connection", True),
    ce.ClientPayloadError: ("connection", True),
    he.HttpProcessingError: ("connection", True),
    he.BadHttpMessage: ("connection", True),
    he.HttpBadRequest: ("connection", True),
    he.PayloadEncodingError: ("connection", True),
    he.ContentEncodingError: ("connection", True),
    he.TransferEncodingError: ("connection", True),
    he.ContentLengthError: ("connection", True),
    he.DecompressSizeError: ("connection", True),
    he.LineTooLong: ("connection", True),
    he.InvalidHeader: ("connection", True),
    he.BadStatusLine: ("connection", True),
    he.BadHttpMethod: ("connection", True),
    he.InvalidURLError: ("connection", True),
    # aborted while the body was being written: the provider cannot act on half a request,
    # but the headers went out
    ce.UploadAbortedError: ("connection", True),
    # redirects are not followed, raise_for_status is off, .json() and websockets are never
    # used: never raised from a send
    ce.TooManyRedirects: ("server_error", True),
    ce.RedirectClientError: ("server_error", True),
    ce.InvalidUrlRedirectClientError: ("server_error", True),
    ce.NonHttpUrlRedirectClientError: ("server_error", True),
    ce.ContentTypeError: ("bad_response", False),
    ce.WSServerHandshakeError: ("bug", False),
    ce.WSMessageTypeError: ("bug", False),
    aiohttp.WebSocketError: ("bug", False),
    aiohttp.EofStream: ("bug", False),
    # the request could not be built (a bad base_url): nothing left this process
    ce.InvalidURL: ("bug", False),
    ce.InvalidUrlClientError: ("bug", False),
    ce.NonHttpUrlClientError: ("bug", False),
    # aiohttp refuses a header value with CR/LF (or a bad method, a bad body) this way
    ValueError: ("bug", False),
}

#: What the boundary catches: aiohttp's roots, socket errors no one wrapped, a total
#: timeout (``asyncio.TimeoutError`` is ``TimeoutError``, an ``OSError``), and a request
#: aiohttp refused to build. Never ``asyncio.CancelledError``.
CAUGHT: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    he.HttpProcessingError,
    OSError,
    asyncio.TimeoutError,
    ValueError,
)


class AiohttpTransport:
    """Carries :class:`HttpRequest` s over one ``aiohttp.ClientSession`` per driver."""

    def __init__(self, *, pool_size: int) -> None:
        self.pool_size = max(pool_size, 1)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._environment_read = False
        self._proxy: str | None = None
        self._ssl: ssl.SSLContext | bool = True
        self._closing: asyncio.Task[None] | None = None  # a close scheduled from in the loop

    async def send(
        self,
        request: HttpRequest,
        *,
        url: str,
        timeout: tuple[float, float],
        total: float | None = None,
        driver: str,
        secrets: Iterable[str] = (),
    ) -> HttpResponse:
        """Send ``request`` to ``url``; every failure leaves as :class:`ProviderUnavailable`.

        ``timeout`` is ``(connect, read)``; ``total`` (the mailer's deadline) bounds the
        whole exchange, waiting for a pooled connection included.
        """
        if not self._environment_read:
            self._use_environment(url)
        session = self._session_for_this_loop()
        headers = dict(request.headers)
        data: Any = request.data
        if request.json is not None:
            data = encode_json(request.json)
            headers.setdefault("Content-Type", "application/json")
        elif request.files is not None:
            data, headers["Content-Type"] = multipart(request.data, request.files)
        limits = aiohttp.ClientTimeout(
            total=total, sock_connect=timeout[0], sock_read=timeout[1], ceil_threshold=3600
        )
        failure: BaseException
        try:
            if request.auth is not None:
                headers["Authorization"] = basic_auth(*request.auth)
            async with session.request(
                request.method,
                url,
                data=data,
                headers=headers,
                timeout=limits,
                allow_redirects=False,
                proxy=self._proxy,
            ) as answer:
                content = await answer.read()
                return HttpResponse(
                    answer.status, answer.headers.items(), content, answer.reason or ""
                )
        except CAUGHT as exc:
            failure = exc
        raise chained(transport_error(failure, driver), failure, secrets)

    def _session_for_this_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                raise RuntimeError(
                    "this driver's async transport belongs to another event loop that is "
                    "still open; use one driver per event loop"
                )
            self._abandon()
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.pool_size, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                trust_env=False,  # the environment is read once, in _use_environment
                auto_decompress=True,
            )
            self._loop = loop
        return self._session

    def _use_environment(self, url: str) -> None:
        """Read the proxy and CA-bundle variables once (see the module docstring)."""
        parts = urllib.parse.urlsplit(url)
        if not (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
            self._proxy = urllib.request.getproxies().get(parts.scheme)
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self._ssl = ssl.create_default_context(cafile=bundle)
        self._environment_read = True

    def _abandon(self) -> None:
        """Forget a session whose event loop is closed, closing its sockets here.

        Nothing can run in a closed loop, so the connections cannot be closed the usual way
        (a transport's ``close()`` schedules its socket's close on the loop, and raises);
        left alone, the garbage collector would reclaim each keep-alive socket with a
        ``ResourceWarning``. :func:`_reclaim` does what the loop would have done next."""
        session, self._session, self._loop = self._session, None, None
        connector = None if session is None else session.connector
        if session is None or connector is None:
            return
        protocols = [proto for conns in connector._conns.values() for proto, _ in conns]
        protocols += list(connector._acquired)
        for proto in protocols:
            _reclaim(proto.transport)
        # BaseConnector._close() is synchronous: with its loop closed it only marks the
        # connector closed and forgets its connections.
        with contextlib.suppress(Exception):
            connector._close()
        session.detach()

    async def aclose(self) -> None:
        """Close the session, in its own loop; safe to call twice."""
        session, loop = self._session, self._loop
        if session is None:
            return
        if loop is asyncio.get_running_loop():
            self._session = self._loop = None
            await session.close()
        else:
            self.close()

    def close(self) -> None:
        """Close the session from synchronous code.

        In the session's own loop when that loop can be entered or reached (not running:
        run it; running in another thread: hand it over and wait); when called from inside
        the running loop itself, the close is scheduled (``await aclose()`` instead);
        when the loop is closed, the session is abandoned.
        """
        session, loop = self._session, self._loop
        if session is None or loop is None:
            return
        if loop.is_closed():
            self._abandon()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        self._session = self._loop = None
        if running is loop:
            self._closing = loop.create_task(session.close())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=10)
        else:
            loop.run_until_complete(session.close())


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` value for HTTP Basic auth, encoded as ``requests`` encodes it
    (Latin-1; aiohttp 3.14 deprecates its ``BasicAuth``). A character Latin-1 cannot carry
    raises ``UnicodeEncodeError``, a ``bug`` at the boundary."""
    token = base64.b64encode(f"{user}:{password}".encode("latin-1")).decode("ascii")
    return f"Basic {token}"


def multipart(data: Any, files: Any) -> tuple[bytes, str]:
    """A multipart/form-data body exactly as ``requests`` builds it from ``data`` and
    ``files`` (the same urllib3 functions), so both transports send the same bytes."""
    fields: list[RequestField] = []
    pairs = data.items() if isinstance(data, Mapping) else (data or ())
    for name, value in pairs:
        fields.append(RequestField(name=name, data=value))
    for name, spec in files.items() if isinstance(files, Mapping) else files:
        filename, content, *rest = spec
        field = RequestField(name=name, data=content, filename=filename)
        field.make_multipart(content_type=rest[0] if rest else None)
        fields.append(field)
    body, content_type = encode_multipart_formdata(fields)
    return body, content_type


def transport_error(exc: BaseException, driver: str) -> ProviderUnavailable:
    """Map an ``aiohttp``/socket exception to :class:`ProviderUnavailable`."""
    reason, ambiguous = classify_transport(exc)
    return ProviderUnavailable(_describe(exc), reason=reason, ambiguous=ambiguous, driver=driver)


def classify_transport(exc: BaseException) -> tuple[Reason, bool]:
    """``(reason, ambiguous)`` for an exception raised by a send."""
    own = isinstance(exc, (aiohttp.ClientError, he.HttpProcessingError))
    found: tuple[Reason, bool] = (
        (own and lookup(AIOHTTP_ERRORS, exc))
        or lookup(OS_ERRORS, exc)
        or lookup(AIOHTTP_ERRORS, exc)
        or ("connection", True)
    )
    if found == ("connection", True) and holds(exc, (TimeoutError,)):
        return "timeout", True  # the answer broke off because the provider stopped sending
    return found


def _describe(exc: BaseException) -> str:
    """A short reason without the URL, a header or the request's body (no secrets)."""
    kind = type(exc).__name__
    if isinstance(exc, ce.ClientConnectorError):
        return f"{kind}: connection refused, host unreachable or TLS handshake failed"
    if isinstance(exc, ce.SocketTimeoutError):
        return f"{kind}: no answer within the read timeout"
    if isinstance(exc, ce.ConnectionTimeoutError):
        return f"{kind}: no connection within the connect timeout"
    if isinstance(exc, ce.ServerDisconnectedError):
        return f"{kind}: the provider closed the connection without answering"
    if isinstance(exc, (ce.ClientConnectionResetError, ConnectionResetError)):
        return f"{kind}: connection reset by the provider"
    if isinstance(exc, ce.ClientPayloadError):
        return f"{kind}: the answer's body was cut short or undecodable"
    if type(exc) in (TimeoutError, asyncio.TimeoutError):
        return f"{kind}: the send deadline ran out"
    return kind
