"""``SMTPDriver.asend_batch`` on aiosmtplib: the blocking batch's own session (pipelined
per RFC 2920 where offered, lock-step otherwise) driven by the asyncio runner, against
real aiosmtpd servers on 127.0.0.1 (fixtures in tests/drivers/conftest.py; the
PIPELINING helpers and :class:`Wire` in smtp_support.py, described in
tests/drivers/test_smtp_batch.py). Every test drives its own event loop.

Sections: what arrives, pipelining on the wire, per-message refusals, a connection that
ends mid-batch (drop, 421, timeout, cancellation), the pool, TLS and AUTH, the mailer.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from smtp_support import (
    GOOD_PASSWORD,
    GOOD_USER,
    Wire,
    delivered,
    numbered,
    offer_pipelining,
    parsed,
    plain_driver,
    run,
    stable,
)

from mailfailover import Attachment, MemoryDriver, SendResult
from mailfailover.aio import AsyncFailoverMailer
from mailfailover.driver import Receipt
from mailfailover.drivers._smtp_async_batch import _AsyncSession, _Replies
from mailfailover.drivers.smtp import SMTPDriver
from mailfailover.errors import MessageRejected, ProviderUnavailable, UnsupportedFeature
from mailfailover.message import Message
from mailfailover.testing import full_message, simple_message

LoopbackController = Any  # the fixtures' types live in tests/drivers/conftest.py
ServerFactory = Any
T = TypeVar("T")


def idle(driver: SMTPDriver) -> int:
    """How many connections this loop's pool holds idle."""
    pool = driver._async()._pool
    return 0 if pool is None else len(pool.idle)


def abatch(driver: SMTPDriver, messages: list[Message]) -> tuple[list[Receipt | Exception], int]:
    """``asend_batch`` in a new loop: each message's answer, and the idle connections after."""

    async def scenario() -> tuple[list[Receipt | Exception], int]:
        out = await driver.asend_batch(messages)
        return out, idle(driver)

    return run(driver, scenario)


def never_blocking(driver: SMTPDriver) -> None:
    """Make the blocking paths fail loudly: under asyncio nothing may use them."""

    def blocked(*args: Any) -> Any:
        raise AssertionError("a blocking path was used under asyncio")

    driver.send_batch = blocked  # type: ignore[method-assign]
    driver.send = blocked  # type: ignore[method-assign]


# -- what arrives ---------------------------------------------------------------------------


def test_async_batch_arrives_exactly_as_the_blocking_batch_sends_it(
    smtp_server_factory: ServerFactory, server: LoopbackController, wire: Wire, mode: str
) -> None:
    """Each message arrives with the envelope and the bytes the blocking ``send_batch``
    sends, over one connection, no RSET between good transactions, which then is pooled."""
    messages = [full_message(), *numbered(3), full_message(subject="second full")]
    driver = plain_driver(server)
    never_blocking(driver)
    out, pooled = abatch(driver, messages)

    assert delivered(out) == ["Q00001", "Q00002", "Q00003", "Q00004", "Q00005"]
    assert out[0] == Receipt(
        driver="relay",
        message_id="Q00001",
        response={"code": 250, "reply": "2.0.0 Ok: queued as Q00001", "refused": {}},
    )
    assert (server.handler.connections, wire.rsets, pooled) == (1, 0, 1)
    reference = smtp_server_factory()
    if mode == "pipelining":
        offer_pipelining(reference)
    with plain_driver(reference) as blocking:
        assert len(delivered(blocking.send_batch(messages))) == 5
    got, expected = wire.messages, reference.handler.messages
    assert [m.mail_from for m in got] == [m.mail_from for m in expected]
    assert [m.rcpt_tos for m in got] == [m.rcpt_tos for m in expected]
    assert [m.mail_options for m in got] == [m.mail_options for m in expected]
    # byte for byte, but for the MIME boundaries (random) and the Date (the clock)
    assert [stable(m.content) for m in got] == [stable(m.content) for m in expected]
    assert got[0].rcpt_tos[-2:] == ["bcc1@example.com", "bcc2@example.com"]
    assert b".leading dot" in got[1].content  # dot-stuffed on the wire, undone by the server


