"""``webhook_header``: providers whose webhooks can carry a custom header (Postmark's
``HttpHeaders``, SparkPost's ``custom_headers``) are authenticated by it, instead of or
together with basic auth. One table of providers, so each gets every case."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from webhook_support import NOW, basic, refused

from mailfailover.driver import Driver
from mailfailover.drivers.postmark import PostmarkDriver
from mailfailover.drivers.sparkpost import SparkPostDriver
from mailfailover.errors import ConfigError

HEADER = "X-Webhook-Token: 8f3c-long-random-value"
CREDENTIALS = "hooks:s3cret-pass"
URL = "https://hooks.example.com/webhooks/x"

POSTMARK_DELIVERY = {
    "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
    "MessageID": "00000000-0000-0000-0000-000000000000", "Recipient": "john@example.com",
    "DeliveredAt": "2019-11-05T16:33:54.9070259Z", "Details": "Test delivery webhook details",
}  # fmt: skip
SPARKPOST_DELIVERY = [{"msys": {"message_event": {
    "type": "delivery", "event_id": "e-1", "timestamp": "1460989507",
    "rcpt_to": "john@example.com", "message_id": "000443ee14578172be22",
}}}]  # fmt: skip

PROVIDERS: dict[str, tuple[Callable[..., Driver], Any]] = {
    "postmark": (lambda **s: PostmarkDriver(name="pm", server_token="t", **s), POSTMARK_DELIVERY),
    "sparkpost": (lambda **s: SparkPostDriver(name="sp", api_key="k", **s), SPARKPOST_DELIVERY),
}


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> tuple[Callable[..., Driver], Any]:
    return PROVIDERS[request.param]


def parse(provider: Any, headers: dict[str, str], **settings: Any) -> list[Any]:
    make, payload = provider
    driver = make(**settings)
    return list(driver.parse_webhook(headers, json.dumps(payload).encode(), URL, now=NOW))


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Webhook-Token": "8f3c-long-random-value"},
        {"x-webhook-token": " 8f3c-long-random-value "},  # names without case, value trimmed
    ],
)
def test_the_configured_header_authenticates(provider: Any, headers: dict[str, str]) -> None:
    [event] = parse(provider, headers, webhook_header=HEADER)
    assert event.type == "delivered"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Webhook-Token": "8f3c-long-random-valuE"},
        {"X-Webhook-Token": ""},
        {"X-Other": "8f3c-long-random-value"},
        {"Authorization": "8f3c-long-random-value"},
        basic(CREDENTIALS),  # basic auth is not configured: it proves nothing here
    ],
)
def test_a_missing_or_wrong_header_is_refused(provider: Any, headers: dict[str, str]) -> None:
    error = refused(lambda: parse(provider, headers, webhook_header=HEADER))
    assert "8f3c-long-random-value" not in str(error)


def test_with_both_set_both_are_required_and_headers_rotate(provider: Any) -> None:
    settings = {"webhook_basic_auth": CREDENTIALS,
                "webhook_header": ["X-Webhook-Token: old-value", HEADER]}  # fmt: skip
    both = {**basic(CREDENTIALS), "X-Webhook-Token": "old-value"}
    assert parse(provider, both, **settings)
    assert parse(provider, {**basic(CREDENTIALS), "X-Webhook-Token": "8f3c-long-random-value"},
                 **settings)  # fmt: skip
    refused(lambda: parse(provider, basic(CREDENTIALS), **settings))
    refused(lambda: parse(provider, {"X-Webhook-Token": "old-value"}, **settings))


@pytest.mark.parametrize(
    "bad",
    ["no-colon-s3cret", ": s3cret", "Bad Name: s3cret", "X-Token:", "X-Token:   ", "X(T): s3cret"],
)
def test_a_malformed_header_is_a_config_error_that_hides_it(provider: Any, bad: str) -> None:
    make, _ = provider
    with pytest.raises(ConfigError, match="webhook_header #1 is not 'Name: value'") as caught:
        make(webhook_header=bad)
    assert "s3cret" not in str(caught.value)
