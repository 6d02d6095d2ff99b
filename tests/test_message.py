"""Message and Attachment: validation, the header-injection guard, MIME, the dict round trip."""

from __future__ import annotations

import email
import email.policy
import json

import pytest

from mailfailover import Attachment, InvalidMessage, Message
from mailfailover.message import parse_mailbox, split_addresses
from mailfailover.testing import PDF_BYTES, PNG_BYTES, full_message, simple_message


def parse(mime_bytes: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(mime_bytes, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


# -- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "name", "email_address"),
    [
        ("a@example.com", "", "a@example.com"),
        ("Ann <ann@example.com>", "Ann", "ann@example.com"),
        ('"Doe, John" <j@example.com>', "Doe, John", "j@example.com"),
        ("John Q. Public <jqp@example.com>", "John Q. Public", "jqp@example.com"),
        ("Jörg <jörg@bücher.de>", "Jörg", "jörg@bücher.de"),
        ("<bare@example.com>", "", "bare@example.com"),
        ("root@localhost", "", "root@localhost"),
        ("first.last+tag@sub.example.co.uk", "", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_valid_mailboxes_parse(value: str, name: str, email_address: str) -> None:
    mailbox = parse_mailbox(value)
    assert mailbox.name == name
    assert mailbox.email == email_address


def test_internationalised_domain_has_an_ascii_form() -> None:
    assert parse_mailbox("a@bücher.de").ascii_domain == "xn--bcher-kva.de"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "plain",
        "a@",
        "@example.com",
        "a@b@example.com",
        "a@example.com, b@example.com",
        "Ann ann@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@example..com",
        "a@[127.0.0.1]",
        "a@nodot",
        "Ann <a@example.com",
        "a@example.com>",
        "ab <c <d@example.com>",
        "x" * 65 + "@example.com",
        "a@" + "x" * 64 + ".com",
        "a@example.com\r\nBcc: victim@example.com",
        "a@example.com\nBcc: victim@example.com",
        "Ann\r\n <a@example.com>",
        "a@exam\x00ple.com",
    ],
)
def test_invalid_mailboxes_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_mailbox(value)


def test_split_addresses_respects_quoted_names() -> None:
    assert split_addresses('"Doe, John" <j@x.com>, b@y.com,, c@z.com') == [
        '"Doe, John" <j@x.com>',
        "b@y.com",
        "c@z.com",
    ]
    assert split_addresses(" , ") == []


# -- construction and validation ---------------------------------------------------------------


def test_single_string_recipient_becomes_a_tuple() -> None:
    message = Message("a@example.com", "b@example.com", "Hi", "Body")
    assert message.to == ("b@example.com",)
    assert message.cc == () and message.bcc == () and message.reply_to == ()


def test_generated_message_id_uses_the_sender_domain_and_is_stable() -> None:
    message = Message("Ann <ann@bücher.de>", "b@example.com", "Hi", "Body")
    assert message.message_id.startswith("<") and message.message_id.endswith("@xn--bcher-kva.de>")
    assert message.message_id == message.message_id
    assert Message("a@example.com", "b@example.com", "Hi", "x").message_id != message.message_id


@pytest.mark.parametrize(
    ("kwargs", "field", "code"),
    [
        ({"sender": ""}, "sender", 1),
        ({"sender": None}, "sender", 1),
        ({"sender": "not an address"}, "sender", 2),
        ({"sender": 42}, "sender", 2),
        ({"to": []}, "to", 1),
        ({"to": None}, "to", 1),
        ({"to": "nope"}, "to", 2),
        ({"to": 42}, "to", 2),
        ({"to": b"a@example.com"}, "to", 2),
        ({"to": ["a@example.com", 7]}, "to", 2),
        ({"cc": "bad"}, "cc", 2),
        ({"bcc": ["ok@example.com", "bad"]}, "bcc", 2),
        ({"reply_to": "bad"}, "reply_to", 2),
        ({"subject": None}, "subject", 1),
        ({"subject": 3}, "subject", 2),
        ({"text": None}, "text", 1),
        ({"text": b"bytes"}, "text", 2),
        ({"text": None, "html": 5}, "html", 2),
        ({"message_id": "no-brackets@example.com"}, "message_id", 2),
        ({"message_id": "<a b@example.com>"}, "message_id", 2),
        ({"message_id": "<ü@example.com>"}, "message_id", 2),
        ({"tags": [""]}, "tags", 2),
        ({"tags": 5}, "tags", 2),
        ({"metadata": {"k": None}}, "metadata.k", 2),
        ({"metadata": ["k"]}, "metadata", 2),
        ({"headers": ["X-A"]}, "headers", 2),
        ({"attachments": [b"raw"]}, "attachments", 2),
        ({"attachments": "file.pdf"}, "attachments", 2),
    ],
)
def test_invalid_fields_name_the_field_and_code(kwargs: dict, field: str, code: int) -> None:
    fields = {"sender": "a@example.com", "to": "b@example.com", "subject": "Hi", "text": "x"}
    fields.update(kwargs)
    with pytest.raises(InvalidMessage) as caught:
        Message(**fields)
    assert caught.value.field == field
    assert caught.value.code == code
    assert field.split(".")[0] in str(caught.value)


@pytest.mark.parametrize("field", ["subject", "sender", "to", "cc", "bcc", "reply_to"])
@pytest.mark.parametrize("payload", ["\r\nBcc: victim@example.com", "\nX-Evil: 1", "\r", "\x00"])
def test_header_injection_is_refused_in_every_header_field(field: str, payload: str) -> None:
    fields = {"sender": "a@example.com", "to": "b@example.com", "subject": "Hi", "text": "x"}
    fields[field] = (fields.get(field) or "c@example.com") + payload
    with pytest.raises(InvalidMessage) as caught:
        Message(**fields)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Ok": "fine\r\nBcc: victim@example.com"},
        {"X-Ok\r\nBcc": "victim@example.com"},
        {"X Space": "v"},
        {"X:Colon": "v"},
        {"": "v"},
        {"Bcc": "victim@example.com"},
        {"bcc": "victim@example.com"},
        {"From": "x@example.com"},
        {"Content-Type": "text/html"},
        {"MIME-Version": "2.0"},
        {"Message-ID": "<x@y.z>"},
        {"Subject": "again"},
        {"X-A": "1", "x-a": "2"},
        {"X-A": 1},
    ],
)
def test_bad_or_reserved_headers_are_refused(headers: dict) -> None:
    with pytest.raises(InvalidMessage) as caught:
        simple_message(headers=headers)
    assert str(caught.value.field).startswith("headers")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"filename": "a\r\nX-Evil: 1.txt"}, "attachments.filename"),
        ({"filename": ""}, "attachments.filename"),
        ({"filename": "x" * 256}, "attachments.filename"),
        ({"mimetype": "text"}, "attachments.mimetype"),
        ({"mimetype": "text/plain\r\nX: y"}, "attachments.mimetype"),
        ({"content_id": "a b"}, "attachments.content_id"),
        ({"content_id": "a\r\nb"}, "attachments.content_id"),
        ({"filename": None, "inline": True}, "attachments.content_id"),
        ({"content": "text, not bytes"}, "attachments.content"),
        ({"inline": "yes"}, "attachments.inline"),
    ],
)
def test_attachment_validation(kwargs: dict, field: str) -> None:
    fields = {"filename": "file.txt", "content": b"data"}
    fields.update(kwargs)
    with pytest.raises(InvalidMessage) as caught:
        Attachment(**fields)
    assert caught.value.field == field


