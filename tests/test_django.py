"""The Django email backend, driven through real Django: ``send_mail``, ``send_mass_mail``,
``EmailMultiAlternatives.send()``, ``mail_admins`` and ``mail_managers``, through the memory
driver and through Postmark (``responses``, asserting the exact request)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import django
import pytest
import responses
from django.conf import settings
from django.core import mail
from django.core.mail import (
    BadHeaderError,
    EmailMessage,
    EmailMultiAlternatives,
    get_connection,
    mail_admins,
    mail_managers,
    make_msgid,
    send_mail,
    send_mass_mail,
)
from django.test import override_settings
from django.utils import translation
from django.utils.functional import empty
from django.utils.translation import gettext_lazy

import mailfailover.django as mf_django
from mailfailover import (
    AllProvidersFailed,
    Attachment,
    ConfigError,
    FailoverMailer,
    InvalidMessage,
    MemoryDriver,
    Message,
    MessageRejected,
    SendResult,
)
from mailfailover.django import EmailBackend, HeaderInjection, InvalidEmail, get_mailer, to_message
from mailfailover.testing import PDF_BYTES, PNG_BYTES

BACKEND = "mailfailover.django.EmailBackend"
MEMORY = {"drivers": [{"name": "memory", "module": "memory"}]}
TOKEN = "0f6c8d7e-1111-2222-3333-444455556666"  # a made-up Postmark server token
POSTMARK_URL = "https://api.postmarkapp.com/email"
POSTMARK_OK = {"To": "ann@example.com", "MessageID": "pm-1", "ErrorCode": 0, "Message": "OK"}
POSTMARK_THEN_MEMORY = {
    "drivers": [
        {"name": "postmark", "module": "postmark", "settings": {"server_token": TOKEN}},
        {"name": "memory", "module": "memory"},
    ]
}

SETTINGS: dict[str, Any] = {
    "EMAIL_BACKEND": BACKEND,
    "MAILFAILOVER": MEMORY,
    "DEFAULT_FROM_EMAIL": "Shop <shop@example.com>",
    "SERVER_EMAIL": "server@example.com",
    "ADMINS": [("Ann Admin", "ann@example.com")],
    "MANAGERS": [("Bob Manager", "bob@example.com")],
    "EMAIL_SUBJECT_PREFIX": "[Site] ",
    "INSTALLED_APPS": [],
    "USE_I18N": True,
    "LANGUAGE_CODE": "en-us",
}


@pytest.fixture(scope="module", autouse=True)
def django_settings() -> Iterator[None]:
    """Real Django settings for this module, put back as they were afterwards (so the
    docs' own ``settings.configure()`` example still runs in the same process)."""
    saved = settings._wrapped
    settings._wrapped = empty
    settings.configure(**SETTINGS)
    django.setup()
    try:
        yield
    finally:
        mf_django._PROCESS.close()
        settings._wrapped = saved


@pytest.fixture(autouse=True)
def fresh_mailer() -> Iterator[None]:
    """Each test starts with no process mailer, so it builds one from its own settings."""
    mf_django._PROCESS.close()
    yield
    mf_django._PROCESS.close()


def outbox() -> list[Message]:
    """What the process mailer's memory driver has accepted."""
    driver = next(d for d in get_mailer().drivers if isinstance(d, MemoryDriver))
    return driver.outbox


def body_of(call: Any) -> dict[str, Any]:
    return json.loads(call.request.body)  # type: ignore[no-any-return]


# -- the Django helpers, through the memory driver --------------------------------------------


def test_send_mail_sends_one_message_from_default_from_email() -> None:
    count = send_mail("Hello", "Plain body", None, ["ann@example.com", "Bob <bob@example.com>"])
    assert count == 1
    (sent,) = outbox()
    assert sent == Message(
        "Shop <shop@example.com>",
        ["ann@example.com", "Bob <bob@example.com>"],
        "Hello",
        "Plain body",
        message_id=sent.message_id,
    )


def test_send_mail_with_html_message_carries_both_versions() -> None:
    send_mail("Hi", "text", "from@example.com", ["ann@example.com"], html_message="<b>html</b>")
    (sent,) = outbox()
    assert (sent.sender, sent.text, sent.html) == ("from@example.com", "text", "<b>html</b>")


def test_email_multi_alternatives_is_converted_whole(tmp_path: Path) -> None:
    """Every part of a Django message reaches the driver: addresses, headers, the kept
    Message-ID, tuple/file/MIME attachments, an inline image and the html alternative."""
    pdf = tmp_path / "invoice.pdf"
    pdf.write_bytes(PDF_BYTES)
    message_id = make_msgid(domain="shop.example.com")
    email = EmailMultiAlternatives(
        subject="Your order",
        body="Thanks!",
        from_email="Shop <shop@example.com>",
        to=["Ann <ann@example.com>"],
        cc=["cc@example.com"],
        bcc=["audit@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Campaign": "spring", "Message-ID": message_id, "List-Id": "<orders>"},
    )
    email.attach_alternative('<p>Thanks!</p><img src="cid:logo">', "text/html")
    email.attach("notes.txt", "Grüße", "text/plain")
    email.attach_file(pdf)
    logo = MIMEImage(PNG_BYTES, "png")
    logo.add_header("Content-ID", "<logo>")
    email.attach(logo)
    email.attach(MIMEApplication(b"\x00\x01", Name="data.bin"))
    email.tags = ["orders"]  # type: ignore[attr-defined]
    email.metadata = {"order": "A-17", "amount": 12}  # type: ignore[attr-defined]

    assert email.send() == 1

    (sent,) = outbox()
    assert sent == Message(
        "Shop <shop@example.com>",
        ["Ann <ann@example.com>"],
        "Your order",
        "Thanks!",
        html='<p>Thanks!</p><img src="cid:logo">',
        cc=["cc@example.com"],
        bcc=["audit@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Campaign": "spring", "List-Id": "<orders>"},
        attachments=[
            Attachment("notes.txt", "Grüße".encode(), "text/plain"),
            Attachment("invoice.pdf", PDF_BYTES, "application/pdf"),
            Attachment(None, PNG_BYTES, "image/png", inline=True, content_id="logo"),
            Attachment("data.bin", b"\x00\x01", "application/octet-stream"),
        ],
        tags=["orders"],
        metadata={"order": "A-17", "amount": "12"},
        message_id=message_id,
    )
    result = email.mailfailover_result  # type: ignore[attr-defined]
    assert isinstance(result, SendResult)
    assert (result.driver, result.message_id) == ("memory", message_id)
    assert email.mailfailover_error is None  # type: ignore[attr-defined]


def test_send_mass_mail_counts_what_was_sent_and_skips_messages_without_recipients() -> None:
    count = send_mass_mail(
        [
            ("One", "first", "a@example.com", ["ann@example.com"]),
            ("Nobody", "skipped, as Django's backends skip it", "a@example.com", []),
            ("Two", "second", None, ["bob@example.com", "cy@example.com"]),
        ]
    )
    assert count == 2
    assert [(m.subject, m.sender, m.to) for m in outbox()] == [
        ("One", "a@example.com", ("ann@example.com",)),
        ("Two", "Shop <shop@example.com>", ("bob@example.com", "cy@example.com")),
    ]


def test_a_message_without_recipients_is_not_sent_and_not_counted() -> None:
    backend = get_connection()
    assert backend.send_messages([EmailMessage("Nobody", "body", to=[])]) == 0
    assert backend.send_messages([]) == 0
    assert EmailMessage("Nobody", "body").send() == 0
    assert outbox() == []


def test_mail_admins_sends_from_server_email_with_the_subject_prefix() -> None:
    mail_admins("Disk full", "on web-1", html_message="<p>on web-1</p>")
    (sent,) = outbox()
    assert (sent.sender, sent.to, sent.subject) == (
        "server@example.com",
        ("ann@example.com",),
        "[Site] Disk full",
    )
    assert (sent.text, sent.html) == ("on web-1", "<p>on web-1</p>")


def test_mail_managers_sends_to_the_managers() -> None:
    mail_managers("New signup", "ann signed up")
    (sent,) = outbox()
    assert (sent.sender, sent.to, sent.subject) == (
        "server@example.com",
        ("bob@example.com",),
        "[Site] New signup",
    )


def test_mail_admins_sends_nothing_when_there_are_no_admins() -> None:
    with override_settings(ADMINS=[]):
        mail_admins("Nobody", "to tell")
    assert outbox() == []


def test_lazy_translations_are_rendered_in_the_active_language() -> None:
    english = ("Enter a valid email address.", "This field is required.")
    with translation.override("fr"):
        french = tuple(translation.gettext(text) for text in english)
        send_mail(gettext_lazy(english[0]), gettext_lazy(english[1]), None, ["ann@example.com"])
    (sent,) = outbox()
    assert (sent.subject, sent.text) == french
    assert french[1] != english[1]  # Django's own French catalogue did translate them


def test_html_only_message_through_content_subtype() -> None:
    email = EmailMessage("Hi", "<p>only html</p>", to=["ann@example.com"])
    email.content_subtype = "html"
    email.send()
    (sent,) = outbox()
    assert (sent.text, sent.html) == (None, "<p>only html</p>")


def test_empty_body_with_an_html_alternative_is_html_only() -> None:
    email = EmailMultiAlternatives("Hi", "", to=["ann@example.com"])
    email.attach_alternative("<p>html</p>", "text/html")
    email.send()
    (sent,) = outbox()
    assert (sent.text, sent.html) == (None, "<p>html</p>")


def test_html_body_with_a_text_alternative_carries_both() -> None:
    email = EmailMultiAlternatives("Hi", "<p>html</p>", to=["ann@example.com"])
    email.content_subtype = "html"
    email.attach_alternative("plain", "text/plain")
    email.send()
    (sent,) = outbox()
    assert (sent.text, sent.html) == ("plain", "<p>html</p>")


def test_extra_headers_from_reply_to_and_matching_to_are_applied_as_django_does() -> None:
    """Django shows extra_headers' From and Reply-To instead of the attributes; a To header
    naming the same recipients is accepted."""
    email = EmailMessage(
        "Hi",
        "body",
        "bounce@example.com",
        to=["ann@example.com", "bob@example.com"],
        reply_to=["ignored@example.com"],
        headers={
            "From": "Shop <shop@example.com>",
            "Reply-To": "Help <help@example.com>, desk@example.com",
            "To": "Bob <BOB@example.com>, ann@example.com",
        },
    )
    email.send()
    (sent,) = outbox()
    assert sent.sender == "Shop <shop@example.com>"
    assert sent.reply_to == ("Help <help@example.com>", "desk@example.com")
    assert sent.headers == {}


def test_text_attachments_in_other_charsets_and_attached_messages_are_carried() -> None:
    email = EmailMessage("Hi", "body", to=["ann@example.com"])
    email.attach(MIMEText("Grüße", "plain", "iso-8859-1"))
    inner = EmailMessage("Inner", "inner body", "x@example.com", ["y@example.com"])
    email.attach("forwarded.eml", inner, "message/rfc822")
    email.send()
    (sent,) = outbox()
    latin, forwarded = sent.attachments
    assert (latin.mimetype, latin.content) == ("text/plain", "Grüße".encode())
    assert forwarded.mimetype == "message/rfc822"
    assert b"Subject: Inner" in forwarded.content and b"inner body" in forwarded.content


def test_anymail_style_message_with_its_options_unset_is_sent() -> None:
    """django-anymail's AnymailMessage marks unset options with a class named UNSET."""
    unset = type("UNSET", (object,), {})

    class AnymailStyleMessage(EmailMultiAlternatives):
        template_id = merge_data = esp_extra = send_at = track_clicks = unset
        tags = metadata = unset

    AnymailStyleMessage("Hi", "b", to=["ann@example.com"]).send()
    (sent,) = outbox()
    assert (sent.tags, sent.metadata) == ((), {})


def test_text_is_carried_as_unicode_whatever_the_charset_settings() -> None:
    """DEFAULT_CHARSET and EmailMessage.encoding pick Django's own MIME encoding; mailfailover
    keeps text as text, and a str attachment becomes UTF-8 bytes."""
    with override_settings(DEFAULT_CHARSET="iso-8859-1"):
        email = EmailMessage("Grüße", "Grüße aus Köln", to=["ann@example.com"])
        email.encoding = "iso-8859-1"
        email.attach("note.txt", "Grüße", "text/plain")
        email.send()
    (sent,) = outbox()
    assert (sent.subject, sent.text) == ("Grüße", "Grüße aus Köln")
    assert sent.attachments[0].content == "Grüße".encode()


def test_to_message_converts_without_sending() -> None:
    message = to_message(EmailMessage("Hi", "body", None, ["ann@example.com"]))
    assert (message.sender, message.to, message.text) == (
        "Shop <shop@example.com>",
        ("ann@example.com",),
        "body",
    )
    assert outbox() == []


# -- bad and hostile input: a clear error, nothing sent -----------------------------------------


def _injection_cases() -> dict[str, EmailMessage]:
    def msg(**kwargs: Any) -> EmailMessage:
        fields: dict[str, Any] = {"subject": "Hi", "body": "b", "to": ["ann@example.com"]}
        return EmailMessage(**{**fields, **kwargs})

    with_file = msg()
    with_file.attach("a\r\nBcc: evil@example.com", b"x", "application/octet-stream")
    return {
        "subject": msg(subject="Hi\r\nBcc: evil@example.com"),
        "header value": msg(headers={"X-Tag": "a\nBcc: evil@example.com"}),
        "header name": msg(headers={"X-Tag\r\nBcc": "evil@example.com"}),
        "to": msg(to=["ann@example.com\nBcc: evil@example.com"]),
        "from_email": msg(from_email="shop@example.com\r\nBcc: evil@example.com"),
        "reply_to": msg(reply_to=["r@example.com\nBcc: evil@example.com"]),
        "Reply-To header": msg(headers={"Reply-To": "r@example.com\nBcc: evil@example.com"}),
        "attachment filename": with_file,
    }


INJECTIONS = [
    "subject", "header value", "header name", "to", "from_email", "reply_to",
    "Reply-To header", "attachment filename",
]  # fmt: skip


def test_injection_case_list_is_complete() -> None:
    assert sorted(INJECTIONS) == sorted(_injection_cases())


@pytest.mark.parametrize("case", INJECTIONS)
def test_header_injection_is_refused_even_with_fail_silently(case: str) -> None:
    email = _injection_cases()[case]
    with pytest.raises(BadHeaderError) as caught:
        get_connection(fail_silently=True).send_messages([email])
    assert isinstance(caught.value, HeaderInjection)
    assert isinstance(caught.value, InvalidMessage)
    assert "evil" not in str(caught.value)
    assert outbox() == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"to": ["not-an-address"]}, "to"),
        ({"cc": ["ann@"]}, "cc"),
        ({"bcc": ["<>"]}, "bcc"),
        ({"from_email": "no at sign"}, "from_email"),
        ({"headers": {"From": "nobody"}}, "extra_headers.From"),
        ({"headers": {"Message-ID": "not-an-id"}}, "extra_headers.Message-ID"),
        ({"headers": {"Content-Type": "text/x"}}, "extra_headers"),
    ],
)
def test_bad_addresses_and_ids_are_invalid_email_even_with_fail_silently(
    kwargs: dict[str, Any], field: str
) -> None:
    email = EmailMessage(**{"subject": "Hi", "body": "b", "to": ["ann@example.com"], **kwargs})
    with pytest.raises(InvalidEmail) as caught:
        email.send(fail_silently=True)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert outbox() == []