def test_large_streamed_message_in_the_middle_of_a_batch_arrives_whole(
    server: LoopbackController, wire: Wire
) -> None:
    """A message over the in-memory limit (planned and generated in a worker thread,
    written 64 KB at a time) between two small ones: all three arrive, the large one
    byte-exact."""
    blob = bytes(range(256)) * 6000  # 1.5 MB, base64 on the wire
    big = simple_message(subject="big", attachments=[Attachment("blob.bin", blob)])
    driver = plain_driver(server)
    plan = driver.plan
    planned_in: dict[str, int] = {}

    def recorded(message: Message, has_extn: Any) -> Any:
        planned_in[str(message.subject)] = threading.get_ident()
        return plan(message, has_extn)

    driver.plan = recorded  # type: ignore[method-assign]
    out, pooled = abatch(driver, [*numbered(1), big, *numbered(1)])
    here = threading.get_ident()  # asyncio.run's loop runs in this thread
    assert planned_in["message 1"] == here and planned_in["big"] != here
    assert delivered(out) == ["Q00001", "Q00002", "Q00003"]
    [attachment] = [p for p in parsed(wire.messages[1].content).walk() if p.get_filename()]
    assert attachment.get_content() == blob
    assert wire.subjects() == ["message 1", "big", "message 1"]
    assert pooled == 1


def test_a_pipelined_group_of_a_thousand_recipients_does_not_deadlock(
    server: LoopbackController, wire: Wire
) -> None:
    """Groups of ~100 KB of commands written before any reply is read: every recipient
    of every message arrives (a deadlock would end in the driver's timeout instead)."""
    local = "x" * 52
    crowds = [
        simple_message(subject=f"crowd {n}",
                       to=[f"{local}.{n}.{i}@mail.recipients-of-a-crowd.example.com"
                           for i in range(Message.max_recipients)])
        for n in range(3)
    ]  # fmt: skip
    out, _ = abatch(plain_driver(server), crowds)
    assert delivered(out) == ["Q00001", "Q00002", "Q00003"]
    assert [len(m.rcpt_tos) for m in wire.messages] == [1000, 1000, 1000]


# -- pipelining on the wire -------------------------------------------------------------------