def test_attachment_defaults() -> None:
    assert Attachment("report.pdf", b"x").mimetype == "application/pdf"
    assert Attachment(None, b"x").mimetype == "application/octet-stream"
    assert Attachment("weird.zzzz", b"x").mimetype == "application/octet-stream"
    assert Attachment("logo.png", b"x", inline=True).content_id == "logo.png"
    assert Attachment("a.png", b"x", content_id="<cid1>").content_id == "cid1"
    assert Attachment("a.bin", bytearray(b"ab")).content == b"ab"


def test_metadata_numbers_become_strings_and_booleans_are_refused() -> None:
    assert simple_message(metadata={"n": 3, "f": 1.5}).metadata == {"n": "3", "f": "1.5"}
    with pytest.raises(InvalidMessage):
        simple_message(metadata={"b": True})


def test_repr_does_not_dump_bodies_or_attachments() -> None:
    message = simple_message(
        text="secret body text", attachments=[Attachment("a.bin", b"attachment-bytes")]
    )
    text = repr(message)
    assert "secret body text" not in text
    assert "attachment-bytes" not in text
    assert "<16 characters>" in text and "<16 bytes>" in text


def test_many_recipients_are_accepted_when_the_cap_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    """With Message.max_recipients raised, 10,000 recipients build a valid message."""
    monkeypatch.setattr(Message, "max_recipients", 10_000)
    recipients = [f"user{i}@example.com" for i in range(10_000)]
    message = simple_message(to=recipients)
    assert len(message.recipients()) == 10_000


