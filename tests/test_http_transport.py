"""The transport boundary is exhaustive: every exception class requests and urllib3 define
is mapped, explicitly, to a reason and an ``ambiguous`` flag (as httpx's tests do for its
transports). The class lists are walked from the libraries themselves, so a class added in
a future version fails these tests until it is mapped and its meaning decided.
"""

from __future__ import annotations

import gzip
import http.client
import inspect
import socket
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any, ClassVar

import pytest
import requests
import urllib3.exceptions as u3

from mailfailover import FailoverMailer, MemoryDriver, Message, ProviderUnavailable, Receipt
from mailfailover.drivers import HTTP_SETTINGS, HttpDriver, HttpRequest, HttpResponse
from mailfailover.drivers._requests import REQUESTS_ERRORS, URLLIB3_ERRORS, transport_error
from mailfailover.health import State
from mailfailover.testing import FakeClock, simple_message

r = requests.exceptions

#: What a send raising each requests class (bare, no cause) means: (reason, ambiguous).
EXPECTED_REQUESTS: dict[type[BaseException], tuple[str, bool]] = {
    r.RequestException: ("connection", True),
    r.ConnectionError: ("connection", True),
    r.ConnectTimeout: ("timeout", False),
    r.ReadTimeout: ("timeout", True),
    r.Timeout: ("timeout", True),
    r.SSLError: ("connection", False),
    r.ProxyError: ("connection", False),
    r.ChunkedEncodingError: ("connection", True),
    r.ContentDecodingError: ("connection", True),
    r.TooManyRedirects: ("server_error", True),
    r.RetryError: ("server_error", True),
    r.HTTPError: ("server_error", True),
    r.JSONDecodeError: ("bad_response", False),
    r.StreamConsumedError: ("bug", False),
    r.InvalidHeader: ("bug", False),
    r.InvalidURL: ("bug", False),
    r.InvalidProxyURL: ("bug", False),
    r.InvalidSchema: ("bug", False),
    r.MissingSchema: ("bug", False),
    r.URLRequired: ("bug", False),
    r.InvalidJSONError: ("bug", False),
    r.UnrewindableBodyError: ("bug", False),
}

#: What each urllib3 class means as the cause inside requests.ConnectionError (or bare).
EXPECTED_URLLIB3: dict[type[BaseException], tuple[str, bool]] = {
    u3.HTTPError: ("connection", True),
    u3.PoolError: ("connection", False),
    u3.ClosedPoolError: ("connection", False),
    u3.EmptyPoolError: ("connection", False),
    u3.FullPoolError: ("connection", True),
    u3.HostChangedError: ("connection", False),
    u3.RequestError: ("connection", True),
    u3.MaxRetryError: ("connection", True),
    u3.TimeoutError: ("timeout", True),
    u3.ConnectTimeoutError: ("timeout", False),
    u3.NewConnectionError: ("connection", False),
    u3.NameResolutionError: ("connection", False),
    u3.ReadTimeoutError: ("timeout", True),
    u3.TimeoutStateError: ("bug", False),
    u3.SSLError: ("connection", False),
    u3.ProxyError: ("connection", False),
    u3.ProtocolError: ("connection", True),
    u3.ResponseNotChunked: ("connection", True),
    u3.IncompleteRead: ("connection", True),
    u3.InvalidChunkLength: ("connection", True),
    u3.httplib_IncompleteRead: ("connection", True),
    u3.DecodeError: ("connection", True),
    u3.HeaderParsingError: ("connection", True),
    u3.ResponseError: ("server_error", True),
    u3.MessageDefect: ("connection", True),
    u3.InvalidHeader: ("bug", False),
    u3.LocationValueError: ("bug", False),
    u3.LocationParseError: ("bug", False),
    u3.URLSchemeUnknown: ("bug", False),
    u3.ProxySchemeUnknown: ("bug", False),
    u3.ProxySchemeUnsupported: ("bug", False),
    u3.BodyNotHttplibCompatible: ("bug", False),
    u3.UnrewindableBodyError: ("bug", False),
}


