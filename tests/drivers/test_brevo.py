"""The ``brevo`` driver against a fake Brevo transactional email API (``responses``).

Sections: contract (with transport failures, Retry-After and the generic failover cases from
:class:`HttpDriverContractTests`), payload mapping and idempotency key, success and message id,
malformed success answers, error classification, failover.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
import responses
from http_fakes import b64, sent_json

from mailfailover.drivers.brevo import BrevoDriver, idempotency_key
from mailfailover.errors import MessageRejected, ProviderUnavailable, UnsupportedFeature
from mailfailover.mailer import FailoverMailer
from mailfailover.message import Attachment
from mailfailover.testing import (
    PDF_BYTES,
    FakeClock,
    HttpDriverContractTests,
    MemoryDriver,
    connection_reset,
    full_message,
    simple_message,
)

API_KEY = "xkeysib-0123456789abcdef-AbCdEfGh"
URL = "https://api.brevo.com/v3/smtp/email"
SUCCESS = {"messageId": "<202608041342.16839723220@smtp-relay.mailin.fr>"}
INVALID_TO = {"code": "invalid_parameter", "message": "email is not valid in to"}
SENDER_NOT_VALID = {
    "code": "invalid_parameter",
    "message": "Sending has been rejected because the sender you used sender@example.com is "
    "not valid. Validate your sender or authenticate your domain",
}
TOO_MANY = {"code": "too_many_requests", "message": "The expected rate limit is exceeded."}


def make_driver(**settings: Any) -> BrevoDriver:
    settings.setdefault("api_key", API_KEY)
    return BrevoDriver(name="brevo-1", **settings)


@pytest.fixture
def driver() -> Iterator[BrevoDriver]:
    instance = make_driver()
    yield instance
    instance.close()


def without_inline(**changes: Any) -> Any:
    """The full message less its inline image, which Brevo cannot carry."""
    message = full_message(**changes)
    return message.replace(attachments=[a for a in message.attachments if not a.inline])


# -- contract -------------------------------------------------------------------------------


class TestBrevoContract(HttpDriverContractTests):
    def failover_cases(self) -> dict[str, Arrange]:
        return TRANSIENT

    secrets = (API_KEY,)
    endpoint = URL
    success_response: ClassVar[dict[str, Any]] = {"status": 201, "json": SUCCESS}
    rejection_response: ClassVar[dict[str, Any]] = {"status": 400, "json": INVALID_TO}
    unavailable_response: ClassVar[dict[str, Any]] = {
        "status": 502,
        "body": "<html>502 Bad Gateway</html>",
    }

    def make_driver(self) -> BrevoDriver:
        return make_driver()


# -- payload mapping and idempotency key ------------------------------------------------------


def test_full_message_with_inline_image_is_unsupported_before_any_request(
    mock: responses.RequestsMock, driver: BrevoDriver
) -> None:
    """Brevo has no inline images: the full message is refused, naming the field."""
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(full_message())
    assert caught.value.field == "attachments"
    assert caught.value.driver == "brevo-1"
    assert len(mock.calls) == 0


def test_full_message_without_inline_image_maps_every_field(
    mock: responses.RequestsMock, driver: BrevoDriver
) -> None:
    mock.post(URL, status=201, json=SUCCESS)
    message = without_inline()
    driver.send(message)
    request = mock.calls[0].request
    assert request.method == "POST"
    assert request.url == URL
    assert request.headers["api-key"] == API_KEY
    assert "Authorization" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("mailfailover/")
    assert isinstance(request.body, bytes)
    assert "Grüße".encode() in request.body
    assert sent_json(mock) == {
        "sender": {"email": "sender@example.com", "name": "Zoë Sender"},
        "to": [{"email": "ann@example.com", "name": "Ann Tö"}, {"email": "bob@example.com"}],
        "cc": [{"email": "cc1@example.com", "name": "Cäcilie"}, {"email": "cc2@example.com"}],
        "bcc": [{"email": "bcc1@example.com"}, {"email": "bcc2@example.com", "name": "Björn"}],
        "replyTo": {"email": "reply@example.com", "name": "Replies"},
        "subject": "Grüße — your receipt",
        "textContent": "Hallo, grüße!\nSee the PDF.",
        "htmlContent": '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">',
        "headers": {
            "X-Campaign": "spring-2026",
            "X-Mailin-custom": '{"user_id": "42", "order": "A-17"}',
            "idempotencyKey": idempotency_key(message),
        },
        "attachment": [{"name": "Rechnung-ä.pdf", "content": b64(PDF_BYTES)}],
        "tags": ["receipts", "billing"],
    }


def test_simple_message_sends_only_what_it_has(
    mock: responses.RequestsMock, driver: BrevoDriver
) -> None:
    """A text-only message also carries its text as htmlContent, which Brevo's spec makes
    mandatory without a template (and without which Brevo drops the text part)."""
    mock.post(URL, status=201, json=SUCCESS)
    message = simple_message(text="Hello <there> & you.\nBye")
    driver.send(message)
    assert sent_json(mock) == {
        "sender": {"email": "sender@example.com", "name": "Sender"},
        "to": [{"email": "rcpt@example.com"}],
        "subject": "Hello",
        "textContent": "Hello <there> & you.\nBye",
        "htmlContent": '<pre style="white-space: pre-wrap; font-family: inherit">'
        "Hello &lt;there&gt; &amp; you.\nBye</pre>",
        "headers": {"idempotencyKey": idempotency_key(message)},
    }


def test_html_only_message_sends_no_text(mock: responses.RequestsMock, driver: BrevoDriver) -> None:
    mock.post(URL, status=201, json=SUCCESS)
    driver.send(simple_message(text=None, html="<p>Hi</p>"))
    sent = sent_json(mock)
    assert sent["htmlContent"] == "<p>Hi</p>"
    assert "textContent" not in sent


@pytest.mark.parametrize("field", ["sender", "to", "cc", "bcc", "reply_to"])
def test_display_names_over_70_characters_are_refused(
    mock: responses.RequestsMock, driver: BrevoDriver, field: str
) -> None:
    """Brevo: "Maximum allowed characters are 70" for a name; refused, nothing sent."""
    mailbox = f"{'N' * 71} <someone@example.com>"
    value: object = mailbox if field == "sender" else [mailbox]
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(simple_message(**{field: value}))
    assert caught.value.field == field
    assert not mock.calls


def test_a_name_counts_as_sent_rfc2047_encoded(
    mock: responses.RequestsMock, driver: BrevoDriver
) -> None:
    """A non-ASCII name with a special goes as an encoded word: that is what must fit."""
    with pytest.raises(UnsupportedFeature, match="at most 70"):
        driver.send(simple_message(to=[f'"{"ü" * 30}, Jr." <a@example.com>']))
    assert not mock.calls


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({}, "https://api.brevo.com/v3/smtp/email"),
        ({"base_url": "http://127.0.0.1:8025"}, "http://127.0.0.1:8025/v3/smtp/email"),
        ({"base_url": "http://127.0.0.1:8025/"}, "http://127.0.0.1:8025/v3/smtp/email"),
    ],
)
def test_url_default_and_base_url(
    mock: responses.RequestsMock, settings: dict[str, Any], url: str
) -> None:
    mock.post(url, status=201, json=SUCCESS)
    with make_driver(**settings) as driver:
        driver.send(simple_message())
    assert mock.calls[0].request.url == url
    assert mock.calls[0].request.headers["api-key"] == API_KEY


def test_test_mode_adds_the_drop_header(mock: responses.RequestsMock) -> None:
    mock.post(URL, status=201, json=SUCCESS)
    with make_driver(test_mode=True) as driver:
        driver.send(simple_message())
    assert sent_json(mock)["headers"]["X-Sib-Sandbox"] == "drop"


def test_idempotency_key_is_a_stable_uuid_per_message() -> None:
    """Brevo wants a UUID: the same message (and its retries) always gets the same one; a
    different message gets another even when it reuses the Message-ID (issue 9)."""
    one, two = simple_message(), simple_message()
    key = idempotency_key(one)
    assert len(key) == 36 and key.count("-") == 4
    assert key == idempotency_key(one.replace(message_id=one.message_id))
    assert key != idempotency_key(two)
    for changes in ({"subject": "other"}, {"to": ["someone@example.com"]}, {"bcc": ["b@x.io"]},
                    {"text": "other"}, {"metadata": {"a": "1"}}):  # fmt: skip
        assert key != idempotency_key(one.replace(message_id=one.message_id, **changes))


def test_non_ascii_name_with_specials_is_encoded(
    mock: responses.RequestsMock, driver: BrevoDriver
) -> None:
    """Brevo drops a non-ASCII name that has a comma; an RFC 2047 word gets through."""
    mock.post(URL, status=201, json=SUCCESS)
    driver.send(simple_message(to=['"Müller, Jörg" <j@example.com>']))
    assert sent_json(mock)["to"] == [
        {"email": "j@example.com", "name": "=?utf-8?b?TcO8bGxlciwgSsO2cmc=?="}
    ]


def test_attachment_without_name_is_named_from_its_type(
    mock: responses.RequestsMock, driver: BrevoDriver
) -> None:
    mock.post(URL, status=201, json=SUCCESS)
    driver.send(simple_message(attachments=[Attachment(None, PDF_BYTES, "application/pdf")]))
    assert sent_json(mock)["attachment"] == [{"name": "attachment.pdf", "content": b64(PDF_BYTES)}]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"attachments": [Attachment("a.png", b"png", inline=True)]}, "attachments"),
        ({"attachments": [Attachment("setup.exe", b"MZ")]}, "attachments"),
        ({"attachments": [Attachment("README", b"text", "text/plain")]}, "attachments"),
        ({"reply_to": ["a@example.com", "b@example.com"]}, "reply_to"),
        ({"headers": {"X-Note": "grüße"}}, "headers"),
        ({"metadata": {"city": "Zürich"}}, "metadata"),
    ],
)
def test_what_brevo_cannot_carry_is_unsupported_before_any_request(
    mock: responses.RequestsMock, driver: BrevoDriver, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(simple_message(**changes))
    assert caught.value.field == field
    assert len(mock.calls) == 0


# -- success and message id -------------------------------------------------------------------


@pytest.mark.parametrize("status", [201, 200])
def test_success_returns_the_message_id(
    mock: responses.RequestsMock, driver: BrevoDriver, status: int
) -> None:
    mock.post(URL, status=status, json=SUCCESS)
    receipt = driver.send(simple_message())
    assert receipt.driver == "brevo-1"
    assert receipt.message_id == "<202608041342.16839723220@smtp-relay.mailin.fr>"
    assert receipt.response == SUCCESS


def test_repeated_idempotency_key_means_already_accepted(
    mock: responses.RequestsMock, driver: BrevoDriver
) -> None:
    """Brevo refuses a key it processed within 30 minutes: this message went out then."""
    body = {"code": "duplicate_parameter", "message": "idempotencyKey is already used"}
    mock.post(URL, status=400, json=body)
    receipt = driver.send(simple_message())
    assert receipt.driver == "brevo-1"
    assert receipt.message_id is None
    assert receipt.response == body


# -- malformed success answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>Brevo</html>", "content_type": "text/html"},
        {"json": {}},
        {"json": {"messageId": ""}},
        {"json": {"messageIds": []}},
        {"json": "queued"},
    ],
)
def test_a_2xx_that_is_not_a_success_is_bad_response(
    mock: responses.RequestsMock, driver: BrevoDriver, answer: dict[str, Any]
) -> None:
    mock.post(URL, status=201, **answer)
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "bad_response"
    assert caught.value.status == 201


# -- error classification ---------------------------------------------------------------------

ERRORS = [
    # (status, body, class, reason, text)
    (400, INVALID_TO, MessageRejected, None, "email is not valid in to"),
    (400, {"code": "missing_parameter", "message": "subject is missing"}, MessageRejected, None,
     "subject is missing"),
    (400, {"code": "out_of_range", "message": "attachment size exceeds the limit"},
     MessageRejected, None, "attachment size"),
    (400, {"code": "duplicate_parameter", "message": "to email is duplicated"},
     MessageRejected, None, "duplicated"),
    (400, SENDER_NOT_VALID, ProviderUnavailable, "account", "Validate your sender"),
    (401, {"code": "unauthorized", "message": "Key not found"}, ProviderUnavailable, "auth",
     "Key not found"),
    (402, {"code": "not_enough_credits", "message": "Not enough credits"}, ProviderUnavailable,
     "account", "Not enough credits"),
    (403, {"code": "permission_denied", "message": "Unable to send email. Your SMTP account is "
           "not yet activated."}, ProviderUnavailable, "auth", "not yet activated"),
    (403, {"code": "account_under_validation", "message": "Your account is under validation."},
     ProviderUnavailable, "account", "under validation"),
    (429, TOO_MANY, ProviderUnavailable, "rate_limited", "rate limit is exceeded"),
    (500, {"code": "internal_error", "message": "Internal server error"}, ProviderUnavailable,
     "server_error", "Internal server error"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "cls", "reason", "text"), ERRORS)
def test_documented_errors_are_classified(
    mock: responses.RequestsMock,
    driver: BrevoDriver,
    status: int,
    body: dict[str, Any],
    cls: type[Exception],
    reason: str | None,
    text: str,
) -> None:
    mock.post(URL, status=status, json=body)
    with pytest.raises(cls) as caught:
        driver.send(simple_message())
    error = caught.value
    assert isinstance(error, (ProviderUnavailable, MessageRejected))
    assert error.driver == "brevo-1"
    assert error.status == status
    assert error.provider_code == body["code"]
    assert text in str(error)
    assert API_KEY not in str(error)
    if reason is not None:
        assert isinstance(error, ProviderUnavailable)
        assert error.reason == reason
        assert error.ambiguous is False


def test_429_wait_is_read_from_x_sib_ratelimit_reset(
    mock: responses.RequestsMock, driver: BrevoDriver
) -> None:
    """x-sib-ratelimit-reset is the seconds until the window resets (Brevo's docs); the
    contract checks the standard Retry-After."""
    mock.post(URL, status=429, json=TOO_MANY, headers={"x-sib-ratelimit-reset": "120"})
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "rate_limited"
    assert caught.value.retry_after == 120


def test_429_reset_given_as_epoch_time_is_read_as_one(
    mock: responses.RequestsMock, driver: BrevoDriver
) -> None:
    reset = str(int(time.time()) + 120)
    mock.post(URL, status=429, json=TOO_MANY, headers={"x-sib-ratelimit-reset": reset})
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.retry_after is not None
    assert 110 <= caught.value.retry_after <= 121


def test_429_garbled_reset_gives_no_wait(mock: responses.RequestsMock, driver: BrevoDriver) -> None:
    mock.post(URL, status=429, json=TOO_MANY, headers={"x-sib-ratelimit-reset": "soon"})
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.retry_after is None


# -- failover ---------------------------------------------------------------------------------

RESET = connection_reset()

Arrange = Callable[[responses.RequestsMock], None]

#: Failures that fail over beyond the contract's 502, 429, read timeout and refused cases.
TRANSIENT: dict[str, Arrange] = {
    "auth": lambda m: m.post(URL, status=401, json={"code": "unauthorized", "message": "x"}),
    "no-credits": lambda m: m.post(URL, status=402, json={"code": "not_enough_credits",
                                                           "message": "Not enough credits"}),
    "sender-not-valid": lambda m: m.post(URL, status=400, json=SENDER_NOT_VALID),
    "bad-response": lambda m: m.post(URL, status=201, body="not brevo"),
}  # fmt: skip


def mailer_with_backup(clock: FakeClock | None = None) -> tuple[FailoverMailer, MemoryDriver]:
    backup = MemoryDriver(name="backup")
    mailer = FailoverMailer(
        [make_driver(), backup], failure_threshold=2, cooldown=30.0, clock=clock or FakeClock()
    )
    return mailer, backup


def test_inline_image_is_skipped_and_delivered_by_memory(mock: responses.RequestsMock) -> None:
    mailer, backup = mailer_with_backup()
    with mailer:
        result = mailer.send(full_message())
    assert [(a.driver, a.outcome) for a in result.attempts] == [
        ("brevo-1", "skipped"),
        ("backup", "sent"),
    ]
    assert len(backup.outbox) == 1
    assert len(mock.calls) == 0


def test_already_accepted_counts_as_sent_by_brevo(mock: responses.RequestsMock) -> None:
    mock.post(URL, status=400, json={"code": "duplicate_parameter",
                                     "message": "idempotencyKey is already used"})  # fmt: skip
    mailer, backup = mailer_with_backup()
    with mailer:
        message = simple_message()
        result = mailer.send(message)
    assert result.driver == "brevo-1"
    assert result.message_id == message.message_id
    assert backup.outbox == []


def test_rate_limit_reset_keeps_the_driver_out_for_that_long(
    mock: responses.RequestsMock,
) -> None:
    """A 429 with x-sib-ratelimit-reset: 120 skips Brevo for 120 s, then tries it again."""
    mock.post(URL, status=429, json=TOO_MANY, headers={"x-sib-ratelimit-reset": "120"})
    clock = FakeClock()
    mailer, backup = mailer_with_backup(clock)
    with mailer:
        mailer.send(simple_message())
        clock.now += 119
        assert [a.outcome for a in mailer.send(simple_message()).attempts] == ["skipped", "sent"]
        assert len(mock.calls) == 1
        mock.replace(responses.POST, URL, status=201, json=SUCCESS)
        clock.now += 2
        third = mailer.send(simple_message())
    assert third.driver == "brevo-1"
    assert third.message_id == SUCCESS["messageId"]
    assert len(backup.outbox) == 2