def test_recipients_are_deduplicated_in_order() -> None:
    message = simple_message(
        to=["A <a@example.com>", "b@example.com"],
        cc=["a@EXAMPLE.com"],
        bcc=["c@example.com", "b@example.com"],
    )
    assert message.recipients() == ("a@example.com", "b@example.com", "c@example.com")


# -- MIME -----------------------------------------------------------------------------------


def test_to_mime_full_structure() -> None:
    message = full_message()
    parsed = parse(message.to_mime().as_bytes())
    assert parsed["From"] == "Zoë Sender <sender@example.com>"
    assert parsed["To"] == "Ann Tö <ann@example.com>, bob@example.com"
    assert parsed["Cc"] == "Cäcilie <cc1@example.com>, cc2@example.com"
    assert parsed["Reply-To"] == "Replies <reply@example.com>"
    assert parsed["Subject"] == "Grüße — your receipt"
    assert parsed["Message-ID"] == "<full-message-1@example.com>"
    assert parsed["X-Campaign"] == "spring-2026"
    assert parsed["Bcc"] is None
    assert parsed["Date"] is not None
    assert parsed.get_content_type() == "multipart/mixed"
    plain = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain == "Hallo, grüße!\nSee the PDF.\n"
    html = parsed.get_body(("html",))
    assert "grüße" in html.get_content()
    related = [p for p in parsed.walk() if p.get_content_type() == "multipart/related"]
    assert len(related) == 1
    inline = [p for p in parsed.walk() if p["Content-ID"]]
    assert [p["Content-ID"] for p in inline] == ["<logo.png>"]
    assert inline[0].get_content() == PNG_BYTES
    attachments = list(parsed.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["Rechnung-ä.pdf"]
    assert attachments[0].get_content() == PDF_BYTES


def test_raw_mime_headers_are_ascii_and_have_no_bare_newlines() -> None:
    raw = full_message().to_mime().as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert b"Bcc" not in raw and b"bcc1@example.com" not in raw


def test_to_mime_single_part_bodies() -> None:
    text_only = parse(simple_message().to_mime().as_bytes())
    assert text_only.get_content_type() == "text/plain"
    html_only = parse(simple_message(text=None, html="<p>x</p>").to_mime().as_bytes())
    assert html_only.get_content_type() == "text/html"


def test_inline_attachment_without_html_is_attached_inline() -> None:
    message = simple_message(attachments=[Attachment("a.png", PNG_BYTES, inline=True)])
    parsed = parse(message.to_mime().as_bytes())
    part = next(p for p in parsed.walk() if p["Content-ID"])
    assert part.get_content_disposition() == "inline"


def test_utf8_local_part_selects_smtputf8_policy() -> None:
    message = simple_message(to="jörg@bücher.de")
    assert message.needs_smtputf8
    raw = message.to_mime().as_bytes()
    assert "jörg@bücher.de".encode() in raw


def test_long_lines_and_large_attachments_are_encoded() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB of every byte value
    message = simple_message(text="x" * 5000, attachments=[Attachment("big.bin", big)])
    parsed = parse(message.to_mime().as_bytes())
    assert next(parsed.iter_attachments()).get_content() == big
    assert all(len(line) <= 998 for line in message.to_mime().as_bytes().split(b"\r\n"))


# -- dict round trip ---------------------------------------------------------------------------


def test_dict_round_trip_is_exact_and_json_safe() -> None:
    message = full_message()
    data = json.loads(json.dumps(message.to_dict()))
    assert Message.from_dict(data) == message


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (lambda d: d.update(unknown=1), "unknown", 2),
        (lambda d: d.pop("sender"), "sender", 1),
        (lambda d: d.update(to=[]), "to", 1),
        (lambda d: d.update(attachments="x"), "attachments", 2),
        (
            lambda d: d["attachments"][0].update(content="***not base64***"),
            "attachments.content",
            2,
        ),
        (lambda d: d["attachments"][0].pop("content"), "attachments.content", 1),
        (lambda d: d["attachments"][0].update(extra=1), "attachments.extra", 2),
        (lambda d: d["attachments"].append("nope"), "attachments", 2),
    ],
)
def test_from_dict_refuses_bad_input(mutate, field: str, code: int) -> None:  # type: ignore[no-untyped-def]
    data = full_message().to_dict()
    mutate(data)
    with pytest.raises(InvalidMessage) as caught:
        Message.from_dict(data)
    assert caught.value.field == field
    assert caught.value.code == code


def test_from_dict_needs_an_object() -> None:
    with pytest.raises(InvalidMessage):
        Message.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]