def test_pipelined_commands_arrive_in_one_group(
    server: LoopbackController, wire: Wire, mode: str
) -> None:
    """With PIPELINING, MAIL FROM + every RCPT TO + DATA arrive together, and the previous
    message's end of data already carries the next message's group; without it, each
    command waits for the previous reply."""
    messages = numbered(3)
    messages[1] = simple_message(to=["a@example.com"], cc=["b@example.com"], subject="two")
    out, _ = abatch(plain_driver(server), messages)
    assert delivered(out) == ["Q00001", "Q00002", "Q00003"]
    if mode == "lock-step":
        assert wire.at_mail == [b"", b"", b""]
        assert wire.at_end_of_data == [b"", b"", b""]
        return
    assert wire.at_mail[0] == b"RCPT TO:<rcpt1@example.com>\r\nDATA\r\n"
    assert wire.at_mail[1] == b"RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    mail_2 = wire.at_end_of_data[0]  # the next group, in the same write as the end mark
    assert mail_2.startswith(b"MAIL FROM:<sender@example.com> SIZE=")
    assert mail_2.endswith(b"\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    assert wire.at_end_of_data[1].endswith(b"RCPT TO:<rcpt3@example.com>\r\nDATA\r\n")
    assert wire.at_end_of_data[2] == b""  # the last message: nothing follows


# -- per-message refusals ---------------------------------------------------------------------


def test_refusals_are_each_messages_own_and_the_others_are_delivered(
    server: LoopbackController, wire: Wire, mode: str
) -> None:
    """Refused recipients, every recipient refused, a refused sender, 5xx at the end of
    data, a message the server cannot carry (SMTPUTF8), a 4xx: each gets what ``asend``
    gives; the others are delivered over the same connection, which is pooled after."""
    handler = server.handler
    handler.rcpt_replies = {
        "gone@example.com": "550 5.1.1 no such user",
        "busy@example.com": "450 4.2.0 mailbox busy",
    }
    wire.mail_by_sender["blocked@example.com"] = "553 5.1.8 Sender address rejected"
    wire.data_by_rcpt["spam@example.com"] = "554 5.7.1 Spam detected"
    messages = [
        simple_message(to=["ok1@example.com", "gone@example.com"], subject="partly"),
        simple_message(to=["gone@example.com"], subject="nobody"),
        simple_message(sender="blocked@example.com", to=["ok3@example.com"], subject="blocked"),
        simple_message(to=["zoë@example.com"], subject="needs smtputf8"),
        simple_message(to=["spam@example.com"], subject="spam"),
        simple_message(to=["busy@example.com"], subject="busy"),
        simple_message(to=["ok4@example.com"], subject="last"),
    ]
    out, pooled = abatch(plain_driver(server), messages)

    partly, nobody, blocked, utf8, spam, busy, last = out
    assert isinstance(partly, Receipt) and partly.refused_recipients == ("gone@example.com",)
    assert type(nobody) is MessageRejected and nobody.status == 550
    assert type(blocked) is MessageRejected and blocked.detail.startswith("MAIL FROM: 553")
    assert type(utf8) is UnsupportedFeature and utf8.driver == "relay"
    assert type(spam) is MessageRejected and spam.detail == "end of DATA: 554 5.7.1 Spam detected"
    assert isinstance(busy, ProviderUnavailable) and (busy.status, busy.ambiguous) == (450, False)
    assert isinstance(last, Receipt)
    assert wire.subjects() == ["partly", "last"]
    assert (handler.connections, wire.rsets, pooled) == (1, 3, 1)


# -- a connection that ends mid-batch -----------------------------------------------------------


def test_connection_dropped_mid_batch_is_ambiguous_only_for_the_message_it_had_whole(
    server: LoopbackController, wire: Wire, mode: str
) -> None:
    """The server takes message 3 whole and hangs up before answering: 1 and 2 keep their
    receipts, 3 (its end mark handed over) is ambiguous, 4 and 5 (none of their content
    sent) go once more over a fresh connection and are delivered."""
    wire.drop_at_data = 3
    driver = plain_driver(server)
    out, pooled = abatch(driver, numbered(5))
    first, second, third, fourth, fifth = out
    assert delivered([first, second]) == ["Q00001", "Q00002"]
    assert isinstance(third, ProviderUnavailable)
    assert (third.reason, third.ambiguous) == ("connection", True)
    assert delivered([fourth, fifth]) == ["Q00003", "Q00004"]
    assert wire.subjects() == ["message 1", "message 2", "message 4", "message 5"]
    assert pooled == 1  # the dropped connection aborted, the fresh one pooled
    assert server.handler.connections == 2


def test_421_mid_batch_ends_the_session_without_ambiguity(
    server: LoopbackController, wire: Wire
) -> None:
    """421 at message 3's MAIL FROM: 3 fails over with the 421, 4 and 5 are not sent."""
    messages = numbered(5)
    messages[2] = simple_message(sender="closing@example.com", subject="three")
    wire.mail_by_sender["closing@example.com"] = "421 4.3.2 Service shutting down"
    out, pooled = abatch(plain_driver(server), messages)
    assert delivered(out[:2]) == ["Q00001", "Q00002"]
    for error in out[2:]:
        assert isinstance(error, ProviderUnavailable)
        assert (error.status, error.ambiguous) == (421, False)
    assert isinstance(out[2], ProviderUnavailable)
    assert out[2].detail == "MAIL FROM: 421 4.3.2 Service shutting down"
    assert wire.subjects() == ["message 1", "message 2"]
    assert pooled == 0


def test_timeout_mid_batch_is_ambiguous_only_for_the_message_waiting_for_its_reply(
    server: LoopbackController, wire: Wire
) -> None:
    """No final reply to message 2 within the timeout: 1 delivered, 2 ambiguous (timeout),
    3 and 4 (nothing of them sent) delivered over a fresh connection (a timeout of 1 s, so
    that the fresh connection's own steps have room on a loaded machine)."""
    wire.stall_at_data = 2
    try:
        out, pooled = abatch(plain_driver(server, timeout=1.0), numbered(4))
    finally:
        wire.release.set()
    assert delivered(out[:1]) == ["Q00001"]
    assert isinstance(out[1], ProviderUnavailable)
    assert (out[1].reason, out[1].ambiguous) == ("timeout", True)
    assert len(delivered(out[2:])) == 2
    assert pooled == 1
    assert server.handler.connections == 2


def test_a_cancelled_batch_aborts_its_connection(server: LoopbackController, wire: Wire) -> None:
    """Cancelled while waiting for message 2's final reply: CancelledError, the connection
    is aborted at once and never pooled; message 3 is not sent; the next batch opens a
    fresh connection."""
    wire.stall_at_data = 2
    driver = plain_driver(server)
    side = driver._async()
    checkout = side._checkout
    used: list[Any] = []

    async def recorded(phase: Any) -> Any:
        connection = await checkout(phase)
        used.append(connection)
        return connection

    side._checkout = recorded  # type: ignore[method-assign]

    async def scenario() -> tuple[int, list[Receipt | Exception]]:
        task = asyncio.ensure_future(driver.asend_batch(numbered(3)))
        for _ in range(500):  # at most 5 s: until the server holds message 2
            if wire.datas >= 2:
                break
            await asyncio.sleep(0.01)
        assert wire.datas == 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [connection] = used
        assert not connection.smtp.is_connected  # aborted, not left open
        pooled = idle(driver)
        wire.release.set()
        return pooled, await driver.asend_batch(numbered(1))

    try:
        pooled, after = run(driver, scenario)
    finally:
        wire.release.set()
    assert pooled == 0
    assert len(delivered(after)) == 1
    assert server.handler.connections == 2
    assert "message 3" not in wire.subjects()


# -- the pool -----------------------------------------------------------------------------


def test_a_pooled_connection_closed_before_the_batch_is_retried_once(
    server: LoopbackController, wire: Wire
) -> None:
    """421 at the first MAIL FROM over a reused connection (nothing sent): one fresh
    connection carries the whole batch."""
    driver = plain_driver(server)

    async def scenario() -> list[Receipt | Exception]:
        await driver.asend(simple_message())
        server.handler.mail_replies_once.append("421 4.4.2 idle too long, closing")
        return await driver.asend_batch(numbered(3))

    out = run(driver, scenario)
    assert delivered(out) == ["Q00002", "Q00003", "Q00004"]
    assert server.handler.connections == 2


def test_after_a_batch_aiosmtplib_has_its_connection_back(
    server: LoopbackController, wire: Wire
) -> None:
    """The batch's reply reader gives the transport back to aiosmtplib: the pooled
    connection then carries an ``asend`` (RSET on checkout) and another batch."""
    driver = plain_driver(server)

    async def scenario() -> list[Receipt | Exception]:
        first = await driver.asend_batch(numbered(2))
        alone = await driver.asend(simple_message(subject="alone"))
        return [*first, alone, *await driver.asend_batch(numbered(2))]

    out = run(driver, scenario)
    assert len(delivered(out)) == 5
    assert server.handler.connections == 1
    assert wire.rsets == 2
    assert wire.subjects() == ["message 1", "message 2", "alone", "message 1", "message 2"]


# -- TLS and AUTH ---------------------------------------------------------------------------


def test_a_second_early_end_leaves_the_rest_to_fail_over(
    server: LoopbackController, wire: Wire
) -> None:
    """One fresh connection per batch, not more (as the blocking runner)."""
    wire.drop_at_data = 2
    wire.drop_again_at_data = 3  # the first message of the retried batch
    out, pooled = abatch(plain_driver(server), numbered(4))
    assert delivered(out[:1]) == ["Q00001"]
    assert isinstance(out[1], ProviderUnavailable) and out[1].ambiguous is True
    assert isinstance(out[2], ProviderUnavailable) and out[2].ambiguous is True
    assert isinstance(out[3], ProviderUnavailable) and out[3].ambiguous is False
    assert pooled == 0 and server.handler.connections == 2


def test_starttls_and_auth_batch_is_pipelined_and_keeps_the_password_out_of_errors(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext, ca_file: str
) -> None:
    """Over STARTTLS + AUTH (PIPELINING offered after the upgrade) the batch is pipelined
    and delivers; a drop mid-batch gives errors without the password."""
    server = smtp_server_factory(
        credentials=(GOOD_USER, GOOD_PASSWORD), tls_context=server_tls_context,
        require_starttls=True,
    )  # fmt: skip
    offer_pipelining(server)
    wire = Wire(server, pipelined_group=True)
    wire.drop_at_data = 3
    driver = SMTPDriver(
        name="tls", host="127.0.0.1", port=server.port, ca_file=ca_file,
        username=GOOD_USER, password=GOOD_PASSWORD, timeout=5,
    )  # fmt: skip
    out, _ = abatch(driver, numbered(4))
    assert delivered(out) == ["Q00001", "Q00002", "Q00003"]
    assert wire.at_mail[1].startswith(b"RCPT TO:<rcpt2@example.com>\r\nDATA\r\n")
    error = out[2]
    assert isinstance(error, ProviderUnavailable) and error.ambiguous is True
    assert GOOD_PASSWORD not in f"{error} {error!r} {error.detail} {error.__cause__!r}"
    assert wire.subjects() == ["message 1", "message 2", "message 4"]


# -- the mailer -------------------------------------------------------------------------------


def test_send_many_fails_over_exactly_the_messages_a_drop_cost(
    server: LoopbackController, wire: Wire, mode: str
) -> None:
    """``AsyncFailoverMailer.send_many`` with an SMTP primary and a memory backup: the
    server drops the connection at message 3's end of data. 3 (flagged ambiguous) goes
    through the backup, the others through SMTP (4-6 over a fresh connection, with no
    failed attempt); each is delivered once."""
    wire.drop_at_data = 3
    primary, backup = plain_driver(server), MemoryDriver(name="backup")
    never_blocking(primary)

    async def scenario() -> list[Any]:
        async with AsyncFailoverMailer([primary, backup]) as mailer:
            return list(await mailer.send_many(numbered(6), concurrency=1))

    results = asyncio.run(scenario())
    assert all(isinstance(r, SendResult) for r in results)
    drivers = [r.driver for r in results]
    assert drivers == ["relay", "relay", "backup", "relay", "relay", "relay"]
    assert [(a.driver, a.outcome) for a in results[2].attempts] == [
        ("relay", "unavailable"), ("backup", "sent")
    ]  # fmt: skip
    assert results[2].attempts[0].to_dict()["ambiguous"] is True
    assert [(a.driver, a.outcome) for a in results[3].attempts] == [("relay", "sent")]
    via_smtp = wire.subjects()
    via_backup = [str(m.subject) for m in backup.outbox]
    assert sorted(via_smtp + via_backup) == sorted(f"message {i}" for i in range(1, 7))
    assert server.handler.connections == 2


# -- what counts as sent ------------------------------------------------------------------------


@pytest.mark.parametrize(("end_mark_at", "ambiguous"), [(100, True), (4_000_101, False)])
def test_a_mark_handed_to_the_transport_counts_as_sent_though_not_drained(
    end_mark_at: int, ambiguous: bool
) -> None:
    """Bytes handed to the transport may have left: a message whose end-of-data mark was
    handed over before the write timed out waiting to drain is ambiguous, one whose mark
    was not handed over is not; the message after it (its envelope in the same write)
    never is. A real socket pair whose peer does not read (no SMTP server stalls on cue)."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    driver = SMTPDriver(name="relay", host="127.0.0.1", port=2525, security="none", timeout=0.2)
    out: list[Receipt | Exception | None] = [None, None]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        smtp = SimpleNamespace(transport=transport, protocol=protocol,
                               supports_extension=lambda name: name == "pipelining")  # fmt: skip
        session = _AsyncSession(driver, SimpleNamespace(smtp=smtp), numbered(2), out, [0, 1])
        replies = session.replies = _Replies(transport, protocol)
        transport.set_protocol(replies)
        try:
            carried, current = session._prepare(0), session._prepare(1)
            assert carried is not None and current is not None
            session.carry, session.current = carried, current
            session.outbox.add(b"x" * 100)  # the carried message's content and end mark
            carried.end_at = end_mark_at
            session.outbox.add(b"y" * 4_000_000)  # the next group, more than the socket takes
            with pytest.raises(TimeoutError) as caught:
                await session._flush(replies)
            assert session.outbox.sent == 4_000_100  # all handed over, not all drained
            session._lost(caught.value)
        finally:
            transport.abort()

    try:
        asyncio.run(scenario())
    finally:
        peer.close()
    first, second = out
    assert isinstance(first, ProviderUnavailable) and isinstance(second, ProviderUnavailable)
    assert (first.reason, first.ambiguous) == ("timeout", ambiguous)
    assert (second.reason, second.ambiguous) == ("timeout", False)
