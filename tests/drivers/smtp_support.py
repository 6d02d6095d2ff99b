"""What the SMTP driver's test modules share (the servers are fixtures in conftest.py)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

from mailfailover.drivers.smtp import SMTPDriver

__all__ = ["GOOD_PASSWORD", "GOOD_USER", "body", "parsed", "plain_driver"]

#: The credentials the AUTH test servers accept.
GOOD_USER = "mailer"
GOOD_PASSWORD = "s3cret-Pa55word"


def plain_driver(server: Any, **settings: Any) -> SMTPDriver:
    """An ``smtp`` driver for a loopback test server without TLS (``timeout`` 5 s)."""
    settings.setdefault("timeout", 5)
    return SMTPDriver(name="relay", host="127.0.0.1", port=server.port, security="none", **settings)


def parsed(content: bytes) -> EmailMessage:
    """The message a server received, parsed."""
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(part: Any) -> str:
    """A text part's decoded content with the wire's CRLF line ends made plain."""
    return str(part.get_content()).replace("\r\n", "\n")