def test_one_invalid_message_in_a_batch_means_none_is_sent() -> None:
    good = EmailMessage("Hi", "b", to=["ann@example.com"])
    bad = EmailMessage("Hi", "b", to=["not-an-address"])
    with pytest.raises(InvalidEmail):
        get_connection().send_messages([good, bad])
    assert outbox() == []


def _unsupported_cases() -> dict[str, tuple[EmailMessage, str]]:
    def alt(*pairs: tuple[str, str]) -> EmailMultiAlternatives:
        return EmailMultiAlternatives("Hi", "b", to=["ann@example.com"], alternatives=pairs)

    def msg(**kwargs: Any) -> EmailMessage:
        return EmailMessage(**{"subject": "Hi", "body": "b", "to": ["ann@example.com"], **kwargs})

    xml = msg()
    xml.content_subtype = "xml"
    related = alt(("<p>x</p>", "text/html"))
    related.alternative_subtype = "related"
    multipart = msg()
    multipart.attach(MIMEMultipart())
    described = msg()
    part = MIMEApplication(b"x")
    part["Content-Description"] = "a description the providers would not get"
    described.attach(part)
    invite = msg()
    invite.attach(MIMEText("BEGIN:VCALENDAR", "calendar"))
    invite.attachments[0].set_param("method", "REQUEST")
    template = msg()
    template.template_id = "welcome"  # type: ignore[attr-defined]
    bcc_only = msg(to=[], bcc=["ann@example.com"])
    two_html = alt(("<p>1</p>", "text/html"), ("<p>2</p>", "text/html"))
    dated = msg(headers={"Date": "Mon, 1 Jan 2024 00:00:00 +0000"})
    return {
        "second html": (two_html, "alternatives[1]"),
        "second text": (alt(("plain", "text/plain")), "alternatives[0]"),
        "amp alternative": (alt(("<html amp>", "text/x-amp-html")), "alternatives[0]"),
        "xml body": (xml, "content_subtype"),
        "related alternatives": (related, "alternative_subtype"),
        "multipart attachment": (multipart, "attachments[0]"),
        "part header": (described, "attachments[0]"),
        "part parameter": (invite, "attachments[0]"),
        "Bcc header": (msg(headers={"Bcc": "x@example.com"}), "extra_headers.Bcc"),
        "Date header": (dated, "extra_headers.Date"),
        "Subject header": (msg(headers={"Subject": "other"}), "extra_headers.Subject"),
        "display-only To": (msg(headers={"To": "everyone@example.com"}), "extra_headers.To"),
        "anymail option": (template, "template_id"),
        "bcc only": (bcc_only, "to"),
    }  # fmt: skip


