"""The ``smtp`` driver against real SMTP servers (aiosmtpd) on 127.0.0.1.

Sections: payload and envelope, security modes, AUTH, replies and their classification,
timeouts and dropped connections, connection reuse, the contract suite.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from smtp_support import GOOD_PASSWORD, GOOD_USER, body, parsed, plain_driver

from mailfailover import FailoverMailer
from mailfailover.driver import Driver, Receipt
from mailfailover.drivers.smtp import SMTPDriver
from mailfailover.errors import (
    ConfigError,
    MessageRejected,
    ProviderUnavailable,
    UnsupportedFeature,
)
from mailfailover.testing import (
    PDF_BYTES,
    PNG_BYTES,
    DriverContractTests,
    MemoryDriver,
    full_message,
    simple_message,
)

# The fixtures live in tests/drivers/conftest.py; these names are only for annotations.
LoopbackController = Any
Recorder = Any
ServerFactory = Any


@pytest.fixture
def driver(smtp_server: LoopbackController) -> Iterator[SMTPDriver]:
    with plain_driver(smtp_server) as d:
        yield d


def recorder(server: LoopbackController) -> Recorder:
    return server.handler


# -- payload and envelope -----------------------------------------------------------------


def test_full_message_arrives_whole_with_bcc_only_in_the_envelope(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """Envelope, headers, both bodies and both attachments arrive exactly; Bcc only in RCPT."""
    receipt = driver.send(full_message())

    [got] = recorder(smtp_server).messages
    assert got.mail_from == "sender@example.com"
    assert got.rcpt_tos == [
        "ann@example.com", "bob@example.com", "cc1@example.com", "cc2@example.com",
        "bcc1@example.com", "bcc2@example.com",
    ]  # fmt: skip
    mime = parsed(got.content)
    assert "Bcc" not in mime
    assert b"bcc1@example.com" not in got.content
    assert b"bcc2@example.com" not in got.content
    assert str(mime["From"]) == "Zoë Sender <sender@example.com>"
    assert str(mime["To"]) == "Ann Tö <ann@example.com>, bob@example.com"
    assert str(mime["Cc"]) == "Cäcilie <cc1@example.com>, cc2@example.com"
    assert str(mime["Reply-To"]) == "Replies <reply@example.com>"
    assert str(mime["Subject"]) == "Grüße — your receipt"
    assert mime["Message-ID"] == "<full-message-1@example.com>"
    assert mime["X-Campaign"] == "spring-2026"
    text = mime.get_body(preferencelist=("plain",))
    html = mime.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert body(text) == "Hallo, grüße!\nSee the PDF.\n"
    assert body(html) == '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">\n'
    parts = {part.get_filename(): part for part in mime.walk() if part.get_filename()}
    assert parts["Rechnung-ä.pdf"].get_content() == PDF_BYTES
    assert parts["Rechnung-ä.pdf"].get_content_type() == "application/pdf"
    assert parts["logo.png"].get_content() == PNG_BYTES
    assert parts["logo.png"]["Content-ID"] == "<logo.png>"
    assert receipt == Receipt(
        driver="relay",
        message_id="Q00001",
        response={"code": 250, "reply": "2.0.0 Ok: queued as Q00001", "refused": {}},
    )


def test_eight_bit_body_is_announced_with_body_8bitmime(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """A body sent as 8bit goes with BODY=8BITMIME (aiosmtpd offers 8BITMIME) and a SIZE."""
    driver.send(simple_message(text="grüße " * 5))
    [got] = recorder(smtp_server).messages
    assert "BODY=8BITMIME" in got.mail_options
    assert body(parsed(got.content)).startswith("grüße grüße")


def test_ascii_message_is_sent_without_8bitmime(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """A pure-ASCII message does not claim BODY=8BITMIME."""
    driver.send(simple_message())
    [got] = recorder(smtp_server).messages
    assert not any(o.startswith("BODY=") for o in got.mail_options)


def test_leading_dots_survive_the_transfer(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """Lines starting with '.' (and a lone '.') are dot-stuffed and arrive unchanged."""
    text = "first\n.\n.hidden line\n..two dots\nlast"
    driver.send(simple_message(text=text))
    [got] = recorder(smtp_server).messages
    assert body(parsed(got.content)) == text + "\n"


def test_receipt_falls_back_to_message_id_without_a_queue_id(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """A final '250 OK' without a queue id gives the message's Message-ID as the receipt id."""
    recorder(smtp_server).queue_ids = False
    message = simple_message()
    assert driver.send(message).message_id == message.message_id


