"""POST /send caps recipients per message (http.max_recipients), comma-separated ones too.

Before: a 2.2 MB body with 100,000 ``to`` addresses pinned a gunicorn worker for 12+ minutes
(address parsing and quadratic header building), and one comma-separated ``to`` field
slipped past the form's field limit. Now the count is refused before any address is parsed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_helpers import KINDS, encode, memory_config

from mailfailover import FailoverMailer
from mailfailover.config import HttpConfig, load_config
from mailfailover.errors import INVALID_PARAMETER
from mailfailover.flask import _send_request as send_request
from mailfailover.flask import create_app
from mailfailover.message import split_addresses

pytest.importorskip("flask")

BASE = {"sender": "s@example.com", "subject": "s", "text": "t"}
HUNDRED_THOUSAND = ",".join(f"user{i}@example.com" for i in range(100_000))


@pytest.fixture
def app_with() -> Iterator[Any]:
    mailers: list[FailoverMailer] = []

    def factory(http: dict[str, Any] | None = None) -> Any:
        config = memory_config(http=http)
        mailer = FailoverMailer.from_config(config)
        mailers.append(mailer)
        return create_app(mailer, http=load_config(config).http).test_client(), mailer

    yield factory
    for mailer in mailers:
        mailer.close()


def refused(response: Any, field: str) -> dict[str, Any]:
    assert response.status_code == 400, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert body["error"] == INVALID_PARAMETER
    assert body["field"] == field
    return body


@pytest.mark.parametrize("kind", KINDS)
def test_100_000_comma_separated_addresses_are_refused_naming_the_field(
    kind: str, app_with: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer comes from a split and a count: no address is parsed."""
    parsed: list[str] = []
    monkeypatch.setattr(send_request, "Message", _Counting(parsed))
    client, mailer = app_with()
    body = refused(client.post("/send", **encode(kind, {**BASE, "to": HUNDRED_THOUSAND})), "to")
    assert "100,000 recipients" in body["message"] and "at most 1,000" in body["message"]
    assert "http.max_recipients" in body["message"]
    assert parsed == []  # the Message constructor was never reached
    assert sum(d.calls for d in mailer.drivers) == 0


def test_a_json_list_counts_too_and_cc_bcc_add_up(app_with: Any) -> None:
    client, _ = app_with({"max_recipients": 10})
    to = [f"t{i}@example.com" for i in range(6)]
    ok = client.post("/send", **encode("json", {**BASE, "to": to, "cc": "a@x.com, b@x.com"}))
    assert ok.status_code == 200, ok.get_data(as_text=True)
    over = {**BASE, "to": to, "cc": "a@x.com, b@x.com", "bcc": ["c@x.com", "d@x.com, e@x.com"]}
    body = refused(client.post("/send", **encode("json", over)), "bcc")
    assert "11 recipients" in body["message"] and "at most 10" in body["message"]


def test_a_limit_above_message_s_own_cap_still_meets_it(app_with: Any) -> None:
    client, _ = app_with({"max_recipients": 5000})
    to = ",".join(f"u{i}@example.com" for i in range(1500))
    body = refused(client.post("/send", **encode("json", {**BASE, "to": to})), "to")
    assert "Message.max_recipients" in body["message"]


def test_the_limit_is_configured_in_the_http_section() -> None:
    assert HttpConfig().max_recipients == 1000
    config = load_config({**memory_config(), "http": {"max_recipients": 50}})
    assert config.http.max_recipients == 50


def test_splitting_is_linear_enough_to_count_a_huge_field() -> None:
    assert len(split_addresses(HUNDRED_THOUSAND)) == 100_000


class _Counting:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen
        from mailfailover import Message

        self.real = Message
        self.max_recipients = Message.max_recipients

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.seen.append("called")
        return self.real(*args, **kwargs)
