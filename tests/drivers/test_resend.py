"""The ``resend`` driver against a fake Resend API (``responses``).

Sections: contract (with transport failures, Retry-After and the generic failover cases from
:class:`HttpDriverContractTests`), payload mapping and idempotency key, success and message id,
malformed success answers, error classification, failover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
import requests
import responses
from http_fakes import b64, sent_json

from mailfailover.drivers.resend import ResendDriver, idempotency_key
from mailfailover.errors import MessageRejected, ProviderUnavailable, UnsupportedFeature
from mailfailover.mailer import FailoverMailer
from mailfailover.testing import (
    PDF_BYTES,
    PNG_BYTES,
    FakeClock,
    HttpDriverContractTests,
    MemoryDriver,
    connection_reset,
    full_message,
    simple_message,
)

API_KEY = "re_123456789_abcdefghijklmnop"
URL = "https://api.resend.com/emails"
SUCCESS = {"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}


def resend_error(status: int, name: str, message: str) -> dict[str, Any]:
    """Resend's error body: ``{"statusCode", "name", "message"}``."""
    return {"statusCode": status, "name": name, "message": message}


INVALID_TO = resend_error(
    422, "validation_error", "Invalid `to` field. The email address needs to follow the "
    "`email@example.com` or `Name <email@example.com>` format.",
)  # fmt: skip
TESTING_ONLY = resend_error(
    403, "validation_error", "You can only send testing emails to your own email address "
    "(owner@example.com). To send emails to other recipients, please verify a domain at "
    "resend.com/domains, and change the `from` address to an email using this domain.",
)  # fmt: skip
CONCURRENT = resend_error(
    409, "concurrent_idempotent_requests",
    "Same idempotency key used while original request is still in progress.",
)  # fmt: skip
RATE_LIMITED = resend_error(
    429, "rate_limit_exceeded", "Too many requests. You can only make 2 requests per second. "
    "See rate limit response headers for more information.",
)  # fmt: skip


def make_driver(**settings: Any) -> ResendDriver:
    settings.setdefault("api_key", API_KEY)
    return ResendDriver(name="resend-1", **settings)


@pytest.fixture
def driver() -> Iterator[ResendDriver]:
    instance = make_driver()
    yield instance
    instance.close()


# -- contract -------------------------------------------------------------------------------


class TestResendContract(HttpDriverContractTests):
    def failover_cases(self) -> dict[str, Arrange]:
        return TRANSIENT

    secrets = (API_KEY,)
    endpoint = URL
    success_response: ClassVar[dict[str, Any]] = {"json": SUCCESS}
    rejection_response: ClassVar[dict[str, Any]] = {"status": 422, "json": INVALID_TO}
    unavailable_response: ClassVar[dict[str, Any]] = {
        "status": 500,
        "json": resend_error(500, "application_error", "Oops"),
    }

    def make_driver(self) -> ResendDriver:
        return make_driver()


# -- payload mapping and idempotency key ------------------------------------------------------


def test_full_message_maps_every_field(mock: responses.RequestsMock, driver: ResendDriver) -> None:
    """Addresses as "Name <addr>" lists, Message-ID among the headers, the inline PNG as an
    attachment with content_id, tags and metadata as Resend tags, and the idempotency key."""
    mock.post(URL, json=SUCCESS)
    driver.send(full_message())
    request = mock.calls[0].request
    assert request.method == "POST"
    assert request.url == URL
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == idempotency_key(full_message())
    assert request.headers["Idempotency-Key"].startswith("full-message-1@example.com/")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("mailfailover/")
    assert isinstance(request.body, bytes)
    assert "Grüße".encode() in request.body
    assert sent_json(mock) == {
        "from": "Zoë Sender <sender@example.com>",
        "to": ["Ann Tö <ann@example.com>", "bob@example.com"],
        "cc": ["Cäcilie <cc1@example.com>", "cc2@example.com"],
        "bcc": ["bcc1@example.com", "Björn <bcc2@example.com>"],
        "reply_to": ["Replies <reply@example.com>"],
        "subject": "Grüße — your receipt",
        "text": "Hallo, grüße!\nSee the PDF.",
        "html": '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">',
        "headers": {"Message-ID": "<full-message-1@example.com>", "X-Campaign": "spring-2026"},
        "attachments": [
            {
                "filename": "Rechnung-ä.pdf",
                "content": b64(PDF_BYTES),
                "content_type": "application/pdf",
            },
            {
                "filename": "logo.png",
                "content": b64(PNG_BYTES),
                "content_type": "image/png",
                "content_id": "logo.png",
            },
        ],
        "tags": [
            {"name": "receipts", "value": "true"},
            {"name": "billing", "value": "true"},
            {"name": "user_id", "value": "42"},
            {"name": "order", "value": "A-17"},
        ],
    }


