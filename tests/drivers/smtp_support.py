"""What the SMTP driver's test modules share (the servers are fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any, TypeVar

from mailfailover.driver import Receipt
from mailfailover.drivers.smtp import SMTPDriver
from mailfailover.message import Message
from mailfailover.testing import simple_message

__all__ = [
    "GOOD_PASSWORD",
    "GOOD_USER",
    "GROUP_WAIT",
    "MODES",
    "Wire",
    "body",
    "delivered",
    "numbered",
    "offer_pipelining",
    "parsed",
    "plain_driver",
    "run",
    "stable",
    "unread",
]

LoopbackController = Any  # the fixtures' types live in tests/drivers/conftest.py

#: The batch tests run against a server that offers PIPELINING and one that does not.
MODES = ["pipelining", "lock-step"]

T = TypeVar("T")

#: The credentials the AUTH test servers accept.
GOOD_USER = "mailer"
GOOD_PASSWORD = "s3cret-Pa55word"


def run(driver: SMTPDriver, scenario: Callable[[], Awaitable[T]]) -> T:
    """Run ``scenario`` in a new event loop and close the driver's async side in it."""

    async def main() -> T:
        try:
            return await scenario()
        finally:
            await driver.aclose()

    return asyncio.run(main())


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


# -- batches: pipelining on the wire (tests/drivers/test_smtp_batch.py and its async twin)

#: How long the server waits for the rest of a pipelined group before recording what it
#: has (a pipelining client sent it in one write; this only bounds a broken client).
GROUP_WAIT = 2.0


def offer_pipelining(server: LoopbackController) -> None:
    """Make ``server`` advertise PIPELINING in its EHLO answer."""

    async def handle_EHLO(
        smtp: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to a handle_EHLO hook
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    server.handler.handle_EHLO = handle_EHLO


def unread(smtp: Any) -> bytes:
    """What the client sent that the server has not read yet (its stream's buffer)."""
    return bytes(smtp._reader._buffer)


class Wire:
    """Wraps a server's handler: records RSETs, what was already sent at each MAIL FROM and
    each end of data, and answers MAIL FROM / DATA for chosen messages as told."""

    def __init__(self, server: LoopbackController, *, pipelined_group: bool) -> None:
        self.handler = handler = server.handler
        self.wait_for_group = pipelined_group
        self.rsets = 0
        self.at_mail: list[bytes] = []
        self.at_end_of_data: list[bytes] = []
        self.mail_by_sender: dict[str, str] = {}  # sender address -> reply to its MAIL FROM
        self.data_by_rcpt: dict[str, str] = {}  # a recipient -> reply at its end of data
        self.drop_at_data: int | None = None  # cut the connection at this end of data (1-based)
        self.drop_again_at_data: int | None = None  # and at this one (a second connection's)
        self.stall_at_data: int | None = None  # no answer at this end of data until released
        self.release = threading.Event()
        self.datas = 0
        mail, data = handler.handle_MAIL, handler.handle_DATA

        async def handle_RSET(smtp: Any, session: Any, envelope: Any) -> str:
            self.rsets += 1
            return "250 OK"

        async def handle_MAIL(
            smtp: Any, session: Any, envelope: Any, address: str, options: list[str]
        ) -> str:
            if self.wait_for_group:  # bounded: a lock-step client would never send DATA now
                for _ in range(int(GROUP_WAIT / 0.01)):
                    if b"DATA\r\n" in unread(smtp):
                        break
                    await asyncio.sleep(0.01)
            self.at_mail.append(unread(smtp))
            if address in self.mail_by_sender:
                return self.mail_by_sender[address]
            return str(await mail(smtp, session, envelope, address, options))

        async def handle_DATA(smtp: Any, session: Any, envelope: Any) -> str:
            self.datas += 1
            self.at_end_of_data.append(unread(smtp))
            if self.datas in (self.drop_at_data, self.drop_again_at_data):
                smtp.transport.abort()  # the message arrived whole; no reply ever leaves
                return "250 OK"
            if self.datas == self.stall_at_data:
                for _ in range(1000):  # at most 10 s
                    if self.release.is_set():
                        break
                    await asyncio.sleep(0.01)
            for rcpt, reply in self.data_by_rcpt.items():
                if rcpt in envelope.rcpt_tos:
                    return reply
            return str(await data(smtp, session, envelope))

        handler.handle_RSET = handle_RSET
        handler.handle_MAIL = handle_MAIL
        handler.handle_DATA = handle_DATA

    @property
    def messages(self) -> list[Any]:
        return list(self.handler.messages)

    def subjects(self) -> list[str]:
        return [str(parsed(m.content)["Subject"]) for m in self.messages]


def stable(content: bytes) -> bytes:
    """``content`` with its random MIME boundaries and its Date header made constant."""
    content = re.sub(rb"={15}\d+==", b"=BOUNDARY=", content)
    return re.sub(rb"\r\nDate: [^\r]+\r\n", b"\r\nDate: -\r\n", content)


def numbered(n: int, **overrides: Any) -> list[Message]:
    return [
        simple_message(to=[f"rcpt{i}@example.com"], subject=f"message {i}",
                       text=f"Body of message {i}.\n.leading dot\n", **overrides)
        for i in range(1, n + 1)
    ]  # fmt: skip


def delivered(out: list[Receipt | Exception]) -> list[str]:
    return [r.message_id for r in out if isinstance(r, Receipt)]
