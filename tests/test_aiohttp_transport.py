"""The ``aiohttp`` transport's boundary is exhaustive, as the ``requests`` one is: every
exception class aiohttp defines (its client errors and its HTTP parser errors) is mapped,
explicitly, to a reason and an ``ambiguous`` flag. The class list is walked from the
library itself, so a class added in a future version fails these tests until it is mapped
and its meaning decided. Then the same failures, produced by real sockets on loopback.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import aiohttp
import aiohttp.client_exceptions as ce
import aiohttp.http_exceptions as he
import pytest
import test_http_transport as sync_transport

from mailfailover import MemoryDriver, ProviderUnavailable, Receipt
from mailfailover.aio import AsyncFailoverMailer
from mailfailover.drivers._aiohttp import AIOHTTP_ERRORS, multipart, transport_error
from mailfailover.health import State
from mailfailover.testing import FakeClock, simple_message

BODY_CASES, _Plain = sync_transport.BODY_CASES, sync_transport._Plain
serve = sync_transport.serve  # the raw-bytes loopback server fixture

#: What a send raising each aiohttp class means: (reason, ambiguous).
EXPECTED: dict[type[BaseException], tuple[str, bool]] = {
    ce.ClientError: ("connection", True),
    ce.ClientConnectionError: ("connection", True),
    ce.ClientOSError: ("connection", True),
    ce.ClientConnectionResetError: ("connection", True),
    ce.ClientConnectorError: ("connection", False),
    ce.ClientConnectorDNSError: ("connection", False),
    ce.ClientProxyConnectionError: ("connection", False),
    ce.UnixClientConnectorError: ("connection", False),
    ce.ClientSSLError: ("connection", False),
    ce.ClientConnectorSSLError: ("connection", False),
    ce.ClientConnectorCertificateError: ("connection", False),
    ce.ServerFingerprintMismatch: ("connection", False),
    ce.ClientHttpProxyError: ("connection", False),
    ce.ServerConnectionError: ("connection", True),
    ce.ServerDisconnectedError: ("connection", True),
    ce.ServerTimeoutError: ("timeout", True),
    ce.ConnectionTimeoutError: ("timeout", False),
    ce.SocketTimeoutError: ("timeout", True),
    ce.ClientResponseError: ("connection", True),
    ce.ClientPayloadError: ("connection", True),
    ce.UploadAbortedError: ("connection", True),
    ce.TooManyRedirects: ("server_error", True),
    ce.RedirectClientError: ("server_error", True),
    ce.InvalidUrlRedirectClientError: ("server_error", True),
    ce.NonHttpUrlRedirectClientError: ("server_error", True),
    ce.ContentTypeError: ("bad_response", False),
    ce.WSServerHandshakeError: ("bug", False),
    ce.WSMessageTypeError: ("bug", False),
    aiohttp.WebSocketError: ("bug", False),
    aiohttp.EofStream: ("bug", False),
    ce.InvalidURL: ("bug", False),
    ce.InvalidUrlClientError: ("bug", False),
    ce.NonHttpUrlClientError: ("bug", False),
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
}

#: Not aiohttp's own, but raised through a send: a total timeout, a refused header value.
EXPECTED_FOREIGN: dict[type[BaseException], tuple[str, bool]] = {
    ValueError: ("bug", False),
    asyncio.TimeoutError: ("timeout", True),
    ConnectionRefusedError: ("connection", False),
    ConnectionResetError: ("connection", True),
    OSError: ("connection", True),
}


def _walked() -> set[type[BaseException]]:
    """Every exception class aiohttp defines: the namespaces of its exception modules and
    of the package, and every subclass of their roots defined anywhere in aiohttp."""
    found: set[type[BaseException]] = set()
    for module in (aiohttp, ce, he):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, BaseException)
                and not issubclass(cls, Warning)
                and cls.__module__.startswith("aiohttp")
            ):
                found.add(cls)
    pending: list[type[BaseException]] = [aiohttp.ClientError, he.HttpProcessingError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("aiohttp"):
            found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` whatever its constructor wants."""
    key = aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None)
    for args in ((key, OSError(1, "x")), ("x",), (None, ()), ()):
        try:
            return cls(*args)
        except (TypeError, AttributeError, ValueError):
            continue
    instance = cls.__new__(cls)
    BaseException.__init__(instance, "x")
    return instance


def test_every_aiohttp_exception_class_is_mapped() -> None:
    """The walked aiohttp classes are exactly the expected and the implemented ones."""
    walked = _walked()
    assert walked == set(EXPECTED), "decide what the new/removed classes mean"
    assert set(AIOHTTP_ERRORS) - {ValueError} == walked


@pytest.mark.parametrize(
    "cls", sorted({**EXPECTED, **EXPECTED_FOREIGN}, key=lambda c: (c.__module__, c.__name__))
)
def test_class_reason_and_ambiguity(cls: type[BaseException]) -> None:
    error = transport_error(_instance(cls), "d")
    assert isinstance(error, ProviderUnavailable)
    expected = EXPECTED.get(cls) or EXPECTED_FOREIGN[cls]
    assert (error.reason, error.ambiguous, error.driver) == (*expected, "d")