def _walk(
    module: ModuleType, root: type[BaseException], *, whole_namespace: bool
) -> set[type[BaseException]]:
    """Every exception class the library defines: its exceptions module's namespace (all of
    it for urllib3, which re-exports the standard library errors it raises), and every
    subclass of ``root`` defined anywhere in the library."""
    package = module.__name__.split(".")[0]
    found = {
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException)
        and not issubclass(cls, Warning)
        and (whole_namespace or issubclass(cls, root) or cls.__module__.startswith(package))
    }
    pending = [root]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith(package) and not issubclass(cls, Warning):
            found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` whatever its constructor wants."""
    for args in (("x",), (None, "x"), (None, "/", "x"), ("x", "", 0), ()):
        try:
            return cls(*args)
        except (TypeError, AttributeError):
            continue
    instance = cls.__new__(cls)  # e.g. InvalidChunkLength wants a live response
    BaseException.__init__(instance, "x")
    return instance


def test_every_requests_exception_class_is_mapped() -> None:
    """The walked requests classes are exactly the expected and the implemented ones."""
    walked = _walk(requests.exceptions, requests.RequestException, whole_namespace=False)
    assert walked == set(EXPECTED_REQUESTS), "decide what the new/removed classes mean"
    assert set(REQUESTS_ERRORS) == walked


def test_every_urllib3_exception_class_is_mapped() -> None:
    """The walked urllib3 classes are exactly the expected and the implemented ones."""
    walked = _walk(u3, u3.HTTPError, whole_namespace=True)
    assert walked == set(EXPECTED_URLLIB3), "decide what the new/removed classes mean"
    assert set(URLLIB3_ERRORS) == walked


@pytest.mark.parametrize("cls", sorted(EXPECTED_REQUESTS, key=lambda c: c.__name__))
def test_requests_class_reason_and_ambiguity(cls: type[BaseException]) -> None:
    error = transport_error(_instance(cls), "d")
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous, error.driver) == (*EXPECTED_REQUESTS[cls], "d")


@pytest.mark.parametrize("cls", sorted(EXPECTED_URLLIB3, key=lambda c: c.__name__))
def test_urllib3_class_reason_and_ambiguity(cls: type[BaseException]) -> None:
    """Each urllib3 class, as the cause of requests.ConnectionError and bare (requests lets
    some through unwrapped), means what the table says."""
    cause = _instance(cls)
    for raised in (requests.ConnectionError(cause), cause):
        error = transport_error(raised, "d")
        assert (error.reason, error.ambiguous) == EXPECTED_URLLIB3[cls], type(raised).__name__


def _max_retry(reason: BaseException) -> u3.MaxRetryError:
    return u3.MaxRetryError(None, "/", reason)  # type: ignore[arg-type]


SCENARIOS = [
    # what requests raises in each situation, with the cause it really carries
    ("dns", requests.ConnectionError(_max_retry(u3.NameResolutionError("h", None, "x"))),  # type: ignore[arg-type]
     "connection", False),
    ("refused", requests.ConnectionError(_max_retry(u3.NewConnectionError(None, "refused"))),  # type: ignore[arg-type]
     "connection", False),
    ("connect-timeout", requests.ConnectTimeout(_max_retry(u3.ConnectTimeoutError())),
     "timeout", False),
    ("tls-handshake", requests.exceptions.SSLError(_max_retry(u3.SSLError("bad cert"))),
     "connection", False),
    ("tls-during-body", requests.exceptions.SSLError(u3.SSLError("bad record mac")),
     "connection", True),
    ("reset-after-send", requests.ConnectionError(
        u3.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
     "connection", True),
    ("closed-without-answer", requests.ConnectionError(
        u3.ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed"))),
     "connection", True),
    ("read-timeout-waiting-headers", requests.ReadTimeout(u3.ReadTimeoutError(None, "/", "t")),  # type: ignore[arg-type]
     "timeout", True),
    # the bug of issue 9: requests wraps a read timeout *while reading the body* this way
    ("read-timeout-reading-body", requests.ConnectionError(u3.ReadTimeoutError(None, "/", "t")),  # type: ignore[arg-type]
     "timeout", True),
    ("socket-timeout-in-chunked-body", requests.exceptions.ChunkedEncodingError(
        u3.ProtocolError("Connection broken", TimeoutError("timed out"))),
     "timeout", True),
    ("incomplete-chunked-body", requests.exceptions.ChunkedEncodingError(
        u3.ProtocolError("Connection broken: IncompleteRead", u3.IncompleteRead(3, 10))),
     "connection", True),
    ("bad-gzip-body", requests.exceptions.ContentDecodingError(u3.DecodeError("bad gzip")),
     "connection", True),
    ("pool-closed", requests.ConnectionError(u3.ClosedPoolError(None, "closed")),  # type: ignore[arg-type]
     "connection", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "reason", "ambiguous"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_real_world_causes(exc: BaseException, reason: str, ambiguous: bool) -> None:
    error = transport_error(exc, "d")
    assert (error.reason, error.ambiguous) == (reason, ambiguous)


# -- against a real server on loopback ------------------------------------------------------


class _Plain(HttpDriver):
    settings_spec: ClassVar = {**HTTP_SETTINGS}
    message_id_path: ClassVar = ("id",)

    def build_request(self, message: Message) -> HttpRequest:
        return HttpRequest("/send", json={"subject": message.subject})


class _Server:
    """A one-answer-per-connection HTTP server on 127.0.0.1 that answers with raw bytes,
    then optionally stalls, so the client's body read can time out or break."""

    def __init__(self, answer: bytes, stall: bool) -> None:
        self.answer, self.stall = answer, stall
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.port = self.listener.getsockname()[1]
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(5)
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                received += chunk
            connection.sendall(self.answer)
            if self.stall:
                self.release.wait(5)

    def close(self) -> None:
        self.release.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(answer: bytes, *, stall: bool = False) -> _Server:
        servers.append(_Server(answer, stall))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


BODY_CASES = {
    # headers, then half the body and silence: requests raises ConnectionError(ReadTimeoutError)
    "body-read-timeout": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\"", True,
                          "timeout"),
    "broken-chunked-body": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False,
                            "connection"),
    "undecodable-gzip-body": (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                              b"Content-Length: 9\r\n\r\nnot gzip!", False, "connection"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BODY_CASES))
def test_body_failures_from_a_real_server(serve: Any, case: str) -> None:
    """A failure while reading a 200's body happens after the provider took the request."""
    answer, stall, reason = BODY_CASES[case]
    server = serve(answer, stall=stall)
    driver = _Plain(name="plain", base_url=f"http://127.0.0.1:{server.port}", timeout=0.3)
    with driver, pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert (caught.value.reason, caught.value.ambiguous) == (reason, True)


def test_a_body_read_timeout_opens_the_breaker_at_once(serve: Any) -> None:
    """Like every timeout, one while reading the body cools the driver down at once (a
    failure_threshold of 5 notwithstanding), and the backup delivers."""
    server = serve(BODY_CASES["body-read-timeout"][0], stall=True)
    driver = _Plain(name="plain", base_url=f"http://127.0.0.1:{server.port}", timeout=0.3)
    backup = MemoryDriver(name="backup")
    with FailoverMailer([driver, backup], failure_threshold=5, clock=FakeClock()) as mailer:
        result = mailer.send(simple_message())
        assert result.driver == "backup"
        assert result.attempts[0].error is not None
        assert result.attempts[0].error.reason == "timeout"  # type: ignore[attr-defined]
        assert mailer.health()[0].state is State.COOLING_DOWN


def test_a_gzip_body_that_decodes_is_read(serve: Any) -> None:
    """The neutral response carries the decoded body (the control for the gzip case)."""
    body = gzip.compress(b'{"id": "m-1"}')
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    server = serve(answer)
    with _Plain(name="plain", base_url=f"http://127.0.0.1:{server.port}") as driver:
        receipt = driver.send(simple_message())
    assert isinstance(receipt, Receipt)
    assert receipt.message_id == "m-1"


def test_http_response_is_neutral() -> None:
    """HttpResponse: case-insensitive headers, charset-aware text, JSON parsed once."""
    response = HttpResponse(
        400, [("Content-Type", "text/plain; charset=latin-1"), ("X-A", "1"), ("x-a", "2")],
        "caf\xe9".encode("latin-1"),
    )  # fmt: skip
    assert response.headers["x-a"] == "1, 2"
    assert response.text == "café"
    assert response.json is None
    parsed = HttpResponse(200, {}, b'{"a": [1]}')
    assert parsed.json == {"a": [1]}
    assert parsed.json is parsed.json
