"""The driver contract tests (:class:`DriverContractTests`, :class:`HttpDriverContractTests`).

Import them from :mod:`mailfailover.testing`; they live here because they need pytest at
import time, and :mod:`mailfailover.testing` must import on an install without pytest (its
:class:`FakeClock` and message factories are used by application tests and doc examples).
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import pytest

from .driver import Driver, Receipt
from .drivers.memory import MemoryDriver
from .errors import (
    ConfigError,
    DeliveryError,
    MessageRejected,
    ProviderUnavailable,
    UnsupportedFeature,
)
from .message import Message
from .results import SendResult
from .testing import full_message, simple_message

_T = TypeVar("_T")

__all__ = [
    "AIOHTTP_TRANSPORT_FAILURES",
    "TRANSPORT_FAILURES",
    "DriverContractTests",
    "HttpDriverContractTests",
    "connection_refused",
    "connection_reset",
]


class DriverContractTests:
    """The tests every driver must pass; subclass it in a driver's test module.

    Implement :meth:`make_driver` (a driver pointed at your fake provider), and the
    ``arrange_*`` hooks that make the fake provider answer the next send with a success,
    a transient failure or a rejection (``pytest.skip`` where a driver cannot be made to
    reject, like ``console``). :meth:`requests_made` returns how many requests reached the
    fake provider, so the contract can check nothing is sent for an unsupported message.
    List in ``secrets`` every credential value your ``make_driver`` uses.

    Each test runs once per entry of ``colours``: ``"sync"`` calls ``send`` (and uses
    :class:`~mailfailover.FailoverMailer`), ``"async"`` calls ``asend`` in an event loop (and
    uses :class:`~mailfailover.aio.AsyncFailoverMailer`); a driver without its own ``asend``
    is run in a thread by the default one. ``colours`` is ``("sync",)`` here, so a suite
    whose fake provider only fakes a blocking client keeps passing; set
    ``colours = ("sync", "async")`` to check ``asend`` too (:class:`HttpDriverContractTests`
    does). Tests of your own can use :meth:`send` and :meth:`mailer_send` the same way.
    An ``async`` test ends by closing its loop and checking that no transport or socket
    was left open for the garbage collector.
    """

    secrets: ClassVar[tuple[str, ...]] = ()
    colours: ClassVar[tuple[str, ...]] = ("sync",)
    colour: Literal["sync", "async"] = "sync"

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run each test once per colour (pytest calls this for the test class)."""
        if "_colour" in metafunc.fixturenames:
            metafunc.parametrize("_colour", self.colours, indirect=True)

    @pytest.fixture(autouse=True)
    def _colour(self, request: pytest.FixtureRequest) -> Iterator[None]:
        self.colour = getattr(request, "param", "sync")
        if self.colour == "sync":
            yield
            return
        self._loop = asyncio.new_event_loop()
        try:
            yield
        finally:
            self._loop.close()
            del self._loop
        _assert_no_socket_outlived_its_loop()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` in this test's event loop (the ``async`` colour)."""
        return self._loop.run_until_complete(coroutine)

    def send(self, driver: Driver, message: Message) -> Receipt:
        """``driver.send(message)``, or ``driver.asend(message)`` in the ``async`` colour."""
        if self.colour == "async":
            return self.run(driver.asend(message))
        return driver.send(message)

    def mailer_send(self, drivers: Sequence[Driver], message: Message) -> SendResult:
        """Send ``message`` through a failover mailer of ``drivers`` of this colour."""
        if self.colour == "async":
            from .aio import AsyncFailoverMailer

            return self.run(AsyncFailoverMailer(drivers).send(message))
        from .mailer import FailoverMailer

        return FailoverMailer(drivers).send(message)

    def make_driver(self) -> Driver:
        raise NotImplementedError

    def arrange_success(self) -> None:
        raise NotImplementedError

    def arrange_unavailable(self) -> None:
        raise NotImplementedError

    def arrange_rejection(self) -> None:
        raise NotImplementedError

    def requests_made(self) -> int:
        raise NotImplementedError

    @pytest.fixture
    def contract_driver(self) -> Iterator[Driver]:
        driver = self.make_driver()
        try:
            yield driver
        finally:
            if self.colour == "async":
                self.run(driver.aclose())
            else:
                driver.close()

    def _assert_no_secret(self, text: str) -> None:
        for secret in self.secrets:
            assert secret not in text, "a secret leaked into text a user or a log can see"

    def test_contract_success_returns_receipt(self, contract_driver: Driver) -> None:
        """A successful send returns a Receipt naming the configured driver instance."""
        self.arrange_success()
        receipt = self.send(contract_driver, simple_message())
        assert isinstance(receipt, Receipt)
        assert receipt.driver == contract_driver.name
        assert receipt.message_id is None or isinstance(receipt.message_id, str)
        self._assert_no_secret(repr(receipt))

    def test_contract_unavailable_is_named_and_secret_free(self, contract_driver: Driver) -> None:
        """A transient failure raises ProviderUnavailable naming the driver, without secrets."""
        self.arrange_unavailable()
        with pytest.raises(ProviderUnavailable) as caught:
            self.send(contract_driver, simple_message())
        assert caught.value.driver == contract_driver.name
        self._assert_no_secret(str(caught.value))
        self._assert_no_secret(repr(caught.value.response))
        self._assert_no_secret(_formatted(caught.value))

    def test_contract_rejection_is_named(self, contract_driver: Driver) -> None:
        """A provider's rejection raises MessageRejected naming the driver, without secrets."""
        self.arrange_rejection()
        with pytest.raises(MessageRejected) as caught:
            self.send(contract_driver, simple_message())
        assert caught.value.driver == contract_driver.name
        assert caught.value.code == 2
        self._assert_no_secret(str(caught.value))

    def test_contract_only_delivery_errors_escape(self, contract_driver: Driver) -> None:
        """Whatever the outcome, the full-featured message yields a Receipt or a DeliveryError;
        UnsupportedFeature is raised before any request reaches the provider."""
        self.arrange_success()
        before = self.requests_made()
        outcome: Receipt | DeliveryError
        try:
            outcome = self.send(contract_driver, full_message())
        except DeliveryError as exc:
            outcome = exc
        if isinstance(outcome, UnsupportedFeature):
            assert outcome.driver == contract_driver.name
            assert self.requests_made() == before, "a request was sent for an unsupported message"
        else:
            assert isinstance(outcome, Receipt), f"the full message failed: {outcome}"

    def test_contract_repr_hides_secrets(self, contract_driver: Driver) -> None:
        """repr() of a driver names it and never shows a secret."""
        text = repr(contract_driver)
        assert contract_driver.name in text
        self._assert_no_secret(text)

    def test_contract_unknown_setting_is_refused(self, contract_driver: Driver) -> None:
        """A typo in the settings is a ConfigError at construction, without secrets."""
        settings = dict(contract_driver.settings)
        settings["no_such_setting_hopefully"] = "x"
        with pytest.raises(ConfigError) as caught:
            type(contract_driver)(name="typo", **settings)
        assert "no_such_setting_hopefully" in str(caught.value)
        self._assert_no_secret(str(caught.value))

    def test_contract_close_is_idempotent(self, contract_driver: Driver) -> None:
        """close() may be called twice."""
        contract_driver.close()
        contract_driver.close()


def _assert_no_socket_outlived_its_loop() -> None:
    """The ``async`` colour's last check: once the driver is closed and its event loop
    closed, no transport or socket is left for the garbage collector to find (it would
    warn, at a random later moment, in whatever test happens to be running)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    left = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert not left, f"left open when the event loop closed: {left}"


def connection_refused() -> Exception:
    """What ``requests`` raises when nothing listens: the request was never sent."""
    import requests
    import urllib3.exceptions

    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


def connection_reset() -> Exception:
    """What ``requests`` raises when the connection drops after the request went out."""
    import requests
    import urllib3.exceptions

    cause = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "x"))
    return requests.ConnectionError(cause)


def _formatted(exc: BaseException) -> str:
    """The whole traceback a logger would print: causes and contexts included."""
    import traceback

    return "".join(traceback.format_exception(exc))


def body_read_timeout() -> Exception:
    """What ``requests`` raises when the read times out while the body is being read: a
    ``ConnectionError`` (not a ``Timeout``) wrapping urllib3's ``ReadTimeoutError``."""
    import requests
    import urllib3.exceptions

    return requests.ConnectionError(urllib3.exceptions.ReadTimeoutError(None, "/", "timed out"))  # type: ignore[arg-type]


#: Transport failures every HTTP driver must map: (id, exception factory, reason, ambiguous).
TRANSPORT_FAILURES: tuple[tuple[str, Any, str, bool], ...] = (
    ("connect-timeout", lambda: __import__("requests").ConnectTimeout(), "timeout", False),
    ("read-timeout", lambda: __import__("requests").ReadTimeout(), "timeout", True),
    ("read-timeout-in-body", body_read_timeout, "timeout", True),
    ("refused", connection_refused, "connection", False),
    ("reset-after-send", connection_reset, "connection", True),
)


def _aiohttp_refused() -> Exception:
    import aiohttp.client_exceptions as ce
    from aiohttp.client_reqrep import ConnectionKey

    # Its fields vary between aiohttp versions; only host, port and ssl are shown.
    blank: Any = (None,) * len(ConnectionKey._fields)
    key = ConnectionKey(*blank)._replace(host="provider.example", port=443, is_ssl=True)
    return ce.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


def _aiohttp_body_read_timeout() -> Exception:
    import aiohttp

    broken = aiohttp.ClientPayloadError("Response payload is not completed")
    broken.__cause__ = aiohttp.SocketTimeoutError("Timeout on reading data from socket")
    return broken


#: What ``aiohttp`` raises in the same situations (real sockets give these; see
#: tests/test_aiohttp_transport.py).
AIOHTTP_TRANSPORT_FAILURES: Mapping[str, Callable[[], Exception]] = {
    "connect-timeout": lambda: __import__("aiohttp").ConnectionTimeoutError("connect"),
    "read-timeout": lambda: __import__("aiohttp").SocketTimeoutError("read"),
    "read-timeout-in-body": _aiohttp_body_read_timeout,
    "refused": _aiohttp_refused,
    "reset-after-send": lambda: __import__("aiohttp").ClientOSError(104, "Connection reset"),
}


def _canned_response_class() -> Any:
    """``aiohttp.ClientResponse`` as aioresponses (0.7.x) can build it: aiohttp 3.14 added a
    required ``stream_writer`` argument that aioresponses does not pass."""
    import inspect
    import types

    import aiohttp

    if "stream_writer" not in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        return aiohttp.ClientResponse

    class CannedResponse(aiohttp.ClientResponse):
        def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
            super().__init__(method, url, **kwargs)

    return CannedResponse


class _AiohttpMock:
    """The part of ``responses.RequestsMock`` the contract and ``failover_cases`` use
    (``add``, ``post``, ``reset``, ``calls``), on ``aioresponses``: the same canned answers
    reach :meth:`HttpDriver.asend` through the real ``aiohttp`` transport."""

    def __init__(self, mock: Any) -> None:
        self.mock = mock
        self.response_class = _canned_response_class()

    def add(self, method: str, url: str, **answer: Any) -> None:
        kwargs: dict[str, Any] = {"status": answer.pop("status", 200)}
        if "json" in answer:
            kwargs["payload"] = answer.pop("json")
        body = answer.pop("body", None)
        if isinstance(body, BaseException):
            kwargs["exception"] = body
        elif body is not None:
            kwargs["body"] = body
            kwargs["content_type"] = "text/plain"
        if "content_type" in answer:
            kwargs["content_type"] = answer.pop("content_type")
        if "headers" in answer:
            kwargs["headers"] = answer.pop("headers")
        if answer:
            raise TypeError(f"the aiohttp mock does not take {sorted(answer)}")
        self.mock.add(url, method=method, response_class=self.response_class, **kwargs)

    def post(self, url: str, **answer: Any) -> None:
        self.add("POST", url, **answer)

    def reset(self) -> None:
        self.mock.clear()
        self.mock.requests.clear()

    @property
    def calls(self) -> list[Any]:
        return [call for calls in self.mock.requests.values() for call in calls]


class HttpDriverContractTests(DriverContractTests):
    """The contract of a driver built on :class:`~mailfailover.drivers._http.HttpDriver`,
    checked with ``responses`` (which must be installed) for ``send`` and ``aioresponses``
    for ``asend`` (its tests are skipped without it).

    Set ``endpoint`` (the full URL :meth:`make_driver`'s driver posts to) and the three
    canned answers as keyword arguments for ``responses.add`` (``status``, ``json`` or
    ``body``, ``headers``). On top of :class:`DriverContractTests` this checks every transport
    failure (reason and ``ambiguous``), ``Retry-After``, and the failover decision in front
    of a :class:`MemoryDriver`. ``self.http`` is the ``responses`` mock, or in the
    ``async`` colour an object with the same ``add``, ``post``, ``reset`` and ``calls``.
    """

    colours: ClassVar[tuple[str, ...]] = ("sync", "async")
    endpoint: ClassVar[str] = ""
    method: ClassVar[str] = "POST"
    success_response: ClassVar[dict[str, Any]] = {}
    rejection_response: ClassVar[dict[str, Any]] = {}
    unavailable_response: ClassVar[dict[str, Any]] = {"status": 503, "body": "Service Unavailable"}

    http: Any

    @pytest.fixture(autouse=True)
    def _http_mock(self, _colour: None) -> Iterator[None]:
        if self.colour == "async":
            aioresponses = pytest.importorskip("aioresponses")
            with aioresponses.aioresponses() as mock:
                self.http = _AiohttpMock(mock)
                yield
            return
        import responses

        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            self.http = mock
            yield

    def transport_failure(self, case: str) -> Exception:
        """The exception this colour's HTTP client raises for a :data:`TRANSPORT_FAILURES`
        case (``connect-timeout``, ``read-timeout``, ``refused``, ``reset-after-send``)."""
        if self.colour == "async":
            return AIOHTTP_TRANSPORT_FAILURES[case]()
        factories = {name: factory for name, factory, _, _ in TRANSPORT_FAILURES}
        return factories[case]()  # type: ignore[no-any-return]

    def _answer(self, **kwargs: Any) -> None:
        self.http.add(self.method, self.endpoint, **kwargs)

    def arrange_success(self) -> None:
        self._answer(**self.success_response)

    def arrange_unavailable(self) -> None:
        self._answer(**self.unavailable_response)

    def arrange_rejection(self) -> None:
        self._answer(**self.rejection_response)

    def requests_made(self) -> int:
        return len(self.http.calls)

    @pytest.mark.parametrize(
        ("case", "reason", "ambiguous"),
        [(case[0], *case[2:]) for case in TRANSPORT_FAILURES],
        ids=[case[0] for case in TRANSPORT_FAILURES],
    )
    def test_contract_transport_failures(
        self, contract_driver: Driver, case: str, reason: str, ambiguous: bool
    ) -> None:
        """Timeouts, refused and reset connections are unavailable, ambiguous only after send,
        with the HTTP client's original exception chained as the cause."""
        error = self.transport_failure(case)
        self._answer(body=error)
        with pytest.raises(ProviderUnavailable) as caught:
            self.send(contract_driver, simple_message())
        assert caught.value.__cause__ is error
        assert (caught.value.reason, caught.value.ambiguous) == (reason, ambiguous)
        assert caught.value.status is None
        assert caught.value.driver == contract_driver.name
        self._assert_no_secret(_formatted(caught.value))

    def test_contract_retry_after_is_read(self, contract_driver: Driver) -> None:
        """A 429 with Retry-After: 120 is unavailable and asks for 120 seconds."""
        self._answer(status=429, json={"message": "Too many requests"},
                     headers={"Retry-After": "120"})  # fmt: skip
        with pytest.raises(ProviderUnavailable) as caught:
            self.send(contract_driver, simple_message())
        assert caught.value.reason == "rate_limited"
        assert caught.value.retry_after == 120

    def failover_cases(self) -> Mapping[str, Callable[[Any], object]]:
        """The provider's own answers that must fail over (auth and account errors, a 2xx
        that is not a success...), each a function arranging the ``responses`` mock."""
        return {}

    @pytest.mark.parametrize(
        "fault",
        ["server", "rate_limited", "timeout", "body-timeout", "refused", "connect-timeout",
         "reset"],
    )  # fmt: skip
    def test_contract_fails_over_to_a_memory_driver(
        self, contract_driver: Driver, fault: str
    ) -> None:
        """Each transient failure in front of a memory driver delivers through it."""
        if fault == "server":
            self.arrange_unavailable()
        elif fault == "rate_limited":
            self._answer(status=429, json={"message": "slow down"}, headers={"Retry-After": "5"})
        elif fault == "timeout":
            self._answer(body=self.transport_failure("read-timeout"))
        elif fault == "body-timeout":
            self._answer(body=self.transport_failure("read-timeout-in-body"))
        elif fault == "connect-timeout":
            self._answer(body=self.transport_failure("connect-timeout"))
        elif fault == "reset":
            self._answer(body=self.transport_failure("reset-after-send"))
        else:
            self._answer(body=self.transport_failure("refused"))
        backup = MemoryDriver(name="backup")
        result = self.mailer_send([contract_driver, backup], simple_message())
        assert result.driver == "backup"
        assert [a.outcome for a in result.attempts] == ["unavailable", "sent"]
        assert len(backup.outbox) == 1

    def test_contract_provider_failures_fail_over(self, contract_driver: Driver) -> None:
        """Each of :meth:`failover_cases` in front of a memory driver delivers through it."""
        for label, arrange in self.failover_cases().items():
            self.http.reset()
            arrange(self.http)
            backup = MemoryDriver(name="backup")
            result = self.mailer_send([contract_driver, backup], simple_message())
            outcomes = [a.outcome for a in result.attempts]
            assert outcomes == ["unavailable", "sent"], f"{label}: {outcomes}"
            assert len(backup.outbox) == 1, label
            assert len(self.http.calls) == 1, label

    def test_contract_rejection_is_not_failed_over(self, contract_driver: Driver) -> None:
        """A rejection in front of a memory driver stops there: the backup gets nothing."""
        self.arrange_rejection()
        backup = MemoryDriver(name="backup")
        with pytest.raises(MessageRejected):
            self.mailer_send([contract_driver, backup], simple_message())
        assert backup.outbox == []
        assert backup.calls == 0