UNSUPPORTED = [
    "second html", "second text", "amp alternative", "xml body", "related alternatives",
    "multipart attachment", "part header", "part parameter", "Bcc header", "Date header",
    "Subject header", "display-only To", "anymail option", "bcc only",
]  # fmt: skip


def test_unsupported_case_list_is_complete() -> None:
    assert sorted(UNSUPPORTED) == sorted(_unsupported_cases())


@pytest.mark.parametrize("case", UNSUPPORTED)
def test_what_cannot_be_carried_is_a_clear_error_not_a_silent_drop(case: str) -> None:
    email, field = _unsupported_cases()[case]
    with pytest.raises(InvalidEmail) as caught:
        email.send(fail_silently=True)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert outbox() == []


# -- fail_silently and delivery failures --------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "error"), [("unavailable", AllProvidersFailed), ("reject", MessageRejected)]
)
def test_delivery_failures_raise_unless_fail_silently(mode: str, error: type[Exception]) -> None:
    failing = {"drivers": [{"name": "memory", "module": "memory", "settings": {"fail": mode}}]}
    with override_settings(MAILFAILOVER=failing):
        with pytest.raises(error):
            send_mail("Hi", "b", None, ["ann@example.com"])
        assert send_mail("Hi", "b", None, ["ann@example.com"], fail_silently=True) == 0
        email = EmailMessage("Hi", "b", to=["ann@example.com"])
        assert email.send(fail_silently=True) == 0
        assert email.mailfailover_result is None  # type: ignore[attr-defined]
        assert isinstance(email.mailfailover_error, error)  # type: ignore[attr-defined]
        mail_admins("Hi", "b", fail_silently=True)
        with pytest.raises(error):
            mail_managers("Hi", "b")


