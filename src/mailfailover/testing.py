"""Helpers for tests: :class:`MemoryDriver`, message factories and :class:`DriverContractTests`.

Users put a :class:`MemoryDriver` (or ``module: memory`` in a config) in their own tests and
assert on its ``outbox``. Driver authors subclass :class:`DriverContractTests` in their test
module and implement its four hooks; the inherited tests then check the contract every
driver must keep (two outcomes, named errors, no secrets in ``repr`` or error text, settings
validated, ``UnsupportedFeature`` before any request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .drivers.memory import MemoryDriver
from .message import Attachment, Message

if TYPE_CHECKING:
    from ._contract_tests import (
        DriverContractTests,
        HttpDriverContractTests,
        connection_refused,
        connection_reset,
    )

__all__ = [
    "DriverContractTests",
    "FakeClock",
    "HttpDriverContractTests",
    "MemoryDriver",
    "connection_refused",
    "connection_reset",
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


#: Loaded on first use: they need pytest, the rest of this module does not.
_CONTRACT_NAMES = frozenset(
    {
        "TRANSPORT_FAILURES",
        "DriverContractTests",
        "HttpDriverContractTests",
        "connection_refused",
        "connection_reset",
    }
)


def __getattr__(name: str) -> Any:
    if name in _CONTRACT_NAMES:
        from . import _contract_tests

        return getattr(_contract_tests, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