def test_simple_message_sends_only_what_it_has(
    mock: responses.RequestsMock, driver: ResendDriver
) -> None:
    mock.post(URL, json=SUCCESS)
    message = simple_message()
    driver.send(message)
    assert sent_json(mock) == {
        "from": "Sender <sender@example.com>",
        "to": ["rcpt@example.com"],
        "subject": "Hello",
        "text": "Hello there.",
        "headers": {"Message-ID": message.message_id},
    }


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({}, "https://api.resend.com/emails"),
        ({"base_url": "http://127.0.0.1:8025"}, "http://127.0.0.1:8025/emails"),
        ({"base_url": "https://proxy.internal:8443/"}, "https://proxy.internal:8443/emails"),
    ],
)
def test_url_default_and_base_url(
    mock: responses.RequestsMock, settings: dict[str, Any], url: str
) -> None:
    mock.post(url, json=SUCCESS)
    with make_driver(**settings) as driver:
        driver.send(simple_message())
    assert mock.calls[0].request.url == url


def test_a_retry_of_the_same_message_is_the_same_request(
    mock: responses.RequestsMock, driver: ResendDriver
) -> None:
    """After a read timeout the retry carries the same key and body: Resend answers with the
    first email's id instead of sending it twice."""
    mock.post(URL, body=requests.exceptions.ReadTimeout())
    mock.post(URL, json=SUCCESS)
    message = full_message()
    with pytest.raises(ProviderUnavailable):
        driver.send(message)
    driver.send(message)
    first, second = (call.request for call in mock.calls)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.body == second.body


def test_idempotency_keys_differ_per_message_and_fit_resend() -> None:
    one, two = simple_message(), simple_message()
    assert idempotency_key(one) != idempotency_key(two)
    assert idempotency_key(one).startswith(one.message_id.strip("<>") + "/")
    # a different message that reused the id (a per-recipient copy) gets another key
    copy = one.replace(to=["other@example.com"], message_id=one.message_id)
    assert idempotency_key(copy) != idempotency_key(one)
    assert idempotency_key(one.replace(message_id=one.message_id)) == idempotency_key(one)
    long_id = "<" + "a" * 200 + "@" + "b" * 60 + ".example.com>"
    key = idempotency_key(simple_message(message_id=long_id))
    assert 1 <= len(key) <= 256
    assert key == idempotency_key(simple_message(message_id=long_id))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tags": ["needs space"]}, "tags"),
        ({"tags": ["grüße"]}, "tags"),
        ({"tags": ["x" * 257]}, "tags"),
        ({"metadata": {"order id": "1"}}, "metadata"),
        ({"metadata": {"email": "ann@example.com"}}, "metadata"),
        ({"tags": ["order"], "metadata": {"order": "A-17"}}, "tags"),
        ({"to": [f"r{i}@example.com" for i in range(51)]}, "to"),
    ],
)
def test_what_resend_cannot_carry_is_unsupported_before_any_request(
    mock: responses.RequestsMock, driver: ResendDriver, changes: dict[str, Any], field: str
) -> None:
    """Tags and metadata outside Resend's tag alphabet, or clashing, and over 50 To."""
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(simple_message(**changes))
    assert caught.value.field == field
    assert len(mock.calls) == 0


# -- success and message id -------------------------------------------------------------------