def test_configuration_errors_are_raised_even_with_fail_silently(tmp_path: Path) -> None:
    for value in (
        "config/mail.yml",
        {"config": str(tmp_path / "missing.yml")},
        {"config": "x.yml", "strategy": "failover"},
        {"config": 42},
        {"drivers": [{"name": "x", "module": "no-such-driver"}]},
    ):
        with override_settings(MAILFAILOVER=value), pytest.raises(ConfigError):
            send_mail("Hi", "b", None, ["ann@example.com"], fail_silently=True)


def test_config_from_a_file_path(tmp_path: Path) -> None:
    path = tmp_path / "mail.yml"
    path.write_text("drivers:\n  - name: from-file\n    module: memory\n", encoding="utf-8")
    with override_settings(MAILFAILOVER={"config": path}):
        send_mail("Hi", "b", None, ["ann@example.com"])
        assert [d.name for d in get_mailer().drivers] == ["from-file"]
        assert len(outbox()) == 1


def test_smtp_login_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="password, username"):
        send_mail("Hi", "b", None, ["ann@example.com"], auth_user="u", auth_password="p")
    assert outbox() == []


# -- one mailer per process, backends open and close as Django's do ----------------------------


def test_one_mailer_serves_every_backend_and_close_leaves_it_open() -> None:
    with get_connection() as first:
        first.send_messages([EmailMessage("1", "b", to=["ann@example.com"])])
    mailer = get_mailer()
    assert first.mailer is mailer
    second = get_connection()
    assert second.open() is True
    assert second.open() is False
    second.close()
    second.send_messages([EmailMessage("2", "b", to=["ann@example.com"])])
    assert second.mailer is mailer
    assert [m.subject for m in outbox()] == ["1", "2"]