def test_a_broken_answer_holding_a_timeout_is_a_timeout() -> None:
    """A body cut short because the provider stopped sending is a timeout, like requests'."""
    broken = ce.ClientPayloadError("cut")
    broken.__cause__ = ce.SocketTimeoutError("t")
    error = transport_error(broken, "d")
    assert (error.reason, error.ambiguous) == ("timeout", True)


def test_cancellation_is_not_a_transport_error() -> None:
    """A cancelled send is not caught at the boundary: it is not the provider's failure."""
    from mailfailover.drivers._aiohttp import CAUGHT

    assert not issubclass(asyncio.CancelledError, CAUGHT)


def test_multipart_is_byte_for_byte_what_requests_builds() -> None:
    """Both transports send the same multipart body for the same HttpRequest.files."""
    import requests

    files = [
        ("from", (None, b"a@example.com")),
        ("attachment", ("r\xe4.pdf", b"%PDF", "application/pdf")),
        ("inline", ("logo.png", b"\x89PNG", "image/png")),
    ]
    body, content_type = multipart(None, files)
    prepared = requests.Request("POST", "http://x/", files=files).prepare()
    boundary = prepared.headers["Content-Type"].split("boundary=")[1]
    ours_boundary = content_type.split("boundary=")[1]
    assert content_type.startswith("multipart/form-data; boundary=")
    assert body.replace(ours_boundary.encode(), boundary.encode()) == prepared.body


# -- against a real server on loopback ------------------------------------------------------


@pytest.fixture
def run() -> Iterator[Any]:
    """One event loop for the test (closed after it)."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


@pytest.mark.parametrize("case", list(BODY_CASES))
def test_body_failures_from_a_real_server(serve: Any, run: Any, case: str) -> None:
    """A failure while reading a 200's body happens after the provider took the request."""
    answer, stall, reason = BODY_CASES[case]
    server = serve(answer, stall=stall)
    driver = _Plain(name="plain", base_url=f"http://127.0.0.1:{server.port}", timeout=0.3)

    async def send() -> ProviderUnavailable:
        try:
            with pytest.raises(ProviderUnavailable) as caught:
                await driver.asend(simple_message())
            return caught.value
        finally:
            await driver.aclose()

    error = run(send())
    assert (error.reason, error.ambiguous) == (reason, True)


def test_a_gzip_body_that_decodes_is_read(serve: Any, run: Any) -> None:
    """The neutral response carries the decoded body (the control for the gzip case)."""
    body = gzip.compress(b'{"id": "m-1"}')
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    server = serve(answer)
    driver = _Plain(name="plain", base_url=f"http://127.0.0.1:{server.port}")

    async def send() -> Receipt:
        try:
            return await driver.asend(simple_message())
        finally:
            await driver.aclose()

    assert run(send()).message_id == "m-1"


def test_a_body_read_timeout_opens_the_breaker_at_once(serve: Any, run: Any) -> None:
    """As with requests: a timeout reading the body cools the driver down at once."""
    server = serve(BODY_CASES["body-read-timeout"][0], stall=True)
    driver = _Plain(name="plain", base_url=f"http://127.0.0.1:{server.port}", timeout=0.3)
    backup = MemoryDriver(name="backup")

    async def send() -> None:
        async with AsyncFailoverMailer([driver, backup], failure_threshold=5,
                                       clock=FakeClock()) as mailer:  # fmt: skip
            result = await mailer.send(simple_message())
            assert result.driver == "backup"
            assert result.attempts[0].error is not None
            assert result.attempts[0].error.reason == "timeout"  # type: ignore[attr-defined]
            assert mailer.health()[0].state is State.COOLING_DOWN

    run(send())


def test_a_session_is_made_per_event_loop_and_closed_cleanly(serve: Any) -> None:
    """A driver used from one asyncio.run and then another gets a new session in the new
    loop; the old one, whose loop is gone, is dropped, and its keep-alive socket closed by
    the transport itself: nothing is left for the garbage collector to warn about (the
    second session's socket, closed by ``close()`` after its loop ended, neither)."""
    ok = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
          b'{"id": "m-1"}')  # fmt: skip
    first, second = serve(ok), serve(ok)
    driver = _Plain(name="plain", base_url=f"http://127.0.0.1:{first.port}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(driver.asend(simple_message()))
        session = driver.async_transport._session
        assert session is not None
        assert sum(len(c) for c in session.connector._conns.values()) == 1  # type: ignore[union-attr]
        driver.settings["base_url"] = f"http://127.0.0.1:{second.port}"
        asyncio.run(driver.asend(simple_message()))
        assert session.closed
        assert driver.async_transport._session is not session
        driver.close()
        assert driver.async_transport._session is None
        del session
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