def test_idn_domains_go_in_the_envelope_as_punycode(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """Without SMTPUTF8, internationalised domains are sent in their IDNA (xn--) form."""
    driver.send(simple_message(sender="ann@bücher.example", to=["bob@münchen.example"]))
    [got] = recorder(smtp_server).messages
    assert got.mail_from == "ann@xn--bcher-kva.example"
    assert got.rcpt_tos == ["bob@xn--mnchen-3ya.example"]
    assert "SMTPUTF8" not in got.mail_options


def test_non_ascii_local_part_uses_smtputf8_when_offered(
    smtp_server_factory: ServerFactory,
) -> None:
    """An address with a non-ASCII local part is sent with SMTPUTF8 and UTF-8 headers."""
    server = smtp_server_factory(enable_SMTPUTF8=True)
    with plain_driver(server) as driver:
        driver.send(simple_message(sender="jörg@example.com", to=["zoë@bücher.example"]))
    [got] = recorder(server).messages
    assert got.mail_from == "jörg@example.com"
    assert got.rcpt_tos == ["zoë@bücher.example"]
    assert "SMTPUTF8" in got.mail_options
    assert str(parsed(got.content)["To"]) == "zoë@bücher.example"


def test_non_ascii_local_part_without_smtputf8_is_unsupported(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """A server without SMTPUTF8 gets no MAIL FROM for a message that needs it."""
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(simple_message(to=["zoë@example.com"]))
    assert caught.value.driver == "relay"
    assert recorder(smtp_server).messages == []
    driver.send(simple_message())  # the connection is still good for the next message
    assert len(recorder(smtp_server).messages) == 1


# -- security modes -----------------------------------------------------------------------


def test_starttls_with_the_test_ca_delivers(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext, ca_file: str
) -> None:
    """security=starttls upgrades the session (the server requires it) and delivers."""
    server = smtp_server_factory(tls_context=server_tls_context, require_starttls=True)
    with SMTPDriver(name="tls", host="127.0.0.1", port=server.port, ca_file=ca_file) as driver:
        driver.send(simple_message())
    assert len(recorder(server).messages) == 1


def test_implicit_tls_with_the_test_ca_delivers(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext, ca_file: str
) -> None:
    """security=ssl speaks TLS from the first byte and delivers."""
    server = smtp_server_factory(ssl_context=server_tls_context)
    with SMTPDriver(
        name="tls", host="127.0.0.1", port=server.port, security="ssl", ca_file=ca_file
    ) as driver:
        driver.send(simple_message())
    assert len(recorder(server).messages) == 1


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_untrusted_certificate_is_refused_by_default(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext, security: str
) -> None:
    """With verify on (the default) a certificate from an unknown CA fails over, unambiguous."""
    key = "tls_context" if security == "starttls" else "ssl_context"
    server = smtp_server_factory(**{key: server_tls_context})
    with (
        SMTPDriver(
            name="tls", host="127.0.0.1", port=server.port, security=security, timeout=5
        ) as driver,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        driver.send(simple_message())
    assert caught.value.reason == "connection"
    assert caught.value.ambiguous is False
    assert "certificate" in str(caught.value)
    assert recorder(server).messages == []


def test_verify_false_accepts_an_untrusted_certificate(
    smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext
) -> None:
    """verify: false skips the certificate check (for a relay with a self-signed cert)."""
    server = smtp_server_factory(tls_context=server_tls_context)
    with SMTPDriver(name="tls", host="127.0.0.1", port=server.port, verify=False) as driver:
        driver.send(simple_message())
    assert len(recorder(server).messages) == 1


def test_starttls_missing_on_the_server_is_not_downgraded(
    smtp_server: LoopbackController,
) -> None:
    """security=starttls against a server without STARTTLS fails over rather than send plain."""
    with (
        SMTPDriver(name="tls", host="127.0.0.1", port=smtp_server.port, timeout=5) as driver,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        driver.send(simple_message())
    assert "STARTTLS" in str(caught.value)
    assert recorder(smtp_server).messages == []


def test_default_ports_follow_security() -> None:
    """Without a port: 587 for starttls, 465 for ssl, 25 for none."""
    ports = {
        security: SMTPDriver(name="x", host="mail.example.com", security=security).settings["port"]
        for security in ("starttls", "ssl", "none")
    }
    assert ports == {"starttls": 587, "ssl": 465, "none": 25}


def test_password_over_plaintext_is_a_config_error() -> None:
    """username/password with security none is refused at construction, without the password."""
    with pytest.raises(ConfigError) as caught:
        SMTPDriver(name="x", host="h.example", security="none", username="u", password="pw-123")
    assert "allow_insecure_auth" in str(caught.value)
    assert "pw-123" not in str(caught.value)


def test_username_without_password_is_a_config_error() -> None:
    """A half-configured login is caught at construction."""
    with pytest.raises(ConfigError):
        SMTPDriver(name="x", host="h.example", username="u")


def test_ca_file_that_cannot_be_read_is_a_config_error(tmp_path: Any) -> None:
    """A wrong ca_file path is a ConfigError at construction, not a failover at send."""
    with pytest.raises(ConfigError) as caught:
        SMTPDriver(name="x", host="h.example", ca_file=str(tmp_path / "missing.pem"))
    assert "ca_file" in str(caught.value)


# -- AUTH ---------------------------------------------------------------------------------


@pytest.fixture
def auth_server(smtp_server_factory: ServerFactory, server_tls_context: ssl.SSLContext) -> Any:
    def start(**kwargs: Any) -> LoopbackController:
        return smtp_server_factory(
            credentials=(GOOD_USER, GOOD_PASSWORD), tls_context=server_tls_context, **kwargs
        )

    return start


@pytest.mark.parametrize(("exclude", "mechanism"), [(["LOGIN"], "PLAIN"), (["PLAIN"], "LOGIN")])
def test_auth_with_good_credentials_delivers(
    auth_server: Any, ca_file: str, exclude: list[str], mechanism: str
) -> None:
    """AUTH PLAIN and AUTH LOGIN (after STARTTLS) with the right password deliver."""
    server = auth_server(auth_exclude_mechanism=exclude)
    with SMTPDriver(
        name="auth", host="127.0.0.1", port=server.port, ca_file=ca_file,
        username=GOOD_USER, password=GOOD_PASSWORD,
    ) as driver:  # fmt: skip
        driver.send(simple_message())
    assert recorder(server).auth_attempts == [(mechanism, GOOD_USER)]
    assert len(recorder(server).messages) == 1


@pytest.mark.parametrize("password", [GOOD_PASSWORD, "wrong-Pa55word"])
def test_auth_cram_md5_against_a_server_that_offers_only_it(
    auth_server: Any, ca_file: str, password: str
) -> None:
    """CRAM-MD5 (RFC 2195) when the server offers nothing else: the HMAC of the server's
    challenge under the right password delivers; a wrong one is a 535, unavailable
    ('auth'), tried once, the password nowhere in the error."""
    server = auth_server(auth_exclude_mechanism=["PLAIN", "LOGIN"], cram_md5=True)
    with SMTPDriver(
        name="auth", host="127.0.0.1", port=server.port, ca_file=ca_file,
        username=GOOD_USER, password=password,
    ) as driver:  # fmt: skip
        if password == GOOD_PASSWORD:
            driver.send(simple_message())
        else:
            with pytest.raises(ProviderUnavailable) as caught:
                driver.send(simple_message())
            assert (caught.value.reason, caught.value.status) == ("auth", 535)
            assert password not in f"{caught.value} {caught.value.response!r}"
    assert recorder(server).auth_attempts == [("CRAM-MD5", GOOD_USER)]
    assert len(recorder(server).messages) == (1 if password == GOOD_PASSWORD else 0)


def test_auth_with_a_bad_password_is_unavailable_auth(auth_server: Any, ca_file: str) -> None:
    """A wrong password fails over with reason 'auth', and the password appears nowhere."""
    server = auth_server()
    driver = SMTPDriver(
        name="auth", host="127.0.0.1", port=server.port, ca_file=ca_file,
        username=GOOD_USER, password="wrong-Pa55word",
    )  # fmt: skip
    with driver, pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "auth"
    assert caught.value.status == 535
    assert caught.value.ambiguous is False
    for text in (str(caught.value), repr(caught.value.response), repr(driver)):
        assert "wrong-Pa55word" not in text
    assert recorder(server).messages == []


def test_insecure_auth_when_explicitly_allowed(smtp_server_factory: ServerFactory) -> None:
    """allow_insecure_auth lets AUTH run over a plain connection (a trusted local relay)."""
    server = smtp_server_factory(credentials=(GOOD_USER, GOOD_PASSWORD), auth_require_tls=False)
    handler = recorder(server)
    with plain_driver(
        server, username=GOOD_USER, password=GOOD_PASSWORD, allow_insecure_auth=True
    ) as driver:
        driver.send(simple_message())
    assert len(handler.auth_attempts) == 1
    assert len(handler.messages) == 1


def test_auth_not_offered_is_unavailable(smtp_server: LoopbackController) -> None:
    """Credentials configured for a server that offers no AUTH: fail over with reason 'auth'."""
    with (
        plain_driver(
            smtp_server, username=GOOD_USER, password=GOOD_PASSWORD, allow_insecure_auth=True
        ) as driver,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        driver.send(simple_message())
    assert caught.value.reason == "auth"


# -- replies --------------------------------------------------------------------------------


def test_some_recipients_refused_still_delivers_and_lists_them(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """Refused recipients are listed in the receipt; the others receive the message."""
    recorder(smtp_server).rcpt_replies = {
        "cc1@example.com": "550 5.1.1 no such user",
        "bcc2@example.com": "450 4.2.0 mailbox busy",
    }
    receipt = driver.send(full_message())
    assert receipt.refused_recipients == ("cc1@example.com", "bcc2@example.com")
    assert receipt.response is not None
    assert receipt.response["refused"]["cc1@example.com"] == {
        "code": 550,
        "reply": "5.1.1 no such user",
    }
    [got] = recorder(smtp_server).messages
    assert got.rcpt_tos == [
        "ann@example.com", "bob@example.com", "cc2@example.com", "bcc1@example.com",
    ]  # fmt: skip


def test_every_recipient_refused_permanently_is_rejected(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """5xx for every RCPT TO: the message is rejected and DATA is never sent."""
    recorder(smtp_server).rcpt_replies = {"rcpt@example.com": "550 5.1.1 no such user"}
    with pytest.raises(MessageRejected) as caught:
        driver.send(simple_message())
    assert caught.value.status == 550
    assert "no such user" in str(caught.value)
    assert recorder(smtp_server).messages == []


RELAY_DENIED = [
    "554 5.7.1 <rcpt@example.com>: Relay access denied",  # Postfix
    "550 5.7.1 <rcpt@example.com>... Relaying denied",  # Sendmail
    "550 relay not permitted",  # Exim
    "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",  # Exchange
    "550 5.7.0 Mail relay denied",  # Gmail's SMTP relay
    "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",  # qmail
]


@pytest.mark.parametrize("reply", RELAY_DENIED)
def test_relay_denied_for_every_recipient_fails_over_as_an_account_problem(
    smtp_server: LoopbackController, driver: SMTPDriver, reply: str
) -> None:
    """The server will not relay for this client (not logged in, not one of its networks):
    no recipient is at fault, another provider may deliver. Nothing was sent."""
    recorder(smtp_server).rcpt_replies = {"rcpt@example.com": reply}
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "account"
    assert caught.value.status == int(reply[:3])
    assert caught.value.ambiguous is False
    assert recorder(smtp_server).messages == []
    backup = MemoryDriver(name="backup")
    recorder(smtp_server).rcpt_replies = {"rcpt@example.com": reply}
    result = FailoverMailer([driver, backup]).send(simple_message())
    assert result.driver == "backup" and len(backup.outbox) == 1


@pytest.mark.parametrize(
    "replies",
    [
        {"rcpt@example.com": "550 5.7.1 Recipient address rejected: Access denied"},
        {"cc1@example.com": "554 5.7.1 <cc1@example.com>: Relay access denied",
         "ann@example.com": "550 5.1.1 no such user"},
    ],
    ids=["policy-not-relay", "relay-and-unknown-user"],
)  # fmt: skip
def test_a_refusal_that_is_not_only_relay_denied_stays_a_rejection(
    smtp_server: LoopbackController, driver: SMTPDriver, replies: dict[str, str]
) -> None:
    """A recipient refused by policy, or any one refused for itself: the message is
    rejected, not failed over (another provider would be refused the same)."""
    recipients = list(replies)
    recorder(smtp_server).rcpt_replies = replies
    with pytest.raises(MessageRejected):
        driver.send(simple_message(to=recipients))


def test_every_recipient_refused_temporarily_is_unavailable(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """4xx for every RCPT TO is transient: fail over."""
    recorder(smtp_server).rcpt_replies = {"rcpt@example.com": "451 4.3.0 try again later"}
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.status == 451
    assert caught.value.ambiguous is False


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        # Postfix reject_sender_login_mismatch: this login may not send as this sender
        ("553 5.7.1 <sender@example.com>: Sender address rejected: not owned by user mailer",
         "account"),
        ("550 5.7.1 Client host rejected: sending domain not verified", "account"),
        ("554 5.7.1 Sender address rejected: Access denied", "account"),
        ("550 Sender not allowed to send from this account", "account"),  # no enhanced code
        # the address itself: no provider would take it
        ("550 5.1.8 <sender@example.com>: Sender address rejected: Domain not found", None),
        ("553 5.1.7 The sender address is malformed", None),
        ("552 5.3.4 Message size exceeds fixed limit", None),
        ("550 Sender address rejected", None),
    ],
)  # fmt: skip
def test_refused_sender_follows_the_shared_account_rule(
    smtp_server: LoopbackController, driver: SMTPDriver, reply: str, reason: str | None
) -> None:
    """5xx on MAIL FROM: 5.7.x (policy: this account may not send as this sender) fails over
    as an account problem; 5.1.x/5.3.x (the address, the size) is a rejection."""
    recorder(smtp_server).mail_reply = reply
    with pytest.raises((ProviderUnavailable, MessageRejected)) as caught:
        driver.send(simple_message())
    assert caught.value.status == int(reply[:3])
    assert reply[4:] in caught.value.detail
    assert caught.value.detail.startswith("MAIL FROM: ")
    if reason is None:
        assert type(caught.value) is MessageRejected
    else:
        assert isinstance(caught.value, ProviderUnavailable)
        assert caught.value.reason == reason
        assert caught.value.ambiguous is False
    assert recorder(smtp_server).messages == []


def test_refused_sender_fails_over_end_to_end(smtp_server: LoopbackController) -> None:
    """Through the mailer: an SMTP relay refusing the sender hands the message on."""
    recorder(smtp_server).mail_reply = "553 5.7.1 Sender address rejected: not owned by user"
    backup = MemoryDriver(name="backup")
    with FailoverMailer([plain_driver(smtp_server), backup]) as mailer:
        result = mailer.send(simple_message())
    assert result.driver == "backup"
    assert [a.outcome for a in result.attempts] == ["unavailable", "sent"]


def test_auth_required_on_mail_from_is_unavailable(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """530 (authentication required) is our configuration/credentials, not the message."""
    recorder(smtp_server).mail_reply = "530 5.7.0 Authentication required"
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "auth"


@pytest.mark.parametrize(
    ("where", "reply", "error", "status"),
    [
        ("mail", "421 4.3.2 Service shutting down", ProviderUnavailable, 421),
        ("mail", "451 4.3.0 Local error", ProviderUnavailable, 451),
        ("mail", "552 5.3.4 Message size exceeds fixed limit", MessageRejected, 552),
        ("data", "421 4.3.2 Service shutting down", ProviderUnavailable, 421),
        ("data", "451 4.3.0 Queue file write error", ProviderUnavailable, 451),
        ("data", "552 5.3.4 Message too big", MessageRejected, 552),
        ("data", "554 5.7.1 Spam detected", MessageRejected, 554),
    ],
)
def test_server_replies_are_classified(
    smtp_server: LoopbackController,
    driver: SMTPDriver,
    where: str,
    reply: str,
    error: type[Exception],
    status: int,
) -> None:
    """421/451 fail over (not ambiguous: the server answered); 552/554 reject."""
    if where == "mail":
        recorder(smtp_server).mail_reply = reply
    else:
        recorder(smtp_server).data_reply = reply
    with pytest.raises(error) as caught:
        driver.send(simple_message())
    assert type(caught.value) is error
    assert getattr(caught.value, "status", None) == status
    assert getattr(caught.value, "ambiguous", False) is False
    assert caught.value.driver == "relay"  # type: ignore[attr-defined]


# -- timeouts, refused and dropped connections ---------------------------------------------


def test_nothing_listening_is_unavailable_connection(closed_port: int) -> None:
    """The built-in default (localhost, security none) with no server: a prompt, plain failover."""
    with (
        SMTPDriver(name="local", host="localhost", port=closed_port, security="none") as driver,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        driver.send(simple_message())
    assert caught.value.reason == "connection"
    assert caught.value.ambiguous is False
    assert caught.value.driver == "local"


def test_server_that_never_answers_times_out_unambiguously(
    silent_server: tuple[str, int],
) -> None:
    """A server that accepts and never greets: timeout, not ambiguous (nothing was sent)."""
    host, port = silent_server
    with (
        SMTPDriver(name="mute", host=host, port=port, security="none", timeout=0.5) as driver,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        driver.send(simple_message())
    assert caught.value.reason == "timeout"
    assert caught.value.ambiguous is False


def test_connection_dropped_after_data_is_ambiguous(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """The server got the whole message and hung up before answering: ambiguous."""
    recorder(smtp_server).drop_after_data = True
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "connection"
    assert caught.value.ambiguous is True
    assert recorder(smtp_server).dropped == 1
    # the phase in plain words (it used to read "closed the connection during sent")
    assert "during sent" not in caught.value.detail
    assert caught.value.detail.endswith(
        "closed the connection after the whole message was sent, waiting for the server's "
        "final reply"
    )


def test_timeout_after_data_is_ambiguous(smtp_server: LoopbackController) -> None:
    """No final reply within the timeout after the message was sent: ambiguous."""
    recorder(smtp_server).stall_after_data = 2.0
    with (
        plain_driver(smtp_server, timeout=0.3) as driver,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        driver.send(simple_message())
    assert caught.value.reason == "timeout"
    assert caught.value.ambiguous is True


def test_driver_recovers_after_an_ambiguous_failure(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """A broken connection is thrown away; the next send opens a fresh one and delivers."""
    recorder(smtp_server).drop_after_data = True
    with pytest.raises(ProviderUnavailable):
        driver.send(simple_message())
    recorder(smtp_server).drop_after_data = False
    driver.send(simple_message())
    assert len(recorder(smtp_server).messages) == 1
    assert recorder(smtp_server).connections == 2


# -- connection reuse ---------------------------------------------------------------------


def test_500_messages_reuse_one_connection(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """Sequential sends share a pooled connection: 500 messages, one connection."""
    for number in range(500):
        driver.send(simple_message(subject=f"message {number}"))
    handler = recorder(smtp_server)
    assert len(handler.messages) == 500
    assert handler.connections == 1


def test_concurrent_sends_open_at_most_one_connection_per_thread(
    smtp_server: LoopbackController,
) -> None:
    """500 messages from 4 threads go over at most 4 connections, each delivered once."""
    with plain_driver(smtp_server, pool_size=4) as driver, ThreadPoolExecutor(4) as pool:
        subjects = [f"message {n}" for n in range(500)]
        receipts = list(pool.map(lambda s: driver.send(simple_message(subject=s)), subjects))
    handler = recorder(smtp_server)
    assert len(receipts) == 500
    assert sorted(str(parsed(m.content)["Subject"]) for m in handler.messages) == sorted(subjects)
    assert 1 <= handler.connections <= 4


def test_dead_pooled_connection_is_replaced_transparently(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """A pooled connection that died while idle fails its RSET check and is replaced."""
    driver.send(simple_message())
    [idle] = driver._pool._idle
    assert idle.smtp.sock is not None
    idle.smtp.sock.shutdown(socket.SHUT_RDWR)  # as if the server had timed it out
    driver.send(simple_message())
    assert len(recorder(smtp_server).messages) == 2
    assert recorder(smtp_server).connections == 2


def test_pooled_connection_closed_at_mail_from_is_retried_once(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """421 on MAIL FROM over a reused connection (nothing sent yet): one fresh retry delivers."""
    handler = recorder(smtp_server)
    driver.send(simple_message())
    handler.mail_replies_once.append("421 4.4.2 idle too long, closing")
    driver.send(simple_message())
    assert len(handler.messages) == 2
    assert handler.connections == 2


def test_close_says_goodbye_and_later_sends_still_work(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """close() empties the pool; the driver can still send afterwards (without pooling)."""
    driver.send(simple_message())
    driver.close()
    assert driver._pool._idle == []
    driver.send(simple_message())
    assert driver._pool._idle == []
    assert len(recorder(smtp_server).messages) == 2


def test_repr_hides_the_password() -> None:
    """repr() shows the host but never the password."""
    driver = SMTPDriver(name="x", host="smtp.example.com", username="u", password="hunter2-pw")
    assert "smtp.example.com" in repr(driver)
    assert "hunter2-pw" not in repr(driver)


# -- the contract ---------------------------------------------------------------------------


class TestSMTPContract(DriverContractTests):
    """The shared driver contract, over STARTTLS with AUTH against a real server; also
    through asend (natively, on aiosmtplib: tests/drivers/test_smtp_async.py)."""

    colours = ("sync", "async")
    secrets = (GOOD_PASSWORD,)

    @pytest.fixture(autouse=True)
    def _server(
        self,
        smtp_server_factory: ServerFactory,
        server_tls_context: ssl.SSLContext,
        ca_file: str,
    ) -> None:
        self.server = smtp_server_factory(
            credentials=(GOOD_USER, GOOD_PASSWORD),
            tls_context=server_tls_context,
            require_starttls=True,
        )
        self.handler = self.server.handler
        self.ca_file = ca_file

    def make_driver(self) -> Driver:
        return SMTPDriver(
            name="contract-smtp", host="127.0.0.1", port=self.server.port, ca_file=self.ca_file,
            username=GOOD_USER, password=GOOD_PASSWORD, timeout=5,
        )  # fmt: skip

    def arrange_success(self) -> None:
        self.handler.mail_reply = None

    def arrange_unavailable(self) -> None:
        self.handler.mail_reply = "421 4.3.2 Service shutting down"

    def arrange_rejection(self) -> None:
        self.handler.rcpt_replies = {"rcpt@example.com": "550 5.1.1 no such user"}

    def requests_made(self) -> int:
        with self.handler.lock:
            return len(self.handler.messages)


# -- tags and metadata: carried as headers, or refused; never dropped ---------------------


def test_tags_and_metadata_travel_as_headers(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    """SMTP has no fields for them: they arrive as X-Tags (JSON array) and X-Metadata (JSON
    object, keys sorted), as the server really received them."""
    driver.send(simple_message(tags=["receipts", "grüße"], metadata={"user": "42", "a": "ö"}))
    received = parsed(recorder(smtp_server).messages[0].content)
    assert json.loads(received["X-Tags"]) == ["receipts", "grüße"]
    assert json.loads(received["X-Metadata"]) == {"a": "ö", "user": "42"}
    assert received["X-Metadata"].startswith('{"a": ')


def test_no_tracking_headers_without_tags_or_metadata(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    driver.send(simple_message())
    received = parsed(recorder(smtp_server).messages[0].content)
    assert received["X-Tags"] is None and received["X-Metadata"] is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"tags": ["t"]}, "tags"), ({"metadata": {"k": "v"}}, "metadata")],
)
def test_tags_and_metadata_refused_when_so_configured(
    smtp_server: LoopbackController, changes: dict[str, Any], field: str
) -> None:
    """tags_and_metadata: refuse skips the driver for such a message, before connecting."""
    with plain_driver(smtp_server, tags_and_metadata="refuse") as driver:
        with pytest.raises(UnsupportedFeature) as caught:
            driver.send(simple_message(**changes))
        assert caught.value.field == field
        driver.send(simple_message())  # a message without them still goes
    assert recorder(smtp_server).connections == 1
    assert len(recorder(smtp_server).messages) == 1


def test_a_message_already_using_the_header_is_unsupported(
    smtp_server: LoopbackController, driver: SMTPDriver
) -> None:
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(simple_message(metadata={"k": "v"}, headers={"X-Metadata": "mine"}))
    assert caught.value.field == "metadata"
    assert recorder(smtp_server).connections == 0