def test_open_raises_a_configuration_error() -> None:
    with override_settings(MAILFAILOVER={"drivers": []}):
        backend = get_connection()
        with pytest.raises(ConfigError):
            backend.open()
        with pytest.raises(ConfigError), get_connection():
            pass


def test_the_mailer_is_built_once_under_concurrent_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[FailoverMailer] = []
    real = FailoverMailer.from_config.__func__  # type: ignore[attr-defined]

    def counting(cls: type[FailoverMailer], *args: Any, **kwargs: Any) -> FailoverMailer:
        mailer = real(cls, *args, **kwargs)
        built.append(mailer)
        return mailer  # type: ignore[no-any-return]

    monkeypatch.setattr(FailoverMailer, "from_config", classmethod(counting))
    barrier = threading.Barrier(8)
    seen: list[FailoverMailer] = []

    def first_use() -> None:
        barrier.wait(timeout=10)
        seen.append(get_mailer())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(built) == 1
    assert len(seen) == 8 and all(mailer is built[0] for mailer in seen)


def test_changing_the_setting_closes_the_old_mailer_and_builds_a_new_one() -> None:
    old = get_mailer()
    other = {"drivers": [{"name": "other", "module": "memory"}]}
    with override_settings(MAILFAILOVER=other):
        assert old._closed
        assert [d.name for d in get_mailer().drivers] == ["other"]
    assert [d.name for d in get_mailer().drivers] == ["memory"]


