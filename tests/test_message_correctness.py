"""Issue 9's Message bugs: IDNA 2008, replace() ids, hashing, recipient caps, linear headers.

Each test here failed before its fix (noted per test).
"""

from __future__ import annotations

import copy
import email
import email.policy
import json
import pickle
from email import _header_value_parser as hvp
from typing import Any

import pytest

from mailfailover import InvalidMessage, Message
from mailfailover import message as message_module
from mailfailover.message import FrozenDict, parse_mailbox
from mailfailover.testing import full_message, simple_message

# -- IDNA 2008 (before: the idna codec, IDNA 2003, sent b@straße.de to strasse.de) -----------


@pytest.mark.parametrize(
    ("address", "ascii_email"),
    [
        ("b@straße.de", "b@xn--strae-oqa.de"),
        ("b@STRASSE.de", "b@STRASSE.de"),  # ASCII stays as written
        ("b@Straße.DE", "b@xn--strae-oqa.de"),  # UTS #46 maps case
        ("b@faß.de", "b@xn--fa-hia.de"),
        ("b@βόλος.com", "b@xn--nxasmm1c.com"),  # final sigma kept (IDNA 2003 folds it)
        ("b@bücher.example", "b@xn--bcher-kva.example"),
        ("b@例え.テスト", "b@xn--r8jz45g.xn--zckzah"),
        ("b@xn--strae-oqa.de", "b@xn--strae-oqa.de"),
    ],
)
def test_domains_are_encoded_by_idna_2008(address: str, ascii_email: str) -> None:
    assert parse_mailbox(address).ascii_email == ascii_email


