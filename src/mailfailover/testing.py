"""Helpers for tests: :class:`MemoryDriver`, message factories and :class:`DriverContractTests`.

Users put a :class:`MemoryDriver` (or ``module: memory`` in a config) in their own tests and
assert on its ``outbox``. Driver authors subclass :class:`DriverContractTests` in their test
module and implement its four hooks; the inherited tests then check the contract every
driver must keep (two outcomes, named errors, no secrets in ``repr`` or error text, settings
validated, ``UnsupportedFeature`` before any request).
"""

from __future__ import annotations

from collections.abc import Iterator
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
from .message import Attachment, Message

__all__ = [
    "DriverContractTests",
    "FakeClock",
    "MemoryDriver",
    "full_message",
    "simple_message",
]

#: The smallest valid PDF and PNG files, for attachments in tests.
PDF_BYTES = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PNG_BYTES = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


class FakeClock:
    """A monotonic clock moved by hand: pass it as ``FailoverMailer(clock=...)`` to test
    cooldowns without sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def simple_message(**overrides: Any) -> Message:
    """A minimal valid message (one recipient, a text body)."""
    fields: dict[str, Any] = {
        "sender": "Sender <sender@example.com>",
        "to": ["rcpt@example.com"],
        "subject": "Hello",
        "text": "Hello there.",
    }
    fields.update(overrides)
    return Message(**fields)


def full_message(**overrides: Any) -> Message:
    """A message using every feature: two recipients in each of to/cc/bcc, reply-to, text and
    html, a custom header, a PDF attachment, an inline PNG, two tags and metadata, with
    non-ASCII names, subject, body and filename."""
    fields: dict[str, Any] = {
        "sender": "Zoë Sender <sender@example.com>",
        "to": ["Ann Tö <ann@example.com>", "bob@example.com"],
        "cc": ["Cäcilie <cc1@example.com>", "cc2@example.com"],
        "bcc": ["bcc1@example.com", "Björn <bcc2@example.com>"],
        "reply_to": ["Replies <reply@example.com>"],
        "subject": "Grüße — your receipt",
        "text": "Hallo, grüße!\nSee the PDF.",
        "html": '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">',
        "headers": {"X-Campaign": "spring-2026"},
        "attachments": [
            Attachment("Rechnung-ä.pdf", PDF_BYTES, "application/pdf"),
            Attachment("logo.png", PNG_BYTES, "image/png", inline=True, content_id="logo.png"),
        ],
        "tags": ["receipts", "billing"],
        "metadata": {"user_id": "42", "order": "A-17"},
        "message_id": "<full-message-1@example.com>",
    }
    fields.update(overrides)
    return Message(**fields)


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
