"""The shared base of every HTTP-API driver.

It owns everything that is the same for every provider: the pooled ``requests.Session``,
the User-Agent, the ``base_url`` / regional endpoint, connect and read timeouts (shortened
to the mailer's deadline), the one boundary that turns ``requests`` exceptions into
:class:`~mailfailover.errors.ProviderUnavailable`, the default classification of HTTP
statuses, ``Retry-After`` parsing, and a JSON encoder that splices base64 attachments in
as bytes so a large attachment is not copied three times. A provider module then holds only
its field mapping (:meth:`HttpDriver.build_request`), where its message id is
(:meth:`HttpDriver.parse_success`) and its error table (:meth:`HttpDriver.classify`).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, NoReturn

import attrs
import requests
import urllib3.exceptions

from .._version import __version__
from ..driver import Driver, Receipt, Setting, remaining_time
from ..errors import DeliveryError, MessageRejected, ProviderUnavailable, Reason
from ..message import Message

__all__ = ["B64", "HTTP_SETTINGS", "HttpDriver", "HttpRequest", "encode_json"]

USER_AGENT = f"mailfailover/{__version__} python-requests/{requests.__version__}"

#: Settings every HTTP driver takes; a provider adds its own with ``{**HTTP_SETTINGS, ...}``.
HTTP_SETTINGS: Mapping[str, Setting] = {
    "base_url": Setting(None, help="scheme and host replacing the provider's (proxies, tests)"),
    "timeout": Setting(10.0, float, help="seconds to wait for the provider's answer"),
    "connect_timeout": Setting(5.0, float, help="seconds to wait for a connection"),
    "pool_size": Setting(10, int, help="connections kept open per driver"),
}

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
    marker = uuid.uuid4().hex
    blobs: list[bytes] = []

    def default(value: Any) -> str:
        if isinstance(value, B64):
            blobs.append(value.content)
            return f"{marker}{len(blobs) - 1}{marker}"
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=default)
    if not blobs:
        return text.encode("utf-8")
    pieces = text.split(marker)
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


class HttpDriver(Driver):
    """Base class of requests-based drivers.

    A subclass sets ``default_base_url`` (and ``regional_base_urls`` when the provider has
    regions, chosen by a ``region`` setting), and implements :meth:`build_request`,
    :meth:`parse_success` and, for its own error table, :meth:`classify`.
    """

    settings_spec: ClassVar[Mapping[str, Setting]] = HTTP_SETTINGS
    default_base_url: ClassVar[str] = ""
    regional_base_urls: ClassVar[Mapping[str, str]] = {}

    def __init__(self, *, name: str, **settings: Any) -> None:
        super().__init__(name=name, **settings)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        pool = int(self.settings["pool_size"]) or 1
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        # With trust_env on, requests re-reads the environment for every request (the proxy
        # variables and NO_PROXY for the URL, a CA bundle, ~/.netrc): a quarter of a request
        # to a local server, and a .netrc entry for the provider's host would even replace
        # our Authorization header. A driver talks to one endpoint, so the environment is
        # read once, at the first send (see _use_environment).
        self.session.trust_env = False
        self._environment_read = False

    # -- what a provider module implements ---------------------------------------------

    def build_request(self, message: Message) -> HttpRequest:
        """Map ``message`` to the provider's documented request."""
        raise NotImplementedError

    def parse_success(self, response: requests.Response, message: Message) -> Receipt:
        """Read the provider's id from a 2xx; raise :meth:`bad_response` if it is not one."""
        raise NotImplementedError

    def classify(
        self, response: requests.Response, body: Any, detail: str, code: str | int | None
    ) -> DeliveryError | None:
        """Provider-specific classification of an error answer; ``None`` uses the defaults."""
        return None

    def error_detail(self, body: Any, response: requests.Response) -> tuple[str, Any]:
        """The provider's reason and error code from an error body (JSON or text)."""
        if isinstance(body, Mapping):
            for key in ("message", "Message", "error", "ErrorMessage", "detail"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    return value, body.get("code", body.get("ErrorCode"))
            errors = body.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
                first = errors[0]
                return str(first.get("message") or first.get("description") or first), first.get(
                    "code"
                )
        text = response.text.strip() if body is None else json.dumps(body)[:500]
        return (text[:500] or response.reason or f"HTTP {response.status_code}"), None

    # -- the send path -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        configured = self.settings.get("base_url")
        if configured:
            return str(configured).rstrip("/")
        region = self.settings.get("region")
        if region is not None and region in self.regional_base_urls:
            return self.regional_base_urls[region]
        return self.default_base_url

    def send(self, message: Message) -> Receipt:
        self.check_limits(message)
        request = self.build_request(message)
        response = self.post(request)
        if 200 <= response.status_code < 300:
            return self.parse_success(response, message)
        raise self.error_for(response)

    def post(self, request: HttpRequest) -> requests.Response:
        """Send ``request``; every transport failure leaves as :class:`ProviderUnavailable`."""
        if not self._environment_read:
            self._use_environment()
        headers = dict(request.headers)
        data = request.data
        if request.json is not None:
            data = encode_json(request.json)
            headers.setdefault("Content-Type", "application/json")
        with self.transport_errors():
            return self.session.request(
                request.method,
                self.base_url + request.path,
                data=data,
                files=request.files,
                headers=headers,
                auth=request.auth,
                timeout=self.timeouts(),
                allow_redirects=False,
            )

    def _use_environment(self) -> None:
        """Apply the proxy and CA-bundle variables requests would read per request."""
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self.session.verify = bundle
        self._environment_read = True

    def timeouts(self) -> tuple[float, float]:
        connect = float(self.settings["connect_timeout"])
        read = float(self.settings["timeout"])
        left = remaining_time()
        if left is not None:
            connect, read = min(connect, left), min(read, left)
        return connect, read

    @contextlib.contextmanager
    def transport_errors(self) -> Iterator[None]:
        """The one boundary where ``requests`` exceptions become our own."""
        try:
            yield
        except requests.RequestException as exc:
            raise transport_error(exc, self.name) from exc

    def error_for(self, response: requests.Response) -> DeliveryError:
        """Turn a non-2xx answer into the right :class:`DeliveryError`."""
        body = self.try_json(response)
        detail, code = self.error_detail(body, response)
        specific = self.classify(response, body, detail, code)
        if specific is not None:
            return specific.with_driver(self.name)
        return self.default_error(response, body, detail, code)

    def default_error(
        self, response: requests.Response, body: Any, detail: str, code: str | int | None
    ) -> DeliveryError:
        """The status-based classification shared by every provider."""
        status = response.status_code
        kwargs: dict[str, Any] = {
            "driver": self.name, "status": status, "provider_code": code, "response": body,
        }  # fmt: skip
        if status == 429:
            return self.unavailable(detail, response=response, reason="rate_limited", extra=kwargs)
        if status in (401, 403):
            return ProviderUnavailable(detail, reason="auth", **kwargs)
        if status == 402:
            return ProviderUnavailable(detail, reason="account", **kwargs)
        if status in (404, 405, 408) or status >= 500 or 300 <= status < 400:
            reason: Reason = "timeout" if status == 408 else "server_error"
            return self.unavailable(detail, response=response, reason=reason, extra=kwargs)
        return MessageRejected(detail, **kwargs)

    def unavailable(
        self,
        detail: str,
        *,
        response: requests.Response,
        reason: Reason,
        extra: Mapping[str, Any],
    ) -> ProviderUnavailable:
        return ProviderUnavailable(
            detail, reason=reason, retry_after=self.retry_after(response), **extra
        )

    def retry_after(self, response: requests.Response) -> float | None:
        """Seconds the provider asked us to wait (``Retry-After``); providers add their own."""
        return parse_retry_after(response.headers.get("Retry-After"))

    # -- helpers for provider modules ------------------------------------------------------

    @staticmethod
    def try_json(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def bad_response(self, detail: str, response: requests.Response) -> NoReturn:
        """Raise for a 2xx that is not the provider's success answer: nothing was accepted."""
        raise ProviderUnavailable(
            f"unexpected answer from the provider: {detail}",
            reason="bad_response",
            driver=self.name,
            status=response.status_code,
            response=_snippet(response),
        )

    def json_object(self, response: requests.Response) -> Mapping[str, Any]:
        """The 2xx body as a JSON object, or :meth:`bad_response`."""
        body = self.try_json(response)
        if not isinstance(body, Mapping):
            self.bad_response("the body is not a JSON object", response)
        return body

    def close(self) -> None:
        self.session.close()


def _snippet(response: requests.Response) -> str:
    return response.text[:200]


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


def transport_error(exc: requests.RequestException, driver: str) -> ProviderUnavailable:
    """Map a ``requests`` exception to :class:`ProviderUnavailable` with the right flags.

    ``ambiguous`` is true only when the request may have reached the provider: a read
    timeout, or a connection reset/closed after it was sent. Refused connections, DNS
    failures, connect timeouts, TLS and proxy failures happen before anything is sent.
    """
    detail = _describe(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return ProviderUnavailable(detail, reason="timeout", ambiguous=False, driver=driver)
    if isinstance(exc, requests.ReadTimeout):
        return ProviderUnavailable(detail, reason="timeout", ambiguous=True, driver=driver)
    if isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return ProviderUnavailable(detail, reason="connection", ambiguous=False, driver=driver)
    if isinstance(exc, requests.ConnectionError):
        return ProviderUnavailable(
            detail, reason="connection", ambiguous=not _before_send(exc), driver=driver
        )
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):  # fmt: skip
        return ProviderUnavailable(detail, reason="connection", ambiguous=True, driver=driver)
    # InvalidURL, InvalidHeader, MissingSchema...: nothing left this process.
    return ProviderUnavailable(detail, reason="connection", ambiguous=False, driver=driver)


def _before_send(exc: requests.ConnectionError) -> bool:
    """True when the connection failed before the request could be written."""
    cause: Any = exc.args[0] if exc.args else None
    if isinstance(cause, urllib3.exceptions.MaxRetryError):
        cause = cause.reason
    return isinstance(
        cause,
        (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
         ConnectionRefusedError),
    )  # fmt: skip


def _describe(exc: BaseException) -> str:
    """A short reason without the URL's query string or any header (no secrets)."""
    kind = type(exc).__name__
    cause: Any = exc.args[0] if exc.args else None
    if isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    if isinstance(cause, urllib3.exceptions.ProtocolError) and len(cause.args) > 1:
        cause = cause.args[1]
    reason = type(cause).__name__ if isinstance(cause, BaseException) else ""
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        reason = "connection refused or host unreachable"
    elif isinstance(cause, (ConnectionResetError, urllib3.exceptions.ProtocolError)):
        reason = "connection reset by the provider"
    elif "RemoteDisconnected" in reason:
        reason = "the provider closed the connection without answering"
    return f"{kind}: {reason}" if reason else kind