@pytest.mark.parametrize(
    "address",
    [
        "b@☃.net",  # symbols: allowed by IDNA 2003, refused by 2008
        "b@xn--zz.de",  # not a valid A-label
        "b@a\u200db.de",  # ZWJ outside its context
    ],
)
def test_domains_idna_2008_refuses_are_invalid_messages(address: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        Message("a@example.com", [address], "s", "t")
    assert caught.value.field == "to"
    assert caught.value.code == 2


def test_the_envelope_and_headers_use_the_idna_2008_domain() -> None:
    message = Message("Zoë <z@straße.de>", ["b@straße.de"], "s", "t", cc=["c@faß.de"])
    assert message.sender_mailbox.ascii_email == "z@xn--strae-oqa.de"
    assert message.recipients() == ("b@straße.de", "c@faß.de")
    assert [m.ascii_email for m in message.mailboxes("to")] == ["b@xn--strae-oqa.de"]
    raw = message.to_mime().as_bytes()
    assert b"z@xn--strae-oqa.de" in raw and b"b@xn--strae-oqa.de" in raw
    assert b"c@xn--fa-hia.de" in raw
    assert b"strasse" not in raw.lower() and b"fass.de" not in raw


# -- replace() (before: the copy kept message_id, and with it Brevo's idempotency key) -----


def test_replace_gives_the_copy_a_new_message_id() -> None:
    original = simple_message()
    copy_for_bob = original.replace(to=["bob@example.com"])
    assert copy_for_bob.message_id != original.message_id
    assert copy_for_bob.message_id.endswith("@example.com>")
    assert copy_for_bob.to == ("bob@example.com",) and copy_for_bob.subject == original.subject


def test_replace_uses_the_new_sender_domain_for_the_new_id() -> None:
    copy_ = simple_message().replace(sender="x@other.example")
    assert copy_.message_id.endswith("@other.example>")


def test_replace_keeps_an_id_that_is_passed() -> None:
    original = full_message()
    retry = original.replace(subject="again", message_id=original.message_id)
    assert retry.message_id == original.message_id == "<full-message-1@example.com>"


# -- hash (before: TypeError from the dict fields of a frozen class) -------------------------


def test_messages_hash_and_equal_messages_hash_equal() -> None:
    one, two = full_message(), full_message()
    assert one == two and hash(one) == hash(two)
    assert len({one, two, simple_message(message_id="<x@example.com>")}) == 2


def test_headers_and_metadata_cannot_be_changed_in_place() -> None:
    """The injection guard ran at construction: an in-place edit would bypass it."""
    message = full_message()
    with pytest.raises(TypeError):
        message.headers["X-Evil"] = "a\r\nBcc: victim@example.com"
    with pytest.raises(TypeError):
        message.metadata.update({"k": "v"})
    with pytest.raises(TypeError):
        del message.headers["X-Campaign"]
    with pytest.raises(TypeError):
        message.metadata |= {"k": "v"}
    assert "X-Evil" not in message.headers


def test_frozen_mappings_still_behave_as_dicts() -> None:
    message = full_message()
    assert isinstance(message.headers, dict) and isinstance(message.headers, FrozenDict)
    assert message.headers == {"X-Campaign": "spring-2026"}
    assert json.loads(json.dumps(message.metadata)) == {"user_id": "42", "order": "A-17"}
    assert pickle.loads(pickle.dumps(message)) == message
    assert copy.deepcopy(message) == message and copy.copy(message) == message
    assert Message.from_dict(message.to_dict()) == message


# -- the recipient cap (before: any number; 100,000 pinned a worker for minutes) ------------


@pytest.mark.parametrize("field", ["to", "cc", "bcc"])
def test_more_recipients_than_the_cap_is_invalid_naming_the_field(field: str) -> None:
    addresses = [f"r{i}@example.com" for i in range(1001)]
    fields: dict[str, Any] = {"to": ["a@example.com"], field: addresses}
    with pytest.raises(InvalidMessage) as caught:
        Message("s@example.com", subject="s", text="t", **fields)
    assert caught.value.field == field
    assert caught.value.code == 2
    assert "1,001 recipients" in caught.value.message
    assert "1,000" in caught.value.message


def test_the_cap_counts_to_cc_and_bcc_together() -> None:
    to = [f"t{i}@example.com" for i in range(600)]
    bcc = [f"b{i}@example.com" for i in range(401)]
    with pytest.raises(InvalidMessage) as caught:
        Message("s@example.com", to, "s", "t", bcc=bcc)
    assert caught.value.field == "bcc"
    assert len(Message("s@example.com", to, "s", "t", bcc=bcc[:400]).recipients()) == 1000


def test_the_cap_is_refused_before_any_address_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 addresses are counted, not parsed."""
    parsed = []
    real = message_module.parse_mailbox

    def counting(value: str) -> Any:
        parsed.append(value)
        return real(value)

    monkeypatch.setattr(message_module, "parse_mailbox", counting)
    with pytest.raises(InvalidMessage, match="100,000 recipients"):
        Message("s@example.com", [f"r{i}@example.com" for i in range(100_000)], "s", "t")
    assert parsed == []


def test_the_cap_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Message, "max_recipients", 3)
    with pytest.raises(InvalidMessage, match="at most 3"):
        Message("s@example.com", ["a@x.com", "b@x.com"], "s", "t", cc=["c@x.com", "d@x.com"])
    monkeypatch.setattr(Message, "max_recipients", 2000)
    assert len(Message("s@example.com", [f"r{i}@x.com" for i in range(1500)], "s", "t").to) == 1500


def test_reply_to_is_not_a_recipient() -> None:
    message = Message("s@example.com", "a@x.com", "s", "t", reply_to=["r@x.com"] * 3)
    assert message.recipients() == ("a@x.com",)


# -- linear address headers (before: get_address_list re-scanned the rest per address) ------

NAMES = [
    "Ann <ann@example.com>",
    '"Doe, John" <j@example.com>',
    "Zoë Ünïcode <z@bücher.example>",
    "plain@example.com",
    '"quoted \\"name\\"" <q@example.com>',
    '"a,b"@example.com',
    "Ünï <ü@example.com>",
]


def test_address_headers_do_not_use_the_quadratic_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    real = hvp.get_address_list

    def refuse(value: str) -> Any:
        if value.count("@") > 1:
            raise AssertionError("get_address_list re-scans the header at every address")
        return real(value)  # one address (From): linear anyway

    to = [f"User {i} <user{i}@example.com>" for i in range(300)]
    message = Message("s@example.com", to, "s", "t", cc=NAMES[:4])
    expected = parse(message.to_mime().as_bytes())
    with monkeypatch.context() as patched:
        patched.setattr(hvp, "get_address_list", refuse)
        raw = message.to_mime().as_bytes()  # building and folding
    parsed = parse(raw)
    assert [str(a) for a in parsed["To"].addresses] == [str(a) for a in expected["To"].addresses]
    assert len(parsed["To"].addresses) == 300
    assert [a.addr_spec for a in parsed["Cc"].addresses] == [
        "ann@example.com", "j@example.com", "z@xn--bcher-kva.example", "plain@example.com"
    ]  # fmt: skip


@pytest.mark.parametrize("utf8", [False, True])
def test_linear_headers_are_the_stdlib_s_headers(utf8: bool) -> None:
    """Byte for byte what the email package's own parser gives, for hard names too."""
    message = Message("s@example.com", NAMES, "s", "t", reply_to=NAMES[:3])
    policy = email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
    ours = message.to_mime(policy=policy).as_bytes()
    theirs = message.to_mime(policy=policy.clone(header_factory=_plain_registry())).as_bytes()
    assert _headers(ours) == _headers(theirs)


def test_a_surprise_inside_the_email_package_falls_back_to_its_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the private parser changes shape, the header is still right (only slower)."""

    class Changed:  # the private module as a future Python might have it
        AddressList = hvp.AddressList
        ValueTerminal = hvp.ValueTerminal
        get_address_list = staticmethod(hvp.get_address_list)

        @staticmethod
        def get_address(value: str) -> Any:
            raise AttributeError("simulated: internals changed")

    message = Message("s@example.com", NAMES[:4], "s", "t")
    expected = _headers(message.to_mime().as_bytes())
    monkeypatch.setattr(message_module, "_hvp", Changed)
    message_module._HEADER_CLASSES._classes.clear()
    try:
        assert _headers(message.to_mime().as_bytes()) == expected
    finally:
        message_module._HEADER_CLASSES._classes.clear()


def parse(raw: bytes) -> Any:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _plain_registry() -> Any:
    from email.headerregistry import HeaderRegistry

    class Registry(HeaderRegistry):  # a caller's own registry: to_mime leaves it alone
        pass

    return Registry()


def _headers(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return [line for line in head.split(b"\r\n") if not line.startswith(b"Date:")]