def test_success_returns_the_email_id(mock: responses.RequestsMock, driver: ResendDriver) -> None:
    mock.post(URL, json=SUCCESS)
    receipt = driver.send(simple_message())
    assert receipt.driver == "resend-1"
    assert receipt.message_id == "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"
    assert receipt.response == SUCCESS


# -- malformed success answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>Resend</html>", "content_type": "text/html"},
        {"json": {}},
        {"json": {"id": ""}},
        {"json": {"id": 42}},
        {"json": ["49a3999c"]},
    ],
)
def test_a_2xx_that_is_not_a_success_is_bad_response(
    mock: responses.RequestsMock, driver: ResendDriver, answer: dict[str, Any]
) -> None:
    mock.post(URL, status=200, **answer)
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "bad_response"
    assert caught.value.status == 200


# -- error classification ---------------------------------------------------------------------

ERRORS = [
    # (body, class, reason, text)
    (resend_error(400, "validation_error", "Invalid `cc` field."), MessageRejected, None,
     "Invalid `cc` field."),
    (INVALID_TO, MessageRejected, None, "Invalid `to` field."),
    (resend_error(422, "missing_required_field", "Missing `to` field."), MessageRejected, None,
     "Missing `to` field."),
    (resend_error(422, "invalid_from_address", "Invalid `from` field. The email address needs "
                  "to follow the `email@example.com` or `Name <email@example.com>` format."),
     MessageRejected, None, "Invalid `from` field."),
    (resend_error(401, "missing_api_key", "Missing API key in the authorization header."),
     ProviderUnavailable, "auth", "Missing API key"),
    (resend_error(401, "restricted_api_key", "This API key is restricted to only send emails."),
     ProviderUnavailable, "auth", "restricted to only send emails"),
    (resend_error(403, "invalid_api_key", "API key is invalid"), ProviderUnavailable, "auth",
     "API key is invalid"),
    (TESTING_ONLY, ProviderUnavailable, "account", "You can only send testing emails"),
    (resend_error(403, "validation_error", "The example.com domain is not verified. Please, "
                  "add and verify your domain on https://resend.com/domains"),
     ProviderUnavailable, "account", "domain is not verified"),
    (resend_error(403, "suspended_api_key", "This API key is suspended"), ProviderUnavailable,
     "account", "This API key is suspended"),
    (resend_error(409, "invalid_idempotent_request",
                  "Same idempotency key used with a different request payload."),
     MessageRejected, None, "different request payload"),
    (CONCURRENT, ProviderUnavailable, "server_error", "still in progress"),
    (RATE_LIMITED, ProviderUnavailable, "rate_limited", "Too many requests"),
    (resend_error(429, "daily_quota_exceeded",
                  "You have reached your daily email sending quota."),
     ProviderUnavailable, "account", "daily email sending quota"),
    (resend_error(429, "monthly_quota_exceeded",
                  "You have reached your monthly email sending quota."),
     ProviderUnavailable, "account", "monthly email sending quota"),
    (resend_error(451, "security_error", "We may have found a security issue with the "
                  "request."), MessageRejected, None, "security issue"),
    (resend_error(500, "application_error", "An unexpected error occurred."),
     ProviderUnavailable, "server_error", "An unexpected error occurred."),
    (resend_error(500, "internal_server_error", "An unexpected error occurred."),
     ProviderUnavailable, "server_error", "An unexpected error occurred."),
]  # fmt: skip


@pytest.mark.parametrize(("body", "cls", "reason", "text"), ERRORS)
def test_documented_errors_are_classified(
    mock: responses.RequestsMock,
    driver: ResendDriver,
    body: dict[str, Any],
    cls: type[Exception],
    reason: str | None,
    text: str,
) -> None:
    mock.post(URL, status=body["statusCode"], json=body)
    with pytest.raises(cls) as caught:
        driver.send(simple_message())
    error = caught.value
    assert isinstance(error, (ProviderUnavailable, MessageRejected))
    assert error.driver == "resend-1"
    assert error.status == body["statusCode"]
    assert error.provider_code == body["name"]
    assert text in str(error)
    assert API_KEY not in str(error)
    if reason is not None:
        assert isinstance(error, ProviderUnavailable)
        assert error.reason == reason


