"""Hostile /send requests against the HTTP adapter backed by real HTTP drivers.

tests/test_flask.py checks the adapter's parsing against memory drivers. Here every HTTP
driver sits behind /send, pointed at a stand-in server, so "nothing reaches a provider" is
counted in requests that arrived over a socket; and the API token and the providers' keys
are searched for in every response and every log line (all loggers at DEBUG).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from _reliability import READY
from _servers import Answer, StandInServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

flask_adapter = pytest.importorskip("mailfailover.flask", reason="the flask extra is missing")

from http_helpers import GOOD, KINDS, encode  # noqa: E402 - after the importorskip

from mailfailover import FailoverMailer  # noqa: E402
from mailfailover.config import HttpConfig  # noqa: E402

TOKEN = "tok-RELIABILITY-5e1f0c7a"
INJECTED = "x\r\nBcc: victim@evil.example"
#: Each field of a /send body with a header-injection attempt in it.
INJECTIONS: dict[str, dict[str, Any]] = {
    "sender": {"sender": f"Shop {INJECTED} <shop@example.com>"},
    "to": {"to": f"ann@example.com{INJECTED}"},
    "to_list": {"to": ["ann@example.com", "b@example.com\nBcc: victim@evil.example"]},
    "cc": {"cc": f"Cc {INJECTED} <c@example.com>"},
    "bcc": {"bcc": "d@example.com\r\nX-Evil: 1"},
    "reply_to": {"reply_to": "r@example.com\nBcc: victim@evil.example"},
    "subject": {"subject": f"Hello{INJECTED}"},
    "subject_nel": {"subject": "Hello\x85Bcc: victim@evil.example"},
    "subject_u2028": {"subject": "Hello\u2028Bcc: victim@evil.example"},
    "headers_value": {"headers": {"X-Campaign": INJECTED}},
    "headers_name": {"headers": {"X-A\r\nBcc": "victim@evil.example"}},
    "tags": {"tags": [INJECTED]},
    "metadata": {"metadata": {"k": INJECTED}},
    "attachment_filename": {"attachments": [
        {"filename": f"a.txt{INJECTED}", "data": base64.b64encode(b"x").decode()}]},
}  # fmt: skip


@pytest.fixture
def app_and_server(stand_in: StandInServer) -> Iterator[tuple[Any, StandInServer]]:
    """/send in front of every importable HTTP driver, all pointed at the stand-in."""
    drivers = [
        {"name": p.driver, "module": p.driver,
         "settings": {**p.settings, "base_url": stand_in.url, "timeout": 5}}
        for p in READY
    ]  # fmt: skip
    with FailoverMailer.from_config({"drivers": drivers}) as mailer:
        app = flask_adapter.create_app(mailer, http=HttpConfig(api_token=TOKEN))
        yield app.test_client(), stand_in


def _post(client: Any, kind: str, fields: dict[str, Any], token: str = TOKEN) -> Any:
    return client.post("/send", headers={"Authorization": f"Bearer {token}"},
                       **encode(kind, fields))  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_injection_in_any_field_never_reaches_a_provider(
    app_and_server: tuple[Any, StandInServer], case: dict[str, Any], kind: str
) -> None:
    """Every injection attempt, as JSON, urlencoded or multipart, is a 400 with the
    original service's invalid-parameter code, and no provider gets a request."""
    client, server = app_and_server
    response = _post(client, kind, {**GOOD, **case})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] in (1, 2)
    assert server.received == 0


def test_a_good_request_reaches_exactly_one_provider(
    app_and_server: tuple[Any, StandInServer],
) -> None:
    """The control: the same request without the injection is sent, once."""
    client, server = app_and_server
    response = _post(client, "json", GOOD)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert server.received == 1


def test_no_token_or_key_in_any_answer_or_log_line(
    app_and_server: tuple[Any, StandInServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Wrong tokens, rejections, provider outages and timeouts: neither the API token nor
    any provider key appears in a response body, a response header or a log record."""
    caplog.set_level(logging.DEBUG)
    client, server = app_and_server
    answers = [_post(client, "json", GOOD, token=TOKEN[:-1]),
               _post(client, "json", GOOD, token=TOKEN + "x"),
               client.post("/send", json=GOOD)]  # fmt: skip
    for fault in (Answer(401, b"Forbidden"), Answer(503, b"down"), READY[0].rejections[0]):
        server.default = fault
        answers.append(_post(client, "json", GOOD))
        answers.append(_post(client, "multipart", {**GOOD, "to": ["a@example.com"]}))
    secrets = [TOKEN, *(secret for provider in READY for secret in provider.secrets)]
    texts = [caplog.text, *(r.getMessage() for r in caplog.records)]
    for response in answers:
        assert response.status_code in (400, 401, 422, 503), response.status_code
        texts += [response.get_data(as_text=True), json.dumps(dict(response.headers))]
    for secret in secrets:
        for text in texts:
            assert secret not in text, "a credential leaked into an answer or a log line"


_FIELD = st.sampled_from(["sender", "to", "cc", "bcc", "reply_to", "subject", "text", "html",
                          "headers", "tags", "metadata", "attachments"])  # fmt: skip
_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    | st.sampled_from(["a@example.com", INJECTED, "\u2028", "\x85", "\ud800"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(fields=st.dictionaries(_FIELD, _VALUE, max_size=4), kind=st.sampled_from(KINDS))
def test_arbitrary_bodies_send_exactly_once_or_not_at_all(
    app_and_server: tuple[Any, StandInServer], fields: dict[str, Any], kind: str
) -> None:
    """Arbitrary fields over a good request: a 200 means exactly one request reached a
    provider (whose first HTTP driver got it), any other answer means none did; never 500."""
    client, server = app_and_server
    server.reset()
    try:
        arguments = encode(kind, {**GOOD, **fields})
    except (TypeError, ValueError, KeyError, AttributeError):
        return  # not expressible in this encoding
    response = client.post("/send", headers={"Authorization": f"Bearer {TOKEN}"}, **arguments)
    assert response.status_code != 500, response.get_data(as_text=True)
    if response.status_code == 200:
        assert server.received == 1
    else:
        assert server.received == 0, response.get_data(as_text=True)
