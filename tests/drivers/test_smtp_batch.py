"""``SMTPDriver.send_batch`` and ``send_many`` over SMTP: many messages over one pooled
connection, pipelined (RFC 2920) where the server offers PIPELINING, against real aiosmtpd
servers on 127.0.0.1 (fixtures in tests/drivers/conftest.py).

aiosmtpd 1.4 reads commands line by line from its buffer, so pipelined commands work, but
it does not advertise PIPELINING: :func:`offer_pipelining` adds it through the handler's
``handle_EHLO`` hook. The server also records, when it takes up each MAIL FROM and each
end of data, the bytes the client had already sent and it had not yet read: a pipelining
client has sent the whole group by then; a lock-step one has sent nothing more.

Sections: what arrives, pipelining on the wire, per-message refusals, a connection that
ends mid-batch, the pool, through ``send_many``, settings and edge cases (the last test
drives a write that fails midway on a real socket pair whose peer does not read: no SMTP
server makes that happen on cue).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from smtp_support import (
    GOOD_PASSWORD,
    GOOD_USER,
    Wire,
    delivered,
    numbered,
    offer_pipelining,
    parsed,
    stable,
)

from mailfailover import FailoverMailer, SendResult
from mailfailover.driver import Receipt, deadline_scope
from mailfailover.drivers._smtp_batch import _Session
from mailfailover.drivers.smtp import SMTPDriver, _Connection
from mailfailover.errors import (
    ConfigError,
    MessageRejected,
    ProviderUnavailable,
    UnsupportedFeature,
)
from mailfailover.message import Attachment, Message
from mailfailover.testing import MemoryDriver, full_message, simple_message

LoopbackController = Any  # the fixtures' types live in tests/drivers/conftest.py
ServerFactory = Callable[..., Any]

USER, PASSWORD = GOOD_USER, GOOD_PASSWORD


def relay(server: LoopbackController, **settings: Any) -> SMTPDriver:
    settings.setdefault("timeout", 5)
    return SMTPDriver(name="relay", host="127.0.0.1", port=server.port, security="none", **settings)


@pytest.fixture
def driver(server: LoopbackController) -> Iterator[SMTPDriver]:
    with relay(server) as d:
        yield d


# -- what arrives ---------------------------------------------------------------------------


def test_batch_arrives_over_one_connection_as_send_would_send_it(
    smtp_server_factory: ServerFactory,
    server: LoopbackController,
    wire: Wire,
    driver: SMTPDriver,
    mode: str,
) -> None:
    """Each message arrives with its own envelope and exactly the bytes send() sends, in
    order, over one connection, with no RSET between good transactions."""
    messages = [full_message(), *numbered(3), full_message(subject="second full")]
    out = driver.send_batch(messages)

    assert delivered(out) == ["Q00001", "Q00002", "Q00003", "Q00004", "Q00005"]
    assert out[0] == Receipt(
        driver="relay",
        message_id="Q00001",
        response={"code": 250, "reply": "2.0.0 Ok: queued as Q00001", "refused": {}},
    )
    assert server.handler.connections == 1
    assert wire.rsets == 0
    reference = smtp_server_factory()
    if mode == "pipelining":
        offer_pipelining(reference)
    with relay(reference) as one_by_one:
        for message in messages:
            one_by_one.send(message)
    got, expected = wire.messages, reference.handler.messages
    assert [m.mail_from for m in got] == [m.mail_from for m in expected]
    assert [m.rcpt_tos for m in got] == [m.rcpt_tos for m in expected]
    assert [m.mail_options for m in got] == [m.mail_options for m in expected]
    # byte for byte, but for the MIME boundaries (random) and the Date (the clock)
    assert [stable(m.content) for m in got] == [stable(m.content) for m in expected]
    assert got[0].rcpt_tos[-2:] == ["bcc1@example.com", "bcc2@example.com"]
    assert b".leading dot" in got[1].content  # dot-stuffed on the wire, undone by the server
    assert driver._pool._idle != []  # clean: back in the pool


def test_large_streamed_message_in_the_middle_of_a_batch_arrives_whole(
    wire: Wire, driver: SMTPDriver
) -> None:
    """A message over the in-memory limit (generated straight to the socket, 64 KB at a
    time) between two small ones: all three arrive, the large one byte-exact."""
    blob = bytes(range(256)) * 6000  # 1.5 MB, base64 on the wire
    big = simple_message(subject="big", attachments=[Attachment("blob.bin", blob)])
    out = driver.send_batch([*numbered(1), big, *numbered(1)])
    assert delivered(out) == ["Q00001", "Q00002", "Q00003"]
    [attachment] = [p for p in parsed(wire.messages[1].content).walk() if p.get_filename()]
    assert attachment.get_content() == blob
    assert wire.subjects() == ["message 1", "big", "message 1"]


def test_a_pipelined_group_of_a_thousand_recipients_does_not_deadlock(
    wire: Wire, driver: SMTPDriver
) -> None:
    """Three messages at the recipient cap (1,000 each, ~100-byte addresses): each group
    of commands is ~100 KB written before any reply is read, and the replies (~15 KB a
    group) must fit where the client has not read them yet. Every recipient of every
    message arrives (a deadlock would end in the driver's timeout instead)."""
    local = "x" * 52  # with ".n.iii": at most 62 bytes, under the 64 allowed
    crowds = [
        simple_message(subject=f"crowd {n}",
                       to=[f"{local}.{n}.{i}@mail.recipients-of-a-crowd.example.com"
                           for i in range(Message.max_recipients)])
        for n in range(3)
    ]  # fmt: skip
    out = driver.send_batch(crowds)
    assert delivered(out) == ["Q00001", "Q00002", "Q00003"]
    assert wire.subjects() == ["crowd 0", "crowd 1", "crowd 2"]
    assert [len(m.rcpt_tos) for m in wire.messages] == [1000, 1000, 1000]


def test_starttls_and_auth_batch_is_pipelined_and_keeps_the_password_out_of_errors(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext, ca_file: str
) -> None:
    """Over STARTTLS + AUTH (PIPELINING offered after the upgrade) the batch delivers; a
    drop mid-batch gives an error without the password, and the message never sent goes
    over a fresh connection (STARTTLS and AUTH again)."""
    server = smtp_server_factory(
        credentials=(USER, PASSWORD), tls_context=server_tls_context, require_starttls=True
    )
    offer_pipelining(server)
    wire = Wire(server, pipelined_group=True)
    wire.drop_at_data = 3
    with SMTPDriver(
        name="tls", host="127.0.0.1", port=server.port, ca_file=ca_file,
        username=USER, password=PASSWORD, timeout=5,
    ) as driver:  # fmt: skip
        out = driver.send_batch(numbered(4))
    assert delivered(out) == ["Q00001", "Q00002", "Q00003"]
    assert wire.at_mail[1].startswith(b"RCPT TO:<rcpt2@example.com>\r\nDATA\r\n")
    error = out[2]
    assert isinstance(error, ProviderUnavailable) and error.ambiguous is True
    assert PASSWORD not in f"{error} {error!r} {error.detail} {error.__cause__!r}"
    assert wire.subjects() == ["message 1", "message 2", "message 4"]


# -- pipelining on the wire -------------------------------------------------------------------


def test_pipelined_commands_arrive_in_one_group(
    server: LoopbackController, wire: Wire, driver: SMTPDriver, mode: str
) -> None:
    """With PIPELINING, MAIL FROM + every RCPT TO + DATA are one write, and the previous
    message's end of data already carries the next message's group; without it, each
    command waits for the previous reply."""
    messages = numbered(3)
    messages[1] = simple_message(to=["a@example.com"], cc=["b@example.com"], subject="two")
    out = driver.send_batch(messages)
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
    assert wire.at_end_of_data[1].startswith(b"MAIL FROM:<sender@example.com> SIZE=")
    assert wire.at_end_of_data[1].endswith(b"RCPT TO:<rcpt3@example.com>\r\nDATA\r\n")
    assert wire.at_end_of_data[2] == b""  # the last message: nothing follows


# -- per-message refusals ---------------------------------------------------------------------


def test_refusals_are_each_messages_own_and_the_others_are_delivered(
    server: LoopbackController, wire: Wire, driver: SMTPDriver, mode: str
) -> None:
    """In one batch: some recipients refused (delivered to the rest), every recipient
    refused (rejected, no content sent), a refused sender, 5xx at the end of data, a
    message the server cannot carry (SMTPUTF8): each gets what send() gives; the others
    are delivered over the same connection."""
    handler = server.handler
    handler.rcpt_replies = {
        "gone@example.com": "550 5.1.1 no such user",
        "busy@example.com": "450 4.2.0 mailbox busy",
    }
    wire.mail_by_sender["blocked@example.com"] = (
        "553 5.1.8 Sender address rejected: Domain not found"
    )
    wire.data_by_rcpt["spam@example.com"] = "554 5.7.1 Spam detected"
    messages = [
        simple_message(to=["ok1@example.com", "gone@example.com"], subject="partly"),
        simple_message(to=["gone@example.com"], subject="nobody"),
        simple_message(to=["ok2@example.com"], subject="after nobody"),
        simple_message(sender="blocked@example.com", to=["ok3@example.com"], subject="blocked"),
        simple_message(to=["zoë@example.com"], subject="needs smtputf8"),
        simple_message(to=["spam@example.com"], subject="spam"),
        simple_message(to=["busy@example.com"], subject="busy"),
        simple_message(to=["ok4@example.com"], subject="last"),
    ]
    out = driver.send_batch(messages)

    partly, nobody, after, blocked, utf8, spam, busy, last = out
    assert isinstance(partly, Receipt) and partly.refused_recipients == ("gone@example.com",)
    assert partly.response is not None
    assert partly.response["refused"] == {
        "gone@example.com": {"code": 550, "reply": "5.1.1 no such user"}
    }
    assert type(nobody) is MessageRejected and nobody.status == 550
    assert "every recipient was refused" in nobody.detail
    assert isinstance(after, Receipt)
    assert type(blocked) is MessageRejected and blocked.detail.startswith("MAIL FROM: 553")
    assert type(utf8) is UnsupportedFeature and utf8.driver == "relay"
    assert type(spam) is MessageRejected and spam.detail == "end of DATA: 554 5.7.1 Spam detected"
    assert isinstance(busy, ProviderUnavailable) and busy.status == 450
    assert busy.ambiguous is False
    assert isinstance(last, Receipt)
    assert wire.subjects() == ["partly", "after nobody", "last"]
    assert handler.messages[0].rcpt_tos == ["ok1@example.com"]
    assert handler.connections == 1
    # RSET only after the transactions that failed before their data (nobody, blocked, busy)
    assert wire.rsets == 3
    assert driver._pool._idle != []


def test_data_accepted_although_every_recipient_was_refused_gets_a_lone_dot(
    server: LoopbackController, wire: Wire, driver: SMTPDriver, mode: str
) -> None:
    """RFC 2920 §3.1: a server that answers the pipelined DATA with 354 though no RCPT was
    accepted gets a single dot, never the content; the message is refused as send()
    refuses it and the next one goes through."""
    if mode == "lock-step":
        pytest.skip("without pipelining DATA is never sent when every recipient is refused")
    handler = server.handler
    handle_rcpt = handler.handle_RCPT

    async def accepting_anyway(smtp: Any, session: Any, envelope: Any, address: str,
                               options: list[str]) -> str:  # fmt: skip
        reply = str(await handle_rcpt(smtp, session, envelope, address, options))
        if address == "gone@example.com":
            envelope.rcpt_tos.append(address)  # so aiosmtpd answers DATA with 354
        return reply

    handler.handle_RCPT = accepting_anyway
    handler.rcpt_replies = {"gone@example.com": "550 5.1.1 no such user"}
    out = driver.send_batch([simple_message(to=["gone@example.com"]), *numbered(1)])
    assert type(out[0]) is MessageRejected and out[0].status == 550
    assert isinstance(out[1], Receipt)
    assert next(m.content for m in handler.messages) == b""  # the lone dot: no content
    assert wire.subjects()[1:] == ["message 1"]


# -- a connection that ends mid-batch -----------------------------------------------------------


def test_connection_dropped_mid_batch_is_ambiguous_only_for_the_message_it_had_whole(
    server: LoopbackController, wire: Wire, driver: SMTPDriver, mode: str
) -> None:
    """The server takes message 3 whole and hangs up before answering: 1 and 2 keep their
    receipts, 3 is ambiguous (never sent again), and 4 (whose envelope shared 3's write
    when pipelined) and 5, none of whose content went out, go once more over a fresh
    connection and are delivered: they neither fail over nor count against the driver."""
    wire.drop_at_data = 3
    out = driver.send_batch(numbered(5))
    first, second, third, fourth, fifth = out
    assert delivered([first, second]) == ["Q00001", "Q00002"]
    assert isinstance(third, ProviderUnavailable)
    assert (third.reason, third.ambiguous) == ("connection", True)
    assert third.detail.endswith("after the whole message was sent, waiting for the server's "
                                 "final reply")  # fmt: skip
    if mode == "pipelining":  # its MAIL FROM went out with 3's end of data, unanswered
        assert wire.at_end_of_data[2].endswith(b"RCPT TO:<rcpt4@example.com>\r\nDATA\r\n")
    assert delivered([fourth, fifth]) == ["Q00003", "Q00004"]
    assert wire.subjects() == ["message 1", "message 2", "message 4", "message 5"]
    assert server.handler.connections == 2  # the dropped one, and one fresh one
    assert len(driver._pool._idle) == 1  # the fresh one ended clean: pooled


def test_421_mid_batch_ends_the_session_without_ambiguity(
    server: LoopbackController, wire: Wire, driver: SMTPDriver
) -> None:
    """421 at message 3's MAIL FROM: 3 fails over with the 421, 4 and 5 are not sent."""
    messages = numbered(5)
    messages[2] = simple_message(sender="closing@example.com", subject="three")
    wire.mail_by_sender["closing@example.com"] = "421 4.3.2 Service shutting down"
    out = driver.send_batch(messages)
    assert delivered(out[:2]) == ["Q00001", "Q00002"]
    for error in out[2:]:
        assert isinstance(error, ProviderUnavailable)
        assert (error.status, error.ambiguous) == (421, False)
    assert isinstance(out[2], ProviderUnavailable)
    assert out[2].detail == "MAIL FROM: 421 4.3.2 Service shutting down"
    assert wire.subjects() == ["message 1", "message 2"]
    assert driver._pool._idle == []


def test_timeout_mid_batch_is_ambiguous_only_for_the_message_waiting_for_its_reply(
    server: LoopbackController, wire: Wire, mode: str
) -> None:
    """No final reply to message 2 within the timeout: 1 delivered, 2 ambiguous (timeout),
    3 and 4 (nothing of them sent) delivered over a fresh connection (a timeout of 1 s, so
    that the fresh connection's own steps have room on a loaded machine)."""
    wire.stall_at_data = 2
    try:
        with relay(server, timeout=1.0) as driver:
            out = driver.send_batch(numbered(4))
    finally:
        wire.release.set()
    assert delivered(out[:1]) == ["Q00001"]
    assert isinstance(out[1], ProviderUnavailable)
    assert (out[1].reason, out[1].ambiguous) == ("timeout", True)
    assert len(delivered(out[2:])) == 2
    assert server.handler.connections == 2


def test_a_second_early_end_leaves_the_rest_to_fail_over(
    server: LoopbackController, wire: Wire, driver: SMTPDriver
) -> None:
    """One fresh connection per batch, not more: a server that hangs up again at the
    retried batch's first end of data leaves that message ambiguous and the ones after it
    to fail over, unambiguous, after exactly two connections."""
    wire.drop_at_data = 2
    wire.drop_again_at_data = 3  # the first message of the retried batch
    out = driver.send_batch(numbered(4))
    assert delivered(out[:1]) == ["Q00001"]
    assert isinstance(out[1], ProviderUnavailable) and out[1].ambiguous is True
    assert isinstance(out[2], ProviderUnavailable) and out[2].ambiguous is True
    assert isinstance(out[3], ProviderUnavailable) and out[3].ambiguous is False
    assert out[3].reason == "connection"
    assert wire.subjects() == ["message 1"]
    assert server.handler.connections == 2


def test_the_mailers_deadline_bounds_the_whole_batch(
    server: LoopbackController, wire: Wire, driver: SMTPDriver
) -> None:
    """With a 10 s timeout, a deadline of 0.5 s for the batch still cuts the stalled reply."""
    wire.stall_at_data = 1
    try:
        with deadline_scope(0.5):
            out = driver.send_batch(numbered(2))
    finally:
        wire.release.set()
    assert isinstance(out[0], ProviderUnavailable)
    assert (out[0].reason, out[0].ambiguous) == ("timeout", True)
    assert isinstance(out[1], ProviderUnavailable) and out[1].ambiguous is False


# -- the pool -----------------------------------------------------------------------------


def test_a_pooled_connection_closed_before_the_batch_is_retried_once(
    server: LoopbackController, wire: Wire, driver: SMTPDriver
) -> None:
    """421 at the first MAIL FROM over a reused connection (nothing sent): one fresh
    connection carries the whole batch."""
    driver.send(simple_message())
    server.handler.mail_replies_once.append("421 4.4.2 idle too long, closing")
    out = driver.send_batch(numbered(3))
    assert delivered(out) == ["Q00002", "Q00003", "Q00004"]
    assert server.handler.connections == 2


def test_batch_size_caps_the_messages_per_connection_checkout(
    server: LoopbackController, wire: Wire
) -> None:
    """batch_size: 2 sends five messages in three checkouts of the one pooled connection
    (an RSET on each reuse, none between the messages of a checkout)."""
    with relay(server, batch_size=2) as driver:
        out = driver.send_batch(numbered(5))
    assert len(delivered(out)) == 5
    assert server.handler.connections == 1
    assert wire.rsets == 2


# -- through send_many ------------------------------------------------------------------------


def test_send_many_fails_over_exactly_the_messages_a_drop_cost(
    server: LoopbackController, wire: Wire, mode: str
) -> None:
    """send_many with an SMTP primary and a memory backup: the server drops the connection
    at message 3's end of data. Every message gets one result; 3 (flagged ambiguous) goes
    through the backup, every other one through SMTP (4-6 over a fresh connection, with no
    failed attempt); each delivered once, and SMTP's health counts one failure."""
    wire.drop_at_data = 3
    backup = MemoryDriver(name="backup")
    messages = numbered(6)
    with FailoverMailer([relay(server), backup]) as mailer:
        results = mailer.send_many(messages, workers=1)
        failures = mailer.health()[0].consecutive_failures
    assert all(isinstance(r, SendResult) for r in results)
    drivers = [r.driver for r in results if isinstance(r, SendResult)]
    assert drivers == ["relay", "relay", "backup", "relay", "relay", "relay"]
    third = results[2]
    assert isinstance(third, SendResult)
    assert [(a.driver, a.outcome) for a in third.attempts] == [
        ("relay", "unavailable"), ("backup", "sent")
    ]  # fmt: skip
    assert third.attempts[0].to_dict()["ambiguous"] is True
    fourth = results[3]
    assert isinstance(fourth, SendResult)
    assert [(a.driver, a.outcome) for a in fourth.attempts] == [("relay", "sent")]
    assert failures <= 1
    via_smtp = wire.subjects()
    via_backup = [str(m.subject) for m in backup.outbox]
    assert sorted(via_smtp + via_backup) == sorted(f"message {i}" for i in range(1, 7))


def test_send_many_sends_hundreds_through_few_connections(
    server: LoopbackController, wire: Wire
) -> None:
    """250 messages, 4 workers, the default batch_size (25): ten checkouts over at most four
    connections (the pool's size), each message delivered once, an RSET only when a
    checkout reuses a connection, none inside a batch."""
    messages = numbered(250)
    with FailoverMailer([relay(server), MemoryDriver(name="backup")]) as mailer:
        results = mailer.send_many(messages)
    assert [r.driver for r in results if isinstance(r, SendResult)] == ["relay"] * 250
    assert sorted(wire.subjects()) == sorted(f"message {i}" for i in range(1, 251))
    connections = server.handler.connections
    assert 1 <= connections <= 4
    assert wire.rsets == 10 - connections


def test_send_many_with_batch_size_1_sends_one_by_one_as_before(
    server: LoopbackController, wire: Wire, mode: str
) -> None:
    """batch_size: 1 turns batching off: send() per message, an RSET before each reuse,
    never a pipelined group."""
    wire.wait_for_group = False
    with FailoverMailer([relay(server, batch_size=1)]) as mailer:
        results = mailer.send_many(numbered(4), workers=1)
    assert [r.driver for r in results if isinstance(r, SendResult)] == ["relay"] * 4
    assert server.handler.connections == 1
    assert wire.rsets == 3
    if mode == "pipelining":  # each MAIL FROM waited for nothing more: the group wait ran out
        assert all(b"DATA" not in buffered for buffered in wire.at_mail)
    assert wire.at_end_of_data == [b"", b"", b"", b""]


# -- settings, nothing to send, nothing listening ---------------------------------------------


def test_batch_size_is_a_bounded_setting() -> None:
    """Default 25; 0 and absurd sizes are configuration errors, not silent clamps."""
    assert SMTPDriver(name="x", host="mail.example.com").batch_size == 25
    for bad in (0, 10_001):
        with pytest.raises(ConfigError, match="batch_size"):
            SMTPDriver(name="x", host="mail.example.com", batch_size=bad)


def test_a_batch_the_driver_refuses_whole_opens_no_connection(server: LoopbackController) -> None:
    """Messages refused before any I/O (tags with tags_and_metadata: refuse) get their own
    UnsupportedFeature and no connection is opened."""
    with relay(server, tags_and_metadata="refuse") as driver:
        out = driver.send_batch([simple_message(tags=["a"]), simple_message(metadata={"k": "v"})])
    assert [type(e) for e in out] == [UnsupportedFeature, UnsupportedFeature]
    assert server.handler.connections == 0


def test_nothing_listening_fails_each_message_over_unambiguously(closed_port: int) -> None:
    """No server: each message gets its own unambiguous connection error (nothing was sent)."""
    with SMTPDriver(name="down", host="127.0.0.1", port=closed_port, security="none") as driver:
        out = driver.send_batch(numbered(3))
    assert len({id(e) for e in out}) == 3
    for error in out:
        assert isinstance(error, ProviderUnavailable)
        assert (error.reason, error.ambiguous, error.driver) == ("connection", False, "down")


@pytest.mark.parametrize(("end_mark_at", "ambiguous"), [(100, True), (10**8, False)])
def test_a_write_that_fails_midway_is_ambiguous_only_past_the_end_mark(
    end_mark_at: int, ambiguous: bool
) -> None:
    """The bytes the kernel took decide: a message whose end-of-data mark was taken before a
    write timed out is ambiguous, one whose mark was not is not; the message after it
    (its envelope in the same write) never is. A real socket whose peer does not read."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    smtp = smtplib.SMTP()
    smtp.sock = ours
    driver = SMTPDriver(name="relay", host="127.0.0.1", port=2525, security="none", timeout=0.2)
    connection = _Connection(smtp)
    out: list[Receipt | Exception | None] = [None, None]
    session = _Session(driver, connection, numbered(2), out, [0, 1])
    try:
        carried, current = session._prepare(0), session._prepare(1)
        assert carried is not None and current is not None
        session.carry, session.current = carried, current
        session.outbox.add(b"x" * 100)  # the carried message's content and end mark
        carried.end_at = end_mark_at
        with pytest.raises(OSError) as caught:
            session.outbox.add(b"y" * 4_000_000)  # the next group, more than the socket takes
        assert 100 < session.outbox.sent < 4_000_100
        session._lost(caught.value)
    finally:
        ours.close()
        peer.close()
    first, second = out
    assert isinstance(first, ProviderUnavailable) and isinstance(second, ProviderUnavailable)
    assert (first.reason, first.ambiguous) == ("timeout", ambiguous)
    assert (second.reason, second.ambiguous) == ("timeout", False)
