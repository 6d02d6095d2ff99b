"""The driver contract tests (:class:`DriverContractTests`, :class:`HttpDriverContractTests`).

Import them from :mod:`mailfailover.testing`; they live here because they need pytest at
import time, and :mod:`mailfailover.testing` must import on an install without pytest (its
:class:`FakeClock` and message factories are used by application tests and doc examples).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

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
from .testing import full_message, simple_message

__all__ = [
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
    """

    secrets: ClassVar[tuple[str, ...]] = ()

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
            driver.close()

    def _assert_no_secret(self, text: str) -> None:
        for secret in self.secrets:
            assert secret not in text, "a secret leaked into text a user or a log can see"

    def test_contract_success_returns_receipt(self, contract_driver: Driver) -> None:
        """A successful send returns a Receipt naming the configured driver instance."""
        self.arrange_success()
        receipt = contract_driver.send(simple_message())
        assert isinstance(receipt, Receipt)
        assert receipt.driver == contract_driver.name
        assert receipt.message_id is None or isinstance(receipt.message_id, str)
        self._assert_no_secret(repr(receipt))

    def test_contract_unavailable_is_named_and_secret_free(self, contract_driver: Driver) -> None:
        """A transient failure raises ProviderUnavailable naming the driver, without secrets."""
        self.arrange_unavailable()
        with pytest.raises(ProviderUnavailable) as caught:
            contract_driver.send(simple_message())
        assert caught.value.driver == contract_driver.name
        self._assert_no_secret(str(caught.value))
        self._assert_no_secret(repr(caught.value.response))
        self._assert_no_secret(_formatted(caught.value))

    def test_contract_rejection_is_named(self, contract_driver: Driver) -> None:
        """A provider's rejection raises MessageRejected naming the driver, without secrets."""
        self.arrange_rejection()
        with pytest.raises(MessageRejected) as caught:
            contract_driver.send(simple_message())
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
            outcome = contract_driver.send(full_message())
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


class HttpDriverContractTests(DriverContractTests):
    """The contract of a driver built on :class:`~mailfailover.drivers._http.HttpDriver`,
    checked with ``responses`` (which must be installed).

    Set ``endpoint`` (the full URL :meth:`make_driver`'s driver posts to) and the three
    canned answers as keyword arguments for ``responses.add`` (``status``, ``json`` or
    ``body``, ``headers``). On top of :class:`DriverContractTests` this checks every transport
    failure (reason and ``ambiguous``), ``Retry-After``, and the failover decision in front
    of a :class:`MemoryDriver`.
    """

    endpoint: ClassVar[str] = ""
    method: ClassVar[str] = "POST"
    success_response: ClassVar[dict[str, Any]] = {}
    rejection_response: ClassVar[dict[str, Any]] = {}
    unavailable_response: ClassVar[dict[str, Any]] = {"status": 503, "body": "Service Unavailable"}

    @pytest.fixture(autouse=True)
    def _http_mock(self) -> Iterator[None]:
        import responses

        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            self.http = mock
            yield

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
        ("make_error", "reason", "ambiguous"),
        [case[1:] for case in TRANSPORT_FAILURES],
        ids=[case[0] for case in TRANSPORT_FAILURES],
    )
    def test_contract_transport_failures(
        self, contract_driver: Driver, make_error: Any, reason: str, ambiguous: bool
    ) -> None:
        """Timeouts, refused and reset connections are unavailable, ambiguous only after send,
        with the original ``requests`` exception chained as the cause."""
        error = make_error()
        self._answer(body=error)
        with pytest.raises(ProviderUnavailable) as caught:
            contract_driver.send(simple_message())
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
            contract_driver.send(simple_message())
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
        from .mailer import FailoverMailer

        if fault == "server":
            self.arrange_unavailable()
        elif fault == "rate_limited":
            self._answer(status=429, json={"message": "slow down"}, headers={"Retry-After": "5"})
        elif fault == "timeout":
            self._answer(body=TRANSPORT_FAILURES[1][1]())
        elif fault == "body-timeout":
            self._answer(body=body_read_timeout())
        elif fault == "connect-timeout":
            self._answer(body=TRANSPORT_FAILURES[0][1]())
        elif fault == "reset":
            self._answer(body=connection_reset())
        else:
            self._answer(body=connection_refused())
        backup = MemoryDriver(name="backup")
        result = FailoverMailer([contract_driver, backup]).send(simple_message())
        assert result.driver == "backup"
        assert [a.outcome for a in result.attempts] == ["unavailable", "sent"]
        assert len(backup.outbox) == 1

    def test_contract_provider_failures_fail_over(self, contract_driver: Driver) -> None:
        """Each of :meth:`failover_cases` in front of a memory driver delivers through it."""
        from .mailer import FailoverMailer

        for label, arrange in self.failover_cases().items():
            self.http.reset()
            arrange(self.http)
            backup = MemoryDriver(name="backup")
            result = FailoverMailer([contract_driver, backup]).send(simple_message())
            outcomes = [a.outcome for a in result.attempts]
            assert outcomes == ["unavailable", "sent"], f"{label}: {outcomes}"
            assert len(backup.outbox) == 1, label
            assert len(self.http.calls) == 1, label

    def test_contract_rejection_is_not_failed_over(self, contract_driver: Driver) -> None:
        """A rejection in front of a memory driver stops there: the backup gets nothing."""
        from .mailer import FailoverMailer

        self.arrange_rejection()
        backup = MemoryDriver(name="backup")
        with pytest.raises(MessageRejected):
            FailoverMailer([contract_driver, backup]).send(simple_message())
        assert backup.outbox == []
        assert backup.calls == 0
