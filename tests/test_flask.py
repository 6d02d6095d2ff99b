"""The HTTP adapter (``mailfailover.flask``) through Flask's test client.

Sections: the original service's scenarios; the field matrix (each content type x each
field x good, missing, malformed and hostile values); what is specific to JSON and to forms;
content types; authentication; the sender allow-list; the body limit; /health; errors as
JSON; logging; the extension in a user's app; property-based hostile input; serve()'s
checks. Every refusal also asserts that no driver was called.
"""

from __future__ import annotations

import io
import json
import logging
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import flask
import pytest
import yaml
from http_helpers import (
    BOUNDARY,
    DOWN_UP,
    GOOD,
    KINDS,
    MULTIPART_TYPE,
    URLENCODED_TYPE,
    b64,
    encode,
    memory_config,
    multipart,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec
from werkzeug.test import EnvironBuilder, run_wsgi_app

from mailfailover import ConfigError, FailoverMailer, MemoryDriver, Message
from mailfailover.config import HttpConfig, load_config
from mailfailover.errors import (
    INTERNAL_ERROR,
    MESSAGE_SUPPRESSED,
    NOT_FOUND,
    SENDER_NOT_ALLOWED,
    TOO_LARGE,
    UNAUTHORIZED,
)
from mailfailover.flask import (
    API_TOKEN_ENV,
    MailFailover,
    SenderAllowList,
    create_app,
    serve,
)
from mailfailover.flask._send_request import _ATTACHMENT_KEYS, FIELDS
from mailfailover.flask._server import _check_config, _is_loopback
from mailfailover.message import parse_mailbox

TOKEN = "tok-3f9a8c7e1d2b4a6f"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"


@pytest.fixture(autouse=True)
def _no_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token in the developer's environment must not switch authentication on."""
    monkeypatch.delenv(API_TOKEN_ENV, raising=False)


@attrs.define
class Service:
    """A test client on an app whose mailer has only memory drivers."""

    client: Any
    mailer: FailoverMailer

    @property
    def drivers(self) -> list[MemoryDriver]:
        return list(self.mailer.drivers)  # type: ignore[arg-type]

    @property
    def calls(self) -> int:
        return sum(d.calls for d in self.drivers)

    @property
    def sent(self) -> list[Message]:
        return [m for d in self.drivers for m in d.outbox]

    def post(self, kind: str, fields: Mapping[str, Any], **headers: str) -> Any:
        return self.client.post("/send", headers=headers, **encode(kind, fields))

    def raw(self, data: bytes | str, content_type: str | None, **headers: str) -> Any:
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.client.post("/send", data=data, headers=headers)


@pytest.fixture
def make() -> Iterator[Any]:
    mailers: list[FailoverMailer] = []

    def factory(config: Any = None, *, http: HttpConfig | None = None) -> Service:
        mailer = FailoverMailer.from_config(config or memory_config())
        mailers.append(mailer)
        return Service(create_app(mailer, http=http).test_client(), mailer)

    yield factory
    for mailer in mailers:
        mailer.close()


@pytest.fixture
def svc(make: Any) -> Service:
    return make()


def error(response: Any, status: int, code: int, field: Any = ...) -> dict[str, Any]:
    """Assert a JSON error response and return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert "field" in body
    if field is not ...:
        assert body["field"] == field, body
    return body


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert body["status"] == "sent"
    return body


# -- the original service's scenarios ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_healthy_provider_sends_200(make: Any, kind: str) -> None:
    svc = make(memory_config(None))
    body = ok(svc.post(kind, GOOD))
    assert body["driver"] == "d0"
    assert body["message_id"] == svc.sent[0].message_id
    assert [a["outcome"] for a in body["attempts"]] == ["sent"]
    assert set(body) == {"status", "driver", "message_id", "attempts"}


@pytest.mark.parametrize("kind", KINDS)
def test_down_provider_only_is_503_code_5(make: Any, kind: str) -> None:
    svc = make(memory_config("unavailable"))
    body = error(svc.post(kind, GOOD), 503, 5, None)
    assert [(a["driver"], a["outcome"]) for a in body["attempts"]] == [("d0", "unavailable")]
    assert body["attempts"][0]["error"] == "configured to be unavailable"
    assert svc.sent == []


@pytest.mark.parametrize("kind", KINDS)
def test_down_then_healthy_second_delivers(make: Any, kind: str) -> None:
    svc = make(DOWN_UP)
    body = ok(svc.post(kind, GOOD))
    assert body["driver"] == "up"
    assert [(a["driver"], a["outcome"]) for a in body["attempts"]] == [
        ("down", "unavailable"),
        ("up", "sent"),
    ]
    assert len(svc.drivers[1].outbox) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_data_provider_is_422_code_2_and_nothing_else_tried(make: Any, kind: str) -> None:
    svc = make(memory_config("reject", None))
    body = error(svc.post(kind, GOOD), 422, 2, None)
    assert body["driver"] == "d0"
    assert [(a["driver"], a["outcome"]) for a in body["attempts"]] == [("d0", "rejected")]
    assert svc.drivers[1].calls == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("missing", ["sender", "to"])
def test_missing_sender_or_to_is_code_1(svc: Service, kind: str, missing: str) -> None:
    fields = {k: v for k, v in GOOD.items() if k != missing}
    error(svc.post(kind, fields), 400, 1, missing)
    assert svc.calls == 0


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_sender_address_is_code_2(svc: Service, kind: str) -> None:
    error(svc.post(kind, {**GOOD, "sender": "not-an-address"}), 400, 2, "sender")
    assert svc.calls == 0


def test_base64_attachments_are_delivered_intact(make: Any) -> None:
    svc = make(DOWN_UP)
    png = bytes(range(256))[::-1] * 3
    fields = {
        **GOOD,
        "attachments": [
            {"filename": "invoice.pdf", "data": b64(PDF), "mimetype": "application/pdf"},
            {"filename": "logo.png", "data": b64(png)},
            {"filename": "empty.txt", "data": ""},
        ],
    }
    ok(svc.post("json", fields))
    (message,) = svc.drivers[1].outbox
    got = [(a.filename, a.content, a.mimetype) for a in message.attachments]
    assert got == [
        ("invoice.pdf", PDF, "application/pdf"),
        ("logo.png", png, "image/png"),
        ("empty.txt", b"", "text/plain"),
    ]


# -- every field, every content type ----------------------------------------------------------

FULL: dict[str, Any] = {
    "sender": '"Shop, Inc." <shop@example.com>',
    "to": ["ann@example.com", '"Doe, John" <john@example.com>'],
    "cc": "cc1@example.com, Cee Two <cc2@example.com>",
    "bcc": ["bcc@example.com"],
    "reply_to": "help@example.com",
    "subject": "Ünïcode subject",
    "text": "plain body\nline 2",
    "html": "<p>html body</p>",
    "headers": {"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@example.com>"},
    "tags": ["receipt", "shop"],
    "metadata": {"order": "42", "customer": "ann"},
    "message_id": "<order-42@example.com>",
    "attachments": [{"filename": "invoice.pdf", "data": b64(PDF), "mimetype": "application/pdf"}],
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_reaches_the_message(svc: Service, kind: str) -> None:
    ok(svc.post(kind, FULL))
    (message,) = svc.sent
    assert message.sender == '"Shop, Inc." <shop@example.com>'
    assert message.to == ("ann@example.com", '"Doe, John" <john@example.com>')
    assert message.cc == ("cc1@example.com", "Cee Two <cc2@example.com>")
    assert message.bcc == ("bcc@example.com",)
    assert message.reply_to == ("help@example.com",)
    assert message.subject == "Ünïcode subject"
    assert message.text == "plain body\nline 2"
    assert message.html == "<p>html body</p>"
    assert message.headers == FULL["headers"]
    assert message.tags == ("receipt", "shop")
    assert message.metadata == {"order": "42", "customer": "ann"}
    assert message.message_id == "<order-42@example.com>"
    assert [(a.filename, a.content, a.mimetype) for a in message.attachments] == [
        ("invoice.pdf", PDF, "application/pdf")
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("to", "a@example.com, b@example.com", ("a@example.com", "b@example.com")),
        ("to", ["a@example.com", "b@example.com, c@example.com"],
         ("a@example.com", "b@example.com", "c@example.com")),
        ("to", '"Doe, J" <j@example.com>', ('"Doe, J" <j@example.com>',)),
        ("to", "a@example.com, , ", ("a@example.com",)),
        ("cc", "", ()),
        ("bcc", ["x@example.com", ""], ("x@example.com",)),
        ("reply_to", "Help <help@bücher.example>", ("Help <help@bücher.example>",)),
    ],
)  # fmt: skip
def test_address_lists_split_and_repeat(
    svc: Service, kind: str, field: str, value: Any, expected: tuple[str, ...]
) -> None:
    ok(svc.post(kind, {**GOOD, field: value}))
    assert getattr(svc.sent[0], field) == expected


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"to": None}, "to"),
        ({"to": ""}, "to"),
        ({"to": " , ,"}, "to"),
        ({"to": []}, "to"),
        ({"sender": ""}, "sender"),
        ({"sender": "   "}, "sender"),
        ({"subject": None}, "subject"),
        ({"text": None}, "text"),
        ({"text": ""}, "text"),
        ({"text": "", "html": ""}, "text"),
    ],
)
def test_missing_or_empty_required_fields_are_code_1(
    svc: Service, kind: str, fields: dict[str, Any], field: str
) -> None:
    body = {k: v for k, v in {**GOOD, **fields}.items() if v is not None and v != []}
    if kind == "json":
        body = {**GOOD, **fields}
    error(svc.post(kind, body), 400, 1, field)
    assert svc.calls == 0


@pytest.mark.parametrize("kind", KINDS)
def test_empty_subject_given_explicitly_is_allowed(svc: Service, kind: str) -> None:
    ok(svc.post(kind, {**GOOD, "subject": ""}))
    assert svc.sent[0].subject == ""


@pytest.mark.parametrize("kind", KINDS)
def test_html_only_is_enough(svc: Service, kind: str) -> None:
    ok(svc.post(kind, {**GOOD, "text": "", "html": "<b>hi</b>"}))
    assert (svc.sent[0].text, svc.sent[0].html) == (None, "<b>hi</b>")


INJECTION = "a@b.com\r\nBcc: x@y.com"

MALFORMED = [
    ("sender", "not-an-address", "sender"),
    ("sender", "Ann <ann@example.com", "sender"),
    ("sender", "a@b.com, c@d.com", "sender"),
    ("sender", INJECTION, "sender"),
    ("sender", "ann@example.com\nX-Evil: 1", "sender"),
    ("to", "x@", "to"),
    ("to", INJECTION, "to"),
    ("to", "Ann <ann@example.com>\r\nBcc: x@y.com", "to"),
    ("to", "a@b.com\nb@c.com", "to"),
    ("cc", "nope", "cc"),
    ("cc", INJECTION, "cc"),
    ("bcc", "@example.com", "bcc"),
    ("bcc", INJECTION, "bcc"),
    ("reply_to", "a@@b.com", "reply_to"),
    ("reply_to", INJECTION, "reply_to"),
    ("subject", "hi\r\nBcc: x@y.com", "subject"),
    ("subject", "hi\nthere", "subject"),
    ("subject", "nul\x00", "subject"),
    ("headers", {"Bcc": "x@y.com"}, "headers"),
    ("headers", {"Content-Type": "text/html"}, "headers"),
    ("headers", {"X-A\r\nBcc": "x@y.com"}, "headers"),
    ("headers", {"X A": "1"}, "headers"),
    ("headers", {"X-A": "v\r\nBcc: x@y.com"}, "headers.X-A"),
    ("headers", {"X-A": "v\nBcc: x@y.com"}, "headers.X-A"),
    ("tags", ["ok", "bad\r\ntag"], "tags"),
    ("metadata", {"k": "v\r\nBcc: x@y.com"}, "metadata.k"),
    ("metadata", {"k\n": "v"}, "metadata"),
    ("message_id", "not-a-message-id", "message_id"),
    ("message_id", "<a@b.com>\r\nBcc: x@y.com", "message_id"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("field", "value", "reported"), MALFORMED)
def test_malformed_and_hostile_values_are_code_2(
    svc: Service, kind: str, field: str, value: Any, reported: str
) -> None:
    error(svc.post(kind, {**GOOD, field: value}), 400, 2, reported)
    assert svc.calls == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["from", "priority", "To", "attachment", "files"])
def test_unknown_fields_are_code_2(svc: Service, kind: str, name: str) -> None:
    body = error(svc.post(kind, {**GOOD, name: "x"}), 400, 2, name)
    assert "is not a field" in body["message"]
    assert svc.calls == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("attachment", "field", "code"),
    [
        ({"filename": "a\r\nb.txt", "data": "aGk="}, "attachments[0].filename", 2),
        ({"filename": "a.txt", "data": "aGk=", "mimetype": "text"}, "attachments[0].mimetype", 2),
        ({"filename": "a.txt", "data": "aGk=", "mimetype": "te xt/plain"},
         "attachments[0].mimetype", 2),
    ],
)  # fmt: skip
def test_bad_attachments_are_refused(
    svc: Service, kind: str, attachment: dict[str, Any], field: str, code: int
) -> None:
    if kind == "multipart" and "\r" in attachment["filename"]:
        field = ...  # CR LF cannot be in a part header: the part itself is malformed
    error(svc.post(kind, {**GOOD, "attachments": [attachment]}), 400, code, field)
    assert svc.calls == 0


# -- JSON specifics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"sender": 5}, "sender"),
        ({"sender": ["a@example.com"]}, "sender"),
        ({"to": 5}, "to"),
        ({"to": {"a": "b@example.com"}}, "to"),
        ({"to": [5]}, "to"),
        ({"to": [None]}, "to"),
        ({"to": [["a@example.com"]]}, "to"),
        ({"cc": True}, "cc"),
        ({"subject": ["x"]}, "subject"),
        ({"subject": 1}, "subject"),
        ({"text": {"x": 1}}, "text"),
        ({"html": 0}, "html"),
        ({"headers": ["X-A: 1"]}, "headers"),
        ({"headers": "X-A: 1"}, "headers"),
        ({"headers": {"X-A": 1}}, "headers.X-A"),
        ({"headers": {"X-A": None}}, "headers.X-A"),
        ({"tags": {"a": 1}}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {"k": True}}, "metadata.k"),
        ({"metadata": {"k": {"nested": 1}}}, "metadata.k"),
        ({"message_id": 42}, "message_id"),
        ({"attachments": {"filename": "a"}}, "attachments"),
        ({"attachments": "aGk="}, "attachments"),
        ({"attachments": [5]}, "attachments[0]"),
        ({"attachments": [{"filename": "a.txt", "data": 5}]}, "attachments[0].data"),
        ({"attachments": [{"filename": "a.txt", "data": "***"}]}, "attachments[0].data"),
        ({"attachments": [{"filename": "a.txt", "data": "aGk"}]}, "attachments[0].data"),
        ({"attachments": [{"filename": "a.txt", "data": "aGk=\u00e9"}]}, "attachments[0].data"),
        ({"attachments": [{"filename": "a.txt", "data": "aGk=", "size": 2}]},
         "attachments[0].size"),
        ({"attachments": [{"filename": 5, "data": "aGk="}]}, "attachments[0].filename"),
        ({"attachments": [{"filename": "", "data": "aGk="}]}, "attachments[0].filename"),
        ({"attachments": [{"filename": "a.txt", "data": "aGk=", "inline": "yes"}]},
         "attachments[0].inline"),
    ],
)  # fmt: skip
def test_json_wrong_types_are_refused_with_the_field(
    svc: Service, fields: dict[str, Any], field: str
) -> None:
    error(svc.post("json", {**GOOD, **fields}), 400, 2, field)
    assert svc.calls == 0


def test_json_attachment_without_data_is_missing_code_1(svc: Service) -> None:
    body = {**GOOD, "attachments": [{"filename": "a.txt", "data": "aGk="}, {"filename": "b"}]}
    error(svc.post("json", body), 400, 1, "attachments[1].data")
    assert svc.calls == 0


def test_json_base64_may_be_wrapped_in_lines(svc: Service) -> None:
    wrapped = "\n".join(b64(PDF)[i : i + 76] for i in range(0, len(b64(PDF)), 76)) + "\r\n"
    ok(svc.post("json", {**GOOD, "attachments": [{"filename": "a.pdf", "data": wrapped}]}))
    assert svc.sent[0].attachments[0].content == PDF


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"{", "line 1"),
        (b'{"sender": "a@example.com",}', "line 1"),
        (b"{'sender': 'a@example.com'}", "line 1"),
        (b"[]", "must be a JSON object, not an array"),
        (b'"text"', "not a string"),
        (b"null", "not null"),
        (b"42", "not a number"),
        (b'{"to": NaN}', "NaN"),
        (b'{"to": Infinity}', "Infinity"),
        (b'{"to": "a@example.com", "to": "b@example.com"}', "appears twice"),
        (b'{"headers": {"X-A": "1", "X-A": "2"}}', "appears twice"),
        (b'{"subject": "\\ud800"}', "surrogate"),
        (b'{"\\udfff": "x"}', "surrogate"),
        (b'{"subject": "caf\xe9"}', "not UTF-8"),
        (b"\xff\xfe{\x00}\x00", "not UTF-8"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
        (b'{"metadata": {"n": ' + b"9" * 5000 + b"}}", "digits"),
    ],
)
def test_malformed_json_is_code_3(svc: Service, body: bytes, needle: str) -> None:
    result = error(svc.raw(body, "application/json"), 400, 3)
    assert needle in result["message"]
    assert svc.calls == 0


def test_json_with_a_byte_order_mark_is_accepted(svc: Service) -> None:
    ok(svc.raw(b"\xef\xbb\xbf" + json.dumps(GOOD).encode(), "application/json"))


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/json;charset=UTF-8",
     "APPLICATION/JSON", "application/vnd.api+json"],
)  # fmt: skip
def test_json_content_type_variants_are_accepted(svc: Service, content_type: str) -> None:
    ok(svc.raw(json.dumps(GOOD), content_type))


def test_json_numbers_in_metadata_become_strings(svc: Service) -> None:
    ok(svc.post("json", {**GOOD, "metadata": {"n": 42, "x": 1.5}}))
    assert svc.sent[0].metadata == {"n": "42", "x": "1.5"}


def test_inline_attachment_with_content_id(svc: Service) -> None:
    attachment = {"filename": "logo.png", "data": b64(b"\x89PNG"), "inline": True,
                  "content_id": "logo"}  # fmt: skip
    ok(svc.post("json", {**GOOD, "html": '<img src="cid:logo">', "attachments": [attachment]}))
    (sent,) = svc.sent[0].attachments
    assert (sent.inline, sent.content_id, sent.mimetype) == (True, "logo", "image/png")


# -- forms ------------------------------------------------------------------------------------


def _form(svc: Service, kind: str, pairs: list[tuple[str, str]]) -> Any:
    if kind == "urlencoded":
        return svc.raw(urllib.parse.urlencode(pairs), URLENCODED_TYPE)
    return svc.raw(multipart((n, v, None, None) for n, v in pairs), MULTIPART_TYPE)


BASE_PAIRS = [("sender", "shop@example.com"), ("to", "ann@example.com"),
              ("subject", "s"), ("text", "t")]  # fmt: skip


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
@pytest.mark.parametrize("name", ["sender", "subject", "text", "html", "message_id"])
def test_form_single_fields_may_not_repeat(svc: Service, kind: str, name: str) -> None:
    value = "<a@example.com>" if name == "message_id" else "x@example.com"
    pairs = [*BASE_PAIRS, (name, value), (name, value)]
    body = error(_form(svc, kind, pairs), 400, 2, name)
    assert "more than once" in body["message"]
    assert svc.calls == 0


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_form_headers_and_metadata_as_bracketed_fields_and_json(svc: Service, kind: str) -> None:
    pairs = [
        *BASE_PAIRS,
        ("headers[X-One]", "1"),
        ("headers", json.dumps({"X-Two": "2"})),
        ("metadata[order]", "42"),
        ("metadata", json.dumps({"n": 7})),
        ("tags", "a"),
        ("tags", "b"),
        ("tags", ""),
    ]
    ok(_form(svc, kind, pairs))
    message = svc.sent[0]
    assert message.headers == {"X-One": "1", "X-Two": "2"}
    assert message.metadata == {"order": "42", "n": "7"}
    assert message.tags == ("a", "b")


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ([("headers", "X-A: 1")], "headers"),
        ([("headers", "[1, 2]")], "headers"),
        ([("headers", '{"X-A": "1", "X-A": "2"}')], "headers"),
        ([("headers", '{"X-A": "\\ud800"}')], "headers"),
        ([("headers[X-A]", "1"), ("headers", '{"X-A": "2"}')], "headers"),
        ([("headers[X-A]", "1"), ("headers[X-A]", "2")], "headers[X-A]"),
        ([("headers[X-A]", "1"), ("headers[x-a]", "2")], "headers"),
        ([("headers[Bcc]", "x@y.com")], "headers"),
        ([("headers[X-A\r\nBcc]", "x@y.com")], "headers"),
        ([("headers[X-A]", "v\r\nBcc: x@y.com")], "headers.X-A"),
        ([("metadata", "not json")], "metadata"),
        ([("metadata", '{"k": {"n": 1}}')], "metadata.k"),
        ([("attachments", "not json")], "attachments"),
        ([("attachments", '{"filename": "a"}')], "attachments"),
        ([("attachments", '[{"filename": "a", "data": "!!"}]')], "attachments[0].data"),
        ([("to[]", "b@example.com")], "to[]"),
        ([("to", "b@example.com\r\nBcc: x@y.com")], "to"),
    ],
)
def test_form_malformed_fields(
    svc: Service, kind: str, extra: list[tuple[str, str]], field: Any
) -> None:
    if kind == "multipart" and any("\r" in name for name, _ in extra):
        field = ...  # CR LF cannot be in a part header: the part itself is malformed
    error(_form(svc, kind, [*BASE_PAIRS, *extra]), 400, 2, field)
    assert svc.calls == 0


def test_urlencoded_attachments_as_json(svc: Service) -> None:
    pairs = [*BASE_PAIRS, ("attachments", json.dumps([{"filename": "a.pdf", "data": b64(PDF)}]))]
    ok(_form(svc, "urlencoded", pairs))
    assert svc.sent[0].attachments[0].content == PDF


def test_urlencoded_plus_and_percent_decoding(svc: Service) -> None:
    body = "sender=shop%40example.com&to=a%40example.com%2C+b%40example.com&subject=a+b%26c&text=t"
    ok(svc.raw(body, URLENCODED_TYPE))
    assert svc.sent[0].to == ("a@example.com", "b@example.com")
    assert svc.sent[0].subject == "a b&c"


@pytest.mark.parametrize(
    "body",
    [
        b"sender=shop%40example.com&to=a%40example.com&subject=caf\xe9&text=t",
        b"sender=shop%40example.com&to=a%40example.com&subject=caf%E9&text=t",
        b"sender=shop%40example.com&to=a%40example.com&subject=%ED%A0%80&text=t",
    ],
)
def test_urlencoded_not_utf8_is_code_2(svc: Service, body: bytes) -> None:
    result = error(svc.raw(body, URLENCODED_TYPE), 400, 2, None)
    assert "UTF-8" in result["message"]


def test_urlencoded_too_many_fields(svc: Service) -> None:
    body = "&".join(f"tags=t{i}" for i in range(1500))
    error(svc.raw(body, URLENCODED_TYPE), 400, 2, None)


def test_urlencoded_garbage_is_a_clear_error(svc: Service) -> None:
    body = error(svc.raw(json.dumps(GOOD), URLENCODED_TYPE), 400, 2)
    assert "is not a field" in body["message"]


def test_uploaded_file_is_intact_after_the_first_provider_failed(make: Any) -> None:
    svc = make(DOWN_UP)
    # Random bytes, then most of a boundary line: the parser must not cut the file there.
    blob = os.urandom(1024 * 1024) + b"\r\n--" + BOUNDARY[:-1].encode() + b"\r\n--\r\n"
    parts = [(n, v, None, None) for n, v in BASE_PAIRS]
    parts += [
        ("attachments", blob, "big.bin", "application/octet-stream"),
        ("attachments", PDF, "invoice.pdf", "application/pdf"),
        ("attachments", b"", "empty.txt", "text/plain"),
    ]
    assert ok(svc.raw(multipart(parts), MULTIPART_TYPE))["driver"] == "up"
    assert svc.drivers[0].calls == 1 and svc.drivers[0].outbox == []
    (message,) = svc.drivers[1].outbox
    assert [(a.filename, a.content, a.mimetype) for a in message.attachments] == [
        ("big.bin", blob, "application/octet-stream"),
        ("invoice.pdf", PDF, "application/pdf"),
        ("empty.txt", b"", "text/plain"),
    ]


def test_uploads_with_werkzeug_client_and_failover(make: Any) -> None:
    svc = make(DOWN_UP)
    data = {**dict(BASE_PAIRS), "to": ["a@example.com", "b@example.com"],
            "attachments": [(io.BytesIO(PDF), "invoice.pdf", "application/pdf"),
                            (io.BytesIO(b"x,y\n1,2\n"), "data.csv")]}  # fmt: skip
    ok(svc.client.post("/send", data=data, content_type="multipart/form-data"))
    (message,) = svc.drivers[1].outbox
    assert message.to == ("a@example.com", "b@example.com")
    assert [(a.filename, a.content) for a in message.attachments] == [
        ("invoice.pdf", PDF),
        ("data.csv", b"x,y\n1,2\n"),
    ]
    assert message.attachments[1].mimetype == "text/csv"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [("C:\\\\fakepath\\\\report.pdf", "report.pdf"), ("/home/ann/a.pdf", "a.pdf"),
     ("../../etc/passwd", "passwd"), ("naïve résumé.pdf", "naïve résumé.pdf")],
)  # fmt: skip
def test_upload_filenames_lose_directories(svc: Service, filename: str, expected: str) -> None:
    parts = [(n, v, None, None) for n, v in BASE_PAIRS]
    parts.append(("attachments", b"data", filename, None))
    ok(svc.raw(multipart(parts), MULTIPART_TYPE))
    assert svc.sent[0].attachments[0].filename == expected


def test_empty_file_input_is_ignored(svc: Service) -> None:
    """A browser sends an empty part with filename="" for a file input left empty."""
    parts = [(n, v, None, None) for n, v in BASE_PAIRS]
    parts.append(("attachments", b"", "", "application/octet-stream"))
    ok(svc.raw(multipart(parts), MULTIPART_TYPE))
    assert svc.sent[0].attachments == ()


@pytest.mark.parametrize(
    ("part", "field"),
    [
        (("attachments", b"x", "a\r\nb.txt", None), ...),  # the part header itself breaks
        (("attachments", b"x", "a.txt", "not a type"), "attachments[0].mimetype"),
        (("text", b"x", "t.txt", "text/plain"), "text"),
        (("photo", b"x", "p.png", "image/png"), "photo"),
        (("subject", b"caf\xe9", None, None), "subject"),
        (("subject", b"a\r\nBcc: x@y.com", None, None), "subject"),
    ],
)
def test_multipart_bad_parts(
    svc: Service, part: tuple[str, bytes, str | None, str | None], field: Any
) -> None:
    parts = [(n, v, None, None) for n, v in BASE_PAIRS if n != part[0]]
    error(svc.raw(multipart([*parts, part]), MULTIPART_TYPE), 400, 2, field)
    assert svc.calls == 0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"garbage", MULTIPART_TYPE),
        (multipart([("sender", "a@example.com", None, None)])[:-20], MULTIPART_TYPE),
        (f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
         MULTIPART_TYPE),
        (f'--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--\r\n'.encode(),
         MULTIPART_TYPE),
        (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"\xff\"\r\n\r\nx\r\n".encode(
            "latin-1") + f"--{BOUNDARY}--\r\n".encode(), MULTIPART_TYPE),
        (multipart([("sender", "a@example.com", None, None)]), "multipart/form-data"),
        (multipart([("sender", "a@example.com", None, None)]),
         "multipart/form-data; boundary=" + "x" * 80),
        (multipart([("sender", "a@example.com", None, None)]),
         'multipart/form-data; boundary="bad\\"quote"'),
    ],
)  # fmt: skip
def test_malformed_multipart_is_code_2(svc: Service, body: bytes, content_type: str) -> None:
    error(svc.raw(body, content_type), 400, 2, None)
    assert svc.calls == 0


def test_an_empty_multipart_body_is_malformed(svc: Service) -> None:
    environ = _environ(content_length=0, stream=io.BytesIO(), content_type=MULTIPART_TYPE)
    status, body = _call(svc.client.application, environ)
    assert (status, body["error"]) == (400, 2)


def test_multipart_with_too_many_parts(svc: Service) -> None:
    parts = [(n, v, None, None) for n, v in BASE_PAIRS]
    parts += [("tags", f"t{i}", None, None) for i in range(1100)]
    body = error(svc.raw(multipart(parts), MULTIPART_TYPE), 400, 2, None)
    assert "1000" in body["message"]


def test_an_empty_multipart_form_is_missing_sender(svc: Service) -> None:
    error(svc.raw(f"--{BOUNDARY}--\r\n", MULTIPART_TYPE), 400, 1, "sender")


# -- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/xml", "multipart/mixed; boundary=x", "application/jsonx",
     "application/json; charset=latin-1", f"{URLENCODED_TYPE}; charset=iso-8859-1", "*/*",
     "application"],
)  # fmt: skip
def test_unsupported_media_types_are_415_code_4(svc: Service, content_type: str | None) -> None:
    error(svc.raw(json.dumps(GOOD), content_type), 415, 4, None)
    assert svc.calls == 0


# -- authentication ---------------------------------------------------------------------------


def _with_token(make: Any, token: str = TOKEN) -> Service:
    return make(http=HttpConfig(api_token=token))


def test_without_a_token_no_header_is_needed(svc: Service) -> None:
    ok(svc.post("json", GOOD))
    assert svc.client.get("/health").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", f"Token {TOKEN}", TOKEN, f"Bearer {TOKEN}x",
     f"Bearer {TOKEN[:-1]}", "Bearer wrong", f"Bearer {TOKEN.upper()}", f"BearerX {TOKEN}",
     f"Bearer {TOKEN} extra"],
)  # fmt: skip
def test_missing_or_wrong_token_is_401(make: Any, authorization: str | None) -> None:
    svc = _with_token(make)
    headers = {} if authorization is None else {"Authorization": authorization}
    response = svc.post("json", GOOD, **headers)
    error(response, 401, 7, "Authorization")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert svc.calls == 0
    assert TOKEN not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} "]
)
def test_right_token_is_accepted(make: Any, authorization: str) -> None:
    ok(_with_token(make).post("json", GOOD, Authorization=authorization))


@pytest.mark.parametrize("kind", KINDS)
def test_token_applies_to_every_content_type(make: Any, kind: str) -> None:
    svc = _with_token(make)
    error(svc.post(kind, GOOD), 401, 7)
    ok(svc.post(kind, GOOD, Authorization=f"Bearer {TOKEN}"))


def test_token_from_the_environment(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_TOKEN_ENV, TOKEN)
    svc = make()
    error(svc.post("json", GOOD), 401, 7)
    ok(svc.post("json", GOOD, Authorization=f"Bearer {TOKEN}"))


def test_a_blank_environment_token_means_none(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_TOKEN_ENV, "  ")
    ok(make().post("json", GOOD))


def test_configured_token_wins_over_the_environment(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_TOKEN_ENV, "from-env")
    svc = make(memory_config(http={"api_token": TOKEN}))
    error(svc.post("json", GOOD, Authorization="Bearer from-env"), 401, 7)
    ok(svc.post("json", GOOD, Authorization=f"Bearer {TOKEN}"))


def test_non_ascii_token(make: Any) -> None:
    token = "clé-secrète"
    svc = _with_token(make, token)
    header = f"Bearer {token}".encode().decode("latin-1")  # what arrives over the wire
    ok(svc.post("json", GOOD, Authorization=header))
    error(svc.post("json", GOOD, Authorization="Bearer clé-secrète"), 401, 7)


def test_health_needs_the_token_too(make: Any) -> None:
    svc = _with_token(make)
    error(svc.client.get("/health"), 401, 7)
    assert (
        svc.client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    )


def test_authentication_comes_before_reading_the_body(make: Any) -> None:
    """An unauthenticated client cannot make the server read (or parse) anything."""
    svc = _with_token(make)
    stream = _ExplodingStream()
    environ = _environ(content_length=10, stream=stream)
    status, body = _call(svc.client.application, environ)
    assert status == 401 and body["error"] == 7
    assert stream.reads == 0


# -- sender allow-list ------------------------------------------------------------------------

ALLOWED = ("noreply@example.com", "*@mail.example.com", "Billing <billing@bücher.example>")


@pytest.mark.parametrize(
    "sender",
    ["noreply@example.com", "NoReply Team <noreply@example.com>", "noreply@EXAMPLE.com",
     "anyone@mail.example.com", "x@MAIL.Example.COM", "billing@bücher.example",
     "billing@xn--bcher-kva.example"],
)  # fmt: skip
def test_allowed_senders(make: Any, sender: str) -> None:
    svc = make(http=HttpConfig(allowed_senders=ALLOWED))
    ok(svc.post("json", {**GOOD, "sender": sender}))


@pytest.mark.parametrize(
    "sender",
    ["other@example.com", "NoReply@example.com", "noreply@example.org", "x@example.com",
     "x@sub.mail.example.com", "x@mail.example.com.evil.com", '"noreply"@example.com',
     '"noreply@example.com" <evil@bad.com>', "noreply@example.com <evil@bad.com>",
     "billing@bucher.example"],
)  # fmt: skip
def test_senders_not_on_the_list_are_403(make: Any, sender: str) -> None:
    svc = make(http=HttpConfig(allowed_senders=ALLOWED))
    response = svc.post("json", {**GOOD, "sender": sender})
    if response.status_code == 400:  # unparseable sender: refused before the list applies
        error(response, 400, 2, "sender")
    else:
        error(response, 403, 8, "sender")
    assert svc.calls == 0


@pytest.mark.parametrize("kind", KINDS)
def test_allow_list_applies_to_every_content_type(make: Any, kind: str) -> None:
    svc = make(memory_config(http={"allowed_senders": ["*@example.com"]}))
    ok(svc.post(kind, {**GOOD, "sender": "a@example.com"}))
    error(svc.post(kind, {**GOOD, "sender": "a@evil.com"}), 403, 8, "sender")


@pytest.mark.parametrize("entry", ["not an address", "*@", "*@*", "*@bad domain", ""])
def test_bad_allow_list_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ConfigError, match="allowed_senders"):
        SenderAllowList([entry])


def test_empty_allow_list_allows_all() -> None:
    assert SenderAllowList([]).allows(parse_mailbox("anyone@anywhere.example"))
    assert not SenderAllowList([])


# -- size limit -------------------------------------------------------------------------------


class _ExplodingStream(io.RawIOBase):
    """A request body that counts reads; its data is endless."""

    def __init__(self) -> None:
        self.reads = 0
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.reads += 1
        size = len(buffer)
        buffer[:size] = b"x" * size
        self.given += size
        return size


def _environ(
    *,
    content_length: int | None,
    stream: Any,
    content_type: str = "application/json",
    terminated: bool = False,
) -> dict[str, Any]:
    environ = EnvironBuilder(path="/send", method="POST", content_type=content_type).get_environ()
    environ["wsgi.input"] = stream
    environ.pop("CONTENT_LENGTH", None)
    if content_length is not None:
        environ["CONTENT_LENGTH"] = str(content_length)
    if terminated:
        environ["wsgi.input_terminated"] = True
    return environ


def _call(app: Any, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    chunks, status, _ = run_wsgi_app(app, environ)
    body = b"".join(chunks)
    return int(status.split()[0]), json.loads(body)


def test_oversized_content_length_is_413_before_reading(make: Any) -> None:
    svc = make(http=HttpConfig(max_body_bytes=1000))
    stream = _ExplodingStream()
    status, body = _call(svc.client.application, _environ(content_length=1001, stream=stream))
    assert (status, body["error"]) == (413, 9)
    assert stream.reads == 0
    assert svc.calls == 0


def test_default_limit_is_25_mib(svc: Service) -> None:
    stream = _ExplodingStream()
    environ = _environ(content_length=25 * 1024 * 1024 + 1, stream=stream)
    status, _ = _call(svc.client.application, environ)
    assert status == 413 and stream.reads == 0


def test_a_chunked_body_is_read_only_up_to_the_limit(make: Any) -> None:
    svc = make(http=HttpConfig(max_body_bytes=100_000))
    stream = _ExplodingStream()
    environ = _environ(content_length=None, stream=stream, terminated=True)
    status, body = _call(svc.client.application, environ)
    assert (status, body["error"]) == (413, 9)
    assert stream.given <= 100_000 + 64 * 1024


def test_a_body_at_the_limit_is_accepted(make: Any) -> None:
    body = json.dumps(GOOD).encode()
    svc = make(http=HttpConfig(max_body_bytes=len(body)))
    ok(svc.raw(body, "application/json"))
    error(svc.raw(body + b" ", "application/json"), 413, 9)


@pytest.mark.parametrize("kind", KINDS)
def test_each_content_type_is_limited(make: Any, kind: str) -> None:
    svc = make(memory_config(http={"max_body_bytes": 2048}))
    fields = {**GOOD, "attachments": [{"filename": "a.bin", "data": b64(b"x" * 4096)}]}
    error(svc.post(kind, fields), 413, 9, None)
    assert svc.calls == 0


def test_body_shorter_than_its_content_length(svc: Service) -> None:
    environ = _environ(content_length=500, stream=io.BytesIO(json.dumps(GOOD).encode()))
    status, body = _call(svc.client.application, environ)
    assert status == 400 and body["error"] in (2, 3)
    assert svc.calls == 0


# -- /health, errors as JSON ------------------------------------------------------------------


def test_health_lists_each_driver_without_settings(make: Any, tmp_path: Path) -> None:
    canary = str(tmp_path / "secret-outbox-path")
    config = {
        "drivers": [
            {"name": "down", "module": "memory", "settings": {"fail": "unavailable"}},
            {"name": "files", "module": "file", "settings": {"directory": canary}},
        ]
    }
    svc = make(config)
    assert svc.client.get("/health").get_json()["status"] == "ok"
    ok(svc.post("json", GOOD))
    body = svc.client.get("/health").get_json()
    assert body["status"] == "ok"  # one failure is below the threshold of 2
    ok(svc.post("json", GOOD))
    response = svc.client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert [(d["name"], d["state"]) for d in body["drivers"]] == [
        ("down", "cooling_down"),
        ("files", "healthy"),
    ]
    assert body["drivers"][0]["failed"] == 2 and body["drivers"][1]["sent"] == 2
    assert set(body["drivers"][0]) == {
        "name", "state", "consecutive_failures", "cooldown_remaining", "sent", "failed",
        "last_error", "last_success", "last_failure",
    }  # fmt: skip
    assert "secret-outbox-path" not in response.get_data(as_text=True)


def test_health_is_down_when_no_driver_is_healthy(make: Any) -> None:
    svc = make(memory_config("unavailable"))
    for _ in range(2):
        error(svc.post("json", GOOD), 503, 5)
    assert svc.client.get("/health").get_json()["status"] == "down"
    assert svc.client.head("/health").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/send", "POST, OPTIONS"), ("PUT", "/send", "POST, OPTIONS"),
     ("DELETE", "/send", "POST, OPTIONS"), ("HEAD", "/send", "POST, OPTIONS"),
     ("POST", "/health", "GET, HEAD, OPTIONS"), ("PATCH", "/health", "GET, HEAD, OPTIONS")],
)  # fmt: skip
def test_wrong_method_is_a_json_405(svc: Service, method: str, path: str, allow: str) -> None:
    response = svc.client.open(path, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    if method != "HEAD":
        error(response, 405, 10, None)


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND"])
def test_unusual_methods_are_json_405_too(svc: Service, method: str) -> None:
    error(svc.client.open("/send", method=method), 405, 10)


def test_options_lists_the_methods(svc: Service) -> None:
    response = svc.client.options("/send")
    assert (response.status_code, response.headers["Allow"]) == (204, "POST, OPTIONS")


def test_unknown_path_is_a_json_404(svc: Service) -> None:
    error(svc.client.get("/nope"), 404, 10, None)


def test_a_bug_is_a_json_500_and_logged(svc: Service, caplog: pytest.LogCaptureFixture) -> None:
    svc.mailer.close()  # sending through a closed mailer raises RuntimeError
    with caplog.at_level(logging.ERROR, logger="mailfailover"):
        body = error(svc.post("json", GOOD), 500, 11, None)
    assert body["message"] == "internal error"
    assert "RuntimeError" in caplog.text


def test_error_messages_are_bounded(svc: Service) -> None:
    name = "X" * 100_000
    response = svc.post("json", {**GOOD, name: "v"})
    body = error(response, 400, 2)
    assert len(body["message"]) <= 500 and len(body["field"]) <= 100
    assert len(response.get_data()) < 2000


# -- logging ----------------------------------------------------------------------------------


def test_logs_never_hold_bodies_attachments_or_tokens(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_body, secret_file = "BODY-CANARY-71c2", b"FILE-CANARY-9d0e"
    for config in (DOWN_UP, memory_config("unavailable"), memory_config("reject")):
        svc = make(config, http=HttpConfig(api_token=TOKEN, allowed_senders=("*@example.com",)))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        fields = {**GOOD, "sender": "a@example.com", "text": secret_body, "html": secret_body,
                  "attachments": [{"filename": "c.bin", "data": b64(secret_file)}]}  # fmt: skip
        for kind in KINDS:
            svc.post(kind, fields, **auth)
            svc.post(kind, {**fields, "sender": "a@evil.com"}, **auth)
            svc.post(kind, {**fields, "to": "bad"}, **auth)
            svc.post(kind, fields, Authorization=f"Bearer {TOKEN}-wrong")
    assert caplog.records, "the test should have produced some log records"
    text = caplog.text
    for canary in (secret_body, b64(secret_file), TOKEN, "FILE-CANARY"):
        assert canary not in text


# -- the extension in a user's own app --------------------------------------------------------


def test_extension_mounts_under_a_prefix_in_a_user_app() -> None:
    app = flask.Flask("users_app")

    @app.get("/")
    def index() -> str:
        return "home"

    mailer = FailoverMailer([MemoryDriver(name="m")])
    extension = MailFailover(mailer=mailer, url_prefix="/mail")
    extension.init_app(app)
    client = app.test_client()
    assert client.get("/").get_data(as_text=True) == "home"
    ok(client.post("/mail/send", **encode("json", GOOD)))
    assert client.post("/send", **encode("json", GOOD)).status_code == 404
    error(client.get("/mail/send"), 405, 10)
    assert len(mailer.drivers[0].outbox) == 1  # type: ignore[attr-defined]


def test_extension_keeps_a_smaller_app_limit() -> None:
    app = flask.Flask("users_app")
    app.config["MAX_CONTENT_LENGTH"] = 100
    MailFailover(app, FailoverMailer([MemoryDriver(name="m")]))
    body = json.dumps({**GOOD, "text": "x" * 200})
    environ = _environ(content_length=None, stream=io.BytesIO(body.encode()), terminated=True)
    status, payload = _call(app, environ)
    assert (status, payload["error"]) == (413, 9)


def test_extension_builds_its_mailer_from_config(tmp_path: Path) -> None:
    path = tmp_path / "mail.yml"
    path.write_text(
        "drivers:\n  - {name: only, module: memory}\nhttp:\n  api_token: t0k\n", encoding="utf-8"
    )
    app = flask.Flask("users_app")
    extension = MailFailover(app, config=path)
    assert extension.mailer is not None and extension.mailer.drivers[0].name == "only"
    client = app.test_client()
    error(client.post("/send", **encode("json", GOOD)), 401, 7)
    ok(client.post("/send", headers={"Authorization": "Bearer t0k"}, **encode("json", GOOD)))
    extension.mailer.close()


def test_create_app_from_a_config_dict_and_path(tmp_path: Path) -> None:
    app = create_app(config=DOWN_UP)
    ok(app.test_client().post("/send", **encode("json", GOOD)))
    app.extensions["mailfailover"].mailer.close()
    path = tmp_path / "mail.yml"
    path.write_text(json.dumps(memory_config(http={"max_body_bytes": 10})), encoding="utf-8")
    mailer = FailoverMailer([MemoryDriver(name="m")])
    app = create_app(mailer, config=path)  # the mailer as given, the http section from the file
    error(app.test_client().post("/send", **encode("json", GOOD)), 413, 9)


def test_create_app_with_no_config_uses_the_default_lookup(in_tmp_cwd: Path) -> None:
    app = create_app()
    mailer = app.extensions["mailfailover"].mailer
    assert [d.name for d in mailer.drivers] == ["smtp", "outbox"]
    mailer.close()


# -- property-based: hostile input never causes a 500 or a send --------------------------------

_CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            URLENCODED_TYPE,
            MULTIPART_TYPE,
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "text/plain",
            "",
        ]
    ),
    # Any header value a server can hand over: latin-1, no line breaks.
    st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=60),
)
_HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [INJECTION, "a@b.com", "Ann <ann@example.com>", "\r\n", "\x00", "\ud800", "", " , ",
         '"a,b" <x@example.com>', "<>", "@", "x" * 300, "=?utf-8?q?evil?=", "%0d%0a"]
    ),
)  # fmt: skip
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_HOSTILE_TEXT, inner, max_size=4),
    max_leaves=12,
)
_FIELD_NAMES = st.one_of(
    st.sampled_from(sorted(FIELDS)),
    st.sampled_from(["headers[X-A]", "metadata[k]", "headers[Bcc]", "to[]"]),
    _HOSTILE_TEXT,
)
_HEADERS = st.dictionaries(
    st.sampled_from(["Authorization", "Content-Length", "Transfer-Encoding", "X-Forwarded-For",
                     "Content-Encoding", "Expect"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    max_size=3,
)  # fmt: skip

_PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _fresh() -> tuple[Any, MemoryDriver]:
    driver = MemoryDriver(name="m")
    return create_app(FailoverMailer([driver])).test_client(), driver


def _check_outcome(response: Any, driver: MemoryDriver) -> None:
    assert response.status_code != 500, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    payload = response.get_json()
    if response.status_code == 200:
        assert driver.calls == 1 and len(driver.outbox) == 1
        message = driver.outbox[0]
        for value in (message.sender, message.subject, *message.to, *message.headers.values()):
            assert "\r" not in value and "\n" not in value
    else:
        assert driver.calls == 0, "invalid input reached a driver"
        assert isinstance(payload["error"], int) and "message" in payload


@_PROPERTY
@given(body=st.binary(max_size=2000), content_type=_CONTENT_TYPES, headers=_HEADERS)
def test_arbitrary_bytes_never_500_and_never_send(
    body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    client, driver = _fresh()
    headers = {k: v for k, v in headers.items() if k != "Content-Length"}
    response = client.post("/send", data=body, headers={**headers, "Content-Type": content_type})
    _check_outcome(response, driver)


@_PROPERTY
@given(
    fields=st.dictionaries(_FIELD_NAMES, _JSON_VALUES, max_size=8),
    base=st.booleans(),
    kind=st.sampled_from(KINDS),
)
def test_arbitrary_fields_never_500(fields: dict[str, Any], base: bool, kind: str) -> None:
    client, driver = _fresh()
    if base:
        fields = {**GOOD, **fields}
    try:
        arguments = encode(kind, fields)
    except (TypeError, ValueError, KeyError, AttributeError):
        return  # not expressible as this kind (UnicodeEncodeError is a ValueError)
    _check_outcome(client.post("/send", **arguments), driver)


@_PROPERTY
@given(
    pairs=st.lists(st.tuples(_FIELD_NAMES, _HOSTILE_TEXT), max_size=10),
    files=st.lists(st.tuples(st.binary(max_size=200), _HOSTILE_TEXT, _HOSTILE_TEXT), max_size=3),
)
def test_arbitrary_multipart_never_500(
    pairs: list[tuple[str, str]], files: list[tuple[bytes, str, str]]
) -> None:
    client, driver = _fresh()
    parts: list[tuple[str, str | bytes, str | None, str | None]] = [
        (n, v, None, None) for n, v in [*GOOD.items(), *pairs]
    ]
    parts += [("attachments", data, name, mime) for data, name, mime in files]
    try:
        body = multipart(parts)
    except UnicodeEncodeError:
        return
    _check_outcome(client.post("/send", data=body, content_type=MULTIPART_TYPE), driver)


# -- serve()'s own checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("LOCALHOST", True),
     ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False), ("10.0.0.1", False),
     ("192.168.1.2", False), ("example.com", False), ("", False), ("::ffff:8.8.8.8", False)],
)  # fmt: skip
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert _is_loopback(host) is loopback


def test_no_token_means_loopback_only() -> None:
    config = load_config(memory_config())
    _check_config(config, "127.0.0.1")
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0 without an API token"):
        _check_config(config, "0.0.0.0")
    _check_config(load_config(memory_config(http={"api_token": TOKEN})), "0.0.0.0")


def test_token_from_environment_allows_public_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_TOKEN_ENV, TOKEN)
    _check_config(load_config(memory_config()), "0.0.0.0")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"port": 70000}, "--port"), ({"workers": 0}, "--workers"), ({"threads": 0}, "--threads"),
     ({"host": "0.0.0.0"}, "refusing"), ({"config": "/nonexistent/mail.yml"}, "no such file")],
)  # fmt: skip
def test_serve_refuses_before_starting(
    kwargs: dict[str, Any], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options: dict[str, Any] = {"config": memory_config(), **kwargs}
    assert serve(**options) == 2
    assert needle in capsys.readouterr().err


# -- the OpenAPI document ---------------------------------------------------------------------

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    return document


def test_openapi_document_validates(openapi: dict[str, Any]) -> None:
    validate_spec(openapi)  # raises on any error
    assert set(openapi["paths"]) == {
        "/send",
        "/health",
        "/metrics",
        "/",
        "/webhooks/{driver}",
        "/messages/{message_id}",
    }


def test_openapi_lists_exactly_the_fields_the_adapter_takes(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert set(schemas["SendRequest"]["properties"]) == FIELDS
    assert set(schemas["SendForm"]["properties"]) == FIELDS
    assert set(schemas["SendMultipart"]["properties"]) == FIELDS
    assert set(schemas["Attachment"]["properties"]) == _ATTACHMENT_KEYS


def _conforms(openapi: dict[str, Any], schema: str, instance: Any) -> None:
    document = {"$ref": f"#/components/schemas/{schema}", "components": openapi["components"]}
    OAS30Validator(document).validate(instance)


def test_real_responses_match_the_openapi_schemas(make: Any, openapi: dict[str, Any]) -> None:
    svc = make(DOWN_UP)
    _conforms(openapi, "SendResult", ok(svc.post("json", FULL)))
    _conforms(openapi, "SendRequest", FULL)
    _conforms(openapi, "Health", svc.client.get("/health").get_json())
    recent = svc.client.get("/health?recent=1").get_json()
    assert recent["recent"]  # the send above made attempts
    _conforms(openapi, "Health", recent)
    _conforms(openapi, "Error", error(svc.post("json", {**GOOD, "to": "x"}), 400, 2))
    _conforms(openapi, "Error", error(svc.client.get("/send"), 405, 10))
    down = make(memory_config("unavailable"))
    _conforms(openapi, "DeliveryFailure", error(down.post("json", GOOD), 503, 5))
    rejecting = make(memory_config("reject"))
    _conforms(openapi, "DeliveryFailure", error(rejecting.post("json", GOOD), 422, 2))
    documented = openapi["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    assert set(documented) == {1, 2, 3, 4, 5, UNAUTHORIZED, SENDER_NOT_ALLOWED, TOO_LARGE,
                               NOT_FOUND, INTERNAL_ERROR, MESSAGE_SUPPRESSED}  # fmt: skip


def test_a_bad_allow_list_in_the_config_fails_create_app() -> None:
    config = memory_config(http={"allowed_senders": ["not an address"]})
    with pytest.raises(ConfigError, match="allowed_senders"):
        create_app(config=config)