def test_concurrent_request_with_the_same_key_fails_over_unambiguously(
    mock: responses.RequestsMock, driver: ResendDriver
) -> None:
    """An earlier attempt at this message is still running at Resend: this answer is an HTTP
    answer, so not ambiguous (the earlier attempt's timeout was); the mailer fails over."""
    mock.post(URL, status=409, json=CONCURRENT)
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.ambiguous is False


def test_an_ordinary_error_answer_is_not_ambiguous(
    mock: responses.RequestsMock, driver: ResendDriver
) -> None:
    mock.post(URL, status=500, json=resend_error(500, "application_error", "Oops"))
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.ambiguous is False


def test_429_retry_after_is_kept(mock: responses.RequestsMock, driver: ResendDriver) -> None:
    mock.post(URL, status=429, json=RATE_LIMITED, headers={"retry-after": "120"})
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "rate_limited"
    assert caught.value.retry_after == 120


def test_quota_exhausted_keeps_the_driver_out_for_an_hour(
    mock: responses.RequestsMock, driver: ResendDriver
) -> None:
    body = resend_error(429, "daily_quota_exceeded", "You have reached your daily quota.")
    mock.post(URL, status=429, json=body)
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.retry_after == 3600


# -- failover ---------------------------------------------------------------------------------

RESET = connection_reset()

Arrange = Callable[[responses.RequestsMock], None]

#: Failures that fail over beyond the contract's 500, 429, read timeout and refused cases.
TRANSIENT: dict[str, Arrange] = {
    "auth": lambda m: m.post(URL, status=403, json=resend_error(403, "invalid_api_key", "x")),
    "testing-only": lambda m: m.post(URL, status=403, json=TESTING_ONLY),
    "concurrent-key": lambda m: m.post(URL, status=409, json=CONCURRENT),
    "bad-response": lambda m: m.post(URL, status=200, body="not resend"),
}


def mailer_with_backup(clock: FakeClock | None = None) -> tuple[FailoverMailer, MemoryDriver]:
    backup = MemoryDriver(name="backup")
    mailer = FailoverMailer(
        [make_driver(), backup], failure_threshold=2, cooldown=30.0, clock=clock or FakeClock()
    )
    return mailer, backup


def test_reused_idempotency_key_does_not_fail_over(mock: responses.RequestsMock) -> None:
    """A 409 for a key reused with another payload is a rejection (the contract checks a 422)."""
    body = resend_error(409, "invalid_idempotent_request", "different payload")
    mock.post(URL, status=409, json=body)
    mailer, backup = mailer_with_backup()
    with mailer, pytest.raises(MessageRejected) as caught:
        mailer.send(simple_message())
    assert backup.outbox == []
    assert [(a.driver, a.outcome) for a in caught.value.attempts] == [("resend-1", "rejected")]


def test_unsupported_tags_are_skipped_and_delivered_by_memory(
    mock: responses.RequestsMock,
) -> None:
    mailer, backup = mailer_with_backup()
    with mailer:
        result = mailer.send(simple_message(tags=["two words"]))
    assert [(a.driver, a.outcome) for a in result.attempts] == [
        ("resend-1", "skipped"),
        ("backup", "sent"),
    ]
    assert len(backup.outbox) == 1
    assert len(mock.calls) == 0


def test_retry_after_keeps_the_driver_out_for_that_long(mock: responses.RequestsMock) -> None:
    """A 429 with retry-after: 120 skips Resend for 120 s, then tries it again."""
    mock.post(URL, status=429, json=RATE_LIMITED, headers={"retry-after": "120"})
    clock = FakeClock()
    mailer, backup = mailer_with_backup(clock)
    with mailer:
        mailer.send(simple_message())
        clock.now += 119
        assert [a.outcome for a in mailer.send(simple_message()).attempts] == ["skipped", "sent"]
        assert len(mock.calls) == 1
        mock.replace(responses.POST, URL, json=SUCCESS)
        clock.now += 2
        third = mailer.send(simple_message())
    assert third.driver == "resend-1"
    assert third.message_id == SUCCESS["id"]
    assert len(backup.outbox) == 2