def test_a_forked_child_builds_its_own_mailer_and_leaves_the_parents_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent = get_mailer()
    child_pid = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: child_pid)
    child = get_mailer()
    assert child is not parent
    assert not parent._closed


def test_a_mailer_closed_by_its_user_is_replaced() -> None:
    get_mailer().close()
    assert send_mail("Hi", "b", None, ["ann@example.com"]) == 1
    assert len(outbox()) == 1


def test_a_mailer_of_your_own_through_get_connection() -> None:
    driver = MemoryDriver(name="mine")
    with FailoverMailer([driver]) as mine:
        backend = get_connection(BACKEND, mailer=mine)
        assert isinstance(backend, EmailBackend)
        assert backend.send_messages([EmailMessage("Hi", "b", to=["ann@example.com"])]) == 1
    assert [m.subject for m in driver.outbox] == ["Hi"]
    assert mf_django._PROCESS._mailer is None  # the process mailer was never built


def test_the_process_mailer_is_closed_at_interpreter_exit(tmp_path: Path) -> None:
    """A real interpreter: atexit closes the mailer (checked by a hook registered before
    mailfailover.django's, so it runs after it)."""
    script = tmp_path / "app.py"
    script.write_text(
        "import atexit\n"
        "import django\n"
        "from django.conf import settings\n"
        "state = {}\n"
        "atexit.register(lambda: print('closed' if state['mailer']._closed else 'open'))\n"
        "settings.configure(EMAIL_BACKEND='mailfailover.django.EmailBackend',\n"
        f"                   MAILFAILOVER={MEMORY!r})\n"
        "django.setup()\n"
        "from django.core.mail import send_mail\n"
        "from mailfailover.django import get_mailer\n"
        "print(send_mail('Hi', 'b', 'a@example.com', ['b@example.com']))\n"
        "state['mailer'] = get_mailer()\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.split()) == (0, ["1", "closed"]), done.stderr


def test_django_test_outbox_is_untouched() -> None:
    """The backend does not write Django's locmem outbox (that is the locmem backend's)."""
    send_mail("Hi", "b", None, ["ann@example.com"])
    assert getattr(mail, "outbox", []) == []


# -- through an HTTP provider: exactly what reaches Postmark ------------------------------------


@pytest.fixture
def postmark() -> Iterator[responses.RequestsMock]:
    with (
        override_settings(MAILFAILOVER=POSTMARK_THEN_MEMORY),
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
    ):
        yield mock


def test_email_multi_alternatives_reaches_postmark_exactly(
    postmark: responses.RequestsMock,
) -> None:
    postmark.post(POSTMARK_URL, json=POSTMARK_OK)
    email = EmailMultiAlternatives(
        subject="Your order",
        body="Thanks!",
        from_email="Shop <shop@example.com>",
        to=["Ann <ann@example.com>"],
        cc=["cc@example.com"],
        bcc=["audit@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Campaign": "spring", "Message-ID": "<order-17@shop.example.com>"},
    )
    email.attach_alternative('<p>Thanks!</p><img src="cid:logo">', "text/html")
    email.attach("invoice.pdf", PDF_BYTES, "application/pdf")
    logo = MIMEImage(PNG_BYTES, "png")
    logo.add_header("Content-ID", "<logo>")
    email.attach(logo)
    email.tags = ["orders"]  # type: ignore[attr-defined]
    email.metadata = {"order": "A-17"}  # type: ignore[attr-defined]

    assert email.send() == 1

    (call,) = postmark.calls
    assert call.request.url == POSTMARK_URL
    assert call.request.headers["X-Postmark-Server-Token"] == TOKEN
    assert body_of(call) == {
        "From": "Shop <shop@example.com>",
        "To": "Ann <ann@example.com>",
        "Cc": "cc@example.com",
        "Bcc": "audit@example.com",
        "ReplyTo": "help@example.com",
        "Subject": "Your order",
        "TextBody": "Thanks!",
        "HtmlBody": '<p>Thanks!</p><img src="cid:logo">',
        "Headers": [
            {"Name": "X-Campaign", "Value": "spring"},
            {"Name": "Message-ID", "Value": "<order-17@shop.example.com>"},
        ],
        "Attachments": [
            {
                "Name": "invoice.pdf",
                "Content": base64.b64encode(PDF_BYTES).decode(),
                "ContentType": "application/pdf",
            },
            {
                "Name": "attachment.png",
                "Content": base64.b64encode(PNG_BYTES).decode(),
                "ContentType": "image/png",
                "ContentID": "cid:logo",
            },
        ],
        "Tag": "orders",
        "Metadata": {"order": "A-17"},
        "MessageStream": "outbound",
    }
    result = email.mailfailover_result  # type: ignore[attr-defined]
    assert (result.driver, result.message_id) == ("postmark", "pm-1")


def test_send_mail_fails_over_from_postmark_to_the_next_driver(
    postmark: responses.RequestsMock,
) -> None:
    postmark.post(POSTMARK_URL, status=503, body="down for maintenance")
    assert send_mail("Hi", "body", None, ["ann@example.com"]) == 1
    assert len(postmark.calls) == 1
    (sent,) = outbox()
    assert sent.subject == "Hi"


def test_fail_silently_goes_on_after_a_rejected_message(postmark: responses.RequestsMock) -> None:
    """As Django's SMTP backend does: a refused message is not counted, the next one is sent."""
    postmark.post(POSTMARK_URL, status=422, json={"ErrorCode": 300, "Message": "Invalid 'To'"})
    postmark.post(POSTMARK_URL, json=POSTMARK_OK)
    first = EmailMessage("1", "b", to=["ann@example.com"])
    second = EmailMessage("2", "b", to=["bob@example.com"])
    assert get_connection(fail_silently=True).send_messages([first, second]) == 1
    assert [body_of(call)["Subject"] for call in postmark.calls] == ["1", "2"]
    assert isinstance(first.mailfailover_error, MessageRejected)  # type: ignore[attr-defined]
    assert second.mailfailover_result.driver == "postmark"  # type: ignore[attr-defined]
    assert outbox() == []  # a rejection is not failed over


def test_header_injection_never_reaches_postmark(postmark: responses.RequestsMock) -> None:
    email = EmailMessage("Hi", "b", to=["ann@example.com"], headers={"X-A": "1\r\nBcc: e@x.com"})
    with pytest.raises(HeaderInjection):
        email.send()
    assert len(postmark.calls) == 0
