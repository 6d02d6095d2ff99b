"""The shortcuts the batched path takes (docs/benchmarks.md, "What the profiles changed")
give exactly what the long way gave: each is checked against it here."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from mailfailover.drivers._wire import B64, Headers, HttpResponse, encode_json
from mailfailover.message import _uuid4_hex, parse_mailbox

ADDRESSES = [
    "a@b.com", "Ann <a@b.com>", "a.b+c@x.org", '"a b"@x.com', "o'neil@x.ie",
    "x!#$%&'*+/=?^_`{|}~-y@z.co", '"Doe, John" <j@x.com>', "a@xn--strae-oqa.de",
    "ä.ö@straße.de", "Zoë <z@bücher.de>", "Dr. Who <who@tardis.example>", "q@localhost",
]  # fmt: skip


@pytest.mark.parametrize("address", ADDRESSES)
def test_header_text_is_the_address_objects_text(address: str) -> None:
    mailbox = parse_mailbox(address)
    for ascii_domain in (True, False):
        assert mailbox.header_text(ascii_domain=ascii_domain) == str(
            mailbox.address(ascii_domain=ascii_domain)
        )


def test_message_ids_are_uuid4_hex() -> None:
    seen = set()
    for _ in range(500):
        text = _uuid4_hex()
        parsed = uuid.UUID(hex=text)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, text)
        seen.add(text)
    assert len(seen) == 500


ITEMS: list[Any] = [
    {"ErrorCode": 0, "MessageID": "pm-1", "Nested": {"list": [1, 2.5, None, True]}},
    {"statusCode": 422, "name": "validation_error", "message": "ünïcode"},
    None,
    [],
    "text",
]


@pytest.mark.parametrize("item", ITEMS)
def test_an_answer_of_parsed_json_is_the_answer_of_its_encoding(item: Any) -> None:
    headers = Headers({"Content-Type": "application/json"})
    long = HttpResponse(200, headers, encode_json(item))
    short = HttpResponse.of_json(200, item, headers)
    assert short.json == long.json
    assert short.content == long.content
    assert short.text == long.text
    assert (short.status, dict(short.headers)) == (long.status, dict(long.headers))


def test_encode_json_splices_attachments_and_draws_no_marker_without_them() -> None:
    payload = {"a": "x", "files": [B64(b"\x00\x01binary"), B64(b"second")]}
    assert json.loads(encode_json(payload)) == {
        "a": "x", "files": ["AAFiaW5hcnk=", "c2Vjb25k"],
    }  # fmt: skip
    assert encode_json({"a": "ü"}) == '{"a":"ü"}'.encode()
