"""The ``sparkpost`` driver against a fake SparkPost Transmissions API (``responses``).

Sections: contract (with transport failures, Retry-After and the generic failover cases from
:class:`HttpDriverContractTests`), payload mapping, success and message id, malformed success
answers, error classification, failover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
import responses
from http_fakes import b64, sent_json

from mailfailover import Message
from mailfailover.drivers.sparkpost import SparkPostDriver
from mailfailover.errors import (
    ConfigError,
    MessageRejected,
    ProviderUnavailable,
    UnsupportedFeature,
)
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

API_KEY = "14ac5499cfdd2bb2859e4476d2e5b1d2bad079bf"
URL = "https://api.sparkpost.com/api/v1/transmissions"

SUCCESS: dict[str, Any] = {
    "results": {
        "total_rejected_recipients": 0,
        "total_accepted_recipients": 1,
        "id": "11668787484950529",
    }
}
INVALID_DOMAIN = {
    "errors": [
        {
            "description": "Unconfigured or unverified sending domain.",
            "code": "7001",
            "message": "Invalid domain",
        }
    ]
}
MISSING_FIELD = {
    "errors": [
        {
            "message": "required field is missing",
            "description": "content object or template_id required",
            "code": "1400",
        }
    ]
}
SENDING_LIMIT = {"errors": [{"message": "Exceed Sending Limit (hourly)", "code": "2101"}]}


def make_driver(**settings: Any) -> SparkPostDriver:
    settings.setdefault("api_key", API_KEY)
    return SparkPostDriver(name="sparkpost-1", **settings)


@pytest.fixture
def driver() -> Iterator[SparkPostDriver]:
    instance = make_driver()
    yield instance
    instance.close()


# -- contract -------------------------------------------------------------------------------


class TestSparkPostContract(HttpDriverContractTests):
    def failover_cases(self) -> dict[str, Arrange]:
        return TRANSIENT

    secrets = (API_KEY,)
    endpoint = URL
    success_response: ClassVar[dict[str, Any]] = {"json": SUCCESS}
    rejection_response: ClassVar[dict[str, Any]] = {"status": 422, "json": MISSING_FIELD}

    def make_driver(self) -> SparkPostDriver:
        return make_driver()


# -- payload mapping --------------------------------------------------------------------------

TO_LINE = "Ann Tö <ann@example.com>, bob@example.com"


def test_full_message_maps_every_field(
    mock: responses.RequestsMock, driver: SparkPostDriver
) -> None:
    """Every recipient is in `recipients` showing the To line; Cc is a header; all else in
    `content`, tags on each recipient, metadata at the transmission level."""
    mock.post(URL, json=SUCCESS)
    driver.send(full_message())
    request = mock.calls[0].request
    assert request.method == "POST"
    assert request.url == URL
    assert request.headers["Authorization"] == API_KEY  # the bare key, no scheme
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("mailfailover/")
    assert isinstance(request.body, bytes)
    assert "Grüße".encode() in request.body
    tags = ["receipts", "billing"]
    assert sent_json(mock) == {
        "options": {"perform_substitutions": False},
        "recipients": [
            {"address": {"email": email, "header_to": TO_LINE}, "tags": tags}
            for email in (
                "ann@example.com",
                "bob@example.com",
                "cc1@example.com",
                "cc2@example.com",
                "bcc1@example.com",
                "bcc2@example.com",
            )
        ],
        "content": {
            "from": {"email": "sender@example.com", "name": "Zoë Sender"},
            "subject": "Grüße — your receipt",
            "text": "Hallo, grüße!\nSee the PDF.",
            "html": '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">',
            "reply_to": "Replies <reply@example.com>",
            "headers": {
                "Cc": "Cäcilie <cc1@example.com>, cc2@example.com",
                "Message-ID": "<full-message-1@example.com>",
                "X-Campaign": "spring-2026",
            },
            "attachments": [
                {"name": "Rechnung-ä.pdf", "type": "application/pdf", "data": b64(PDF_BYTES)}
            ],
            "inline_images": [{"name": "logo.png", "type": "image/png", "data": b64(PNG_BYTES)}],
        },
        "metadata": {"user_id": "42", "order": "A-17"},
    }


def test_simple_message_sends_only_what_it_has(
    mock: responses.RequestsMock, driver: SparkPostDriver
) -> None:
    mock.post(URL, json=SUCCESS)
    message = simple_message()
    driver.send(message)
    assert sent_json(mock) == {
        "options": {"perform_substitutions": False},
        "recipients": [{"address": {"email": "rcpt@example.com", "header_to": "rcpt@example.com"}}],
        "content": {
            "from": {"email": "sender@example.com", "name": "Sender"},
            "subject": "Hello",
            "text": "Hello there.",
            "headers": {"Message-ID": message.message_id},
        },
    }


def test_duplicate_addresses_become_one_recipient_and_domains_are_idna(
    mock: responses.RequestsMock, driver: SparkPostDriver
) -> None:
    """An address in both To and Cc is delivered once; SparkPost gets the IDNA domain."""
    mock.post(URL, json=SUCCESS)
    driver.send(simple_message(to=["Jörg <jörg@bücher.example>"], cc=["jörg@BÜCHER.example"]))
    sent = sent_json(mock)
    assert sent["recipients"] == [
        {
            "address": {
                "email": "jörg@xn--bcher-kva.example",
                "header_to": "Jörg <jörg@xn--bcher-kva.example>",
            }
        }
    ]
    assert sent["content"]["headers"]["Cc"] == "jörg@xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({}, "https://api.sparkpost.com/api/v1/transmissions"),
        ({"region": "us"}, "https://api.sparkpost.com/api/v1/transmissions"),
        ({"region": "eu"}, "https://api.eu.sparkpost.com/api/v1/transmissions"),
        ({"base_url": "http://127.0.0.1:8025"}, "http://127.0.0.1:8025/api/v1/transmissions"),
        (
            {"base_url": "http://127.0.0.1:8025/", "region": "eu"},
            "http://127.0.0.1:8025/api/v1/transmissions",
        ),
    ],
)
def test_url_default_regional_and_base_url(
    mock: responses.RequestsMock, settings: dict[str, Any], url: str
) -> None:
    mock.post(url, json=SUCCESS)
    with make_driver(**settings) as driver:
        driver.send(simple_message())
    assert mock.calls[0].request.url == url
    assert mock.calls[0].request.headers["Authorization"] == API_KEY


def test_the_old_sandbox_setting_is_a_config_error_naming_test_mode() -> None:
    """SparkPost's sandbox domain sends only its `my-first-email` template, never the
    message: the setting is gone and its old name says what replaced it."""
    with pytest.raises(ConfigError, match=r"'sandbox' was removed.*test_mode"):
        make_driver(sandbox=True)
    with pytest.raises(ConfigError, match="'sandbox' was removed"):
        SparkPostDriver.validate_settings({"api_key": API_KEY, "sandbox": False}, driver="sp")


def test_test_mode_sends_every_recipient_to_the_sink(mock: responses.RequestsMock) -> None:
    """The envelope address gets SparkPost's sink domain; the visible To line does not."""
    mock.post(URL, json=SUCCESS)
    with make_driver(test_mode=True) as driver:
        driver.send(simple_message(to=["Ann <ann@example.com>"], bcc=["b@example.org"]))
    assert sent_json(mock)["recipients"] == [
        {"address": {"email": "ann@example.com.sink.sparkpostmail.com",
                     "header_to": "Ann <ann@example.com>"}},
        {"address": {"email": "b@example.org.sink.sparkpostmail.com",
                     "header_to": "Ann <ann@example.com>"}},
    ]  # fmt: skip
    assert "sandbox" not in sent_json(mock)["options"]


def test_templating_leaves_substitutions_on(mock: responses.RequestsMock) -> None:
    mock.post(URL, json=SUCCESS)
    with make_driver(templating=True) as driver:
        driver.send(simple_message(subject="Hi {{name}}", text="You owe {{amount}}."))
    sent = sent_json(mock)
    assert "options" not in sent
    assert sent["content"]["subject"] == "Hi {{name}}"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subject": "Your {{order}}"}, "subject"),
        ({"headers": {"X-Ref": "a}}b"}}, "headers"),
        ({"sender": "{{shop}} <shop@example.com>"}, "sender"),
        ({"to": ["{{name}} <ann@example.com>"]}, "to"),
    ],
)
def test_template_syntax_in_headers_is_refused_without_templating(
    mock: responses.RequestsMock, driver: SparkPostDriver, changes: dict[str, Any], field: str
) -> None:
    """With substitutions off SparkPost still substitutes in headers: refused, not changed."""
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(simple_message(**changes))
    assert caught.value.field == field
    assert not mock.calls


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tags": [f"tag{i}" for i in range(11)]}, "tags"),
        ({"metadata": {"blob": "x" * (10 * 1024)}}, "metadata"),
    ],
)
def test_what_sparkpost_cannot_carry_is_unsupported_before_any_request(
    mock: responses.RequestsMock, driver: SparkPostDriver, changes: dict[str, Any], field: str
) -> None:
    """More than 10 tags would be silently ignored, over 1000 bytes of metadata refused."""
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(simple_message(**changes))
    assert caught.value.field == field
    assert len(mock.calls) == 0


# -- success and message id -------------------------------------------------------------------


def test_success_returns_the_transmission_id(
    mock: responses.RequestsMock, driver: SparkPostDriver
) -> None:
    mock.post(URL, json=SUCCESS)
    receipt = driver.send(simple_message())
    assert receipt.driver == "sparkpost-1"
    assert receipt.message_id == "11668787484950529"
    assert receipt.response == SUCCESS


def test_partly_accepted_transmission_is_a_success(
    mock: responses.RequestsMock, driver: SparkPostDriver
) -> None:
    """ "transmission created, but with validation errors": sent to the valid recipients."""
    answer = {
        "errors": [{"message": "transmission created, but with validation errors",
                    "code": "2000"}],
        "results": {
            "rcpt_to_errors": [{"message": "required field is missing",
                                "description": "address.email is required for each recipient",
                                "code": "1400"}],
            "total_rejected_recipients": 1, "total_accepted_recipients": 1,
            "id": "11668787484950530",
        },
    }  # fmt: skip
    mock.post(URL, json=answer)
    receipt = driver.send(simple_message(to=["a@example.com", "b@example.com"]))
    assert receipt.message_id == "11668787484950530"
    assert receipt.response == answer


def test_nothing_accepted_with_recipient_errors_is_a_rejection(
    mock: responses.RequestsMock, driver: SparkPostDriver
) -> None:
    answer = {
        "errors": [{"message": "transmission created, but with validation errors",
                    "code": "2000"}],
        "results": {
            "rcpt_to_errors": [{"message": "invalid data format/type",
                                "description": "Invalid recipient address.email: bob@",
                                "code": "1300"}],
            "total_rejected_recipients": 1, "total_accepted_recipients": 0,
            "id": "11668787484950531",
        },
    }  # fmt: skip
    mock.post(URL, json=answer)
    with pytest.raises(MessageRejected) as caught:
        driver.send(simple_message())
    assert caught.value.status == 200
    assert caught.value.provider_code == "1300"
    assert "Invalid recipient address.email" in str(caught.value)


# -- malformed success answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>It works!</html>", "content_type": "text/html"},
        {"json": {}},
        {"json": ["results"]},
        {"json": {"results": {}}},
        {"json": {"results": {"id": "1"}}},
        {"json": {"results": {"id": "", "total_accepted_recipients": 1}}},
        {"json": {"results": {"id": "1", "total_accepted_recipients": 0,
                              "total_rejected_recipients": 1}}},
    ],
)  # fmt: skip
def test_a_2xx_that_is_not_a_success_is_bad_response(
    mock: responses.RequestsMock, driver: SparkPostDriver, answer: dict[str, Any]
) -> None:
    mock.post(URL, status=200, **answer)
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "bad_response"
    assert caught.value.status == 200


# -- error classification ---------------------------------------------------------------------

ERRORS = [
    # (status, body, class, reason, provider_code, text)
    (401, {"errors": [{"message": "Unauthorized."}]}, ProviderUnavailable, "auth", None,
     "Unauthorized."),
    (403, {"errors": [{"message": "Forbidden."}]}, ProviderUnavailable, "auth", None,
     "Forbidden."),
    (400, INVALID_DOMAIN, ProviderUnavailable, "account", "7001",
     "Invalid domain: Unconfigured or unverified sending domain."),
    (420, SENDING_LIMIT, ProviderUnavailable, "rate_limited", "2101",
     "Exceed Sending Limit (hourly)"),
    (422, MISSING_FIELD, MessageRejected, None, "1400",
     "required field is missing: content object or template_id required"),
    (422, {"errors": [{"message": "invalid data format/type", "description":
                       "Invalid header name: 'X Bad'", "code": "1300"}]},
     MessageRejected, None, "1300", "Invalid header name"),
    (400, {"errors": [{"message": "Message generation rejected", "description":
                       "recipient address suppressed due to customer policy", "code": "1902"}]},
     MessageRejected, None, "1902", "recipient address suppressed"),
    (429, {"errors": [{"message": "Too many requests"}]}, ProviderUnavailable, "rate_limited",
     None, "Too many requests"),
    (500, {"errors": [{"message": "Internal server error", "code": "1"}]},
     ProviderUnavailable, "server_error", "1", "Internal server error"),
    (503, "<html>Service Unavailable</html>", ProviderUnavailable, "server_error", None,
     "Service Unavailable"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "cls", "reason", "code", "text"), ERRORS)
def test_documented_errors_are_classified(
    mock: responses.RequestsMock,
    driver: SparkPostDriver,
    status: int,
    body: Any,
    cls: type[Exception],
    reason: str | None,
    code: str | None,
    text: str,
) -> None:
    if isinstance(body, str):
        mock.post(URL, status=status, body=body)
    else:
        mock.post(URL, status=status, json=body)
    with pytest.raises(cls) as caught:
        driver.send(simple_message())
    error = caught.value
    assert isinstance(error, (ProviderUnavailable, MessageRejected))
    assert error.driver == "sparkpost-1"
    assert error.status == status
    assert error.provider_code == code
    assert text in str(error)
    assert API_KEY not in str(error)
    if reason is not None:
        assert isinstance(error, ProviderUnavailable)
        assert error.reason == reason
        assert error.ambiguous is False


def test_sending_limit_keeps_the_driver_out_for_an_hour(
    mock: responses.RequestsMock, driver: SparkPostDriver
) -> None:
    """420 names an hourly, daily or monthly limit: none resets sooner than the hour."""
    mock.post(URL, status=420, json=SENDING_LIMIT)
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.retry_after == 3600


def test_sending_limit_retry_after_is_kept(
    mock: responses.RequestsMock, driver: SparkPostDriver
) -> None:
    """A Retry-After on a 420 replaces the hour (the contract checks it on a 429)."""
    mock.post(URL, status=420, json=SENDING_LIMIT, headers={"Retry-After": "120"})
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "rate_limited"
    assert caught.value.retry_after == 120


# -- failover ---------------------------------------------------------------------------------

RESET = connection_reset()

Arrange = Callable[[responses.RequestsMock], None]

#: Failures that fail over beyond the contract's 503, 429, read timeout and refused cases.
TRANSIENT: dict[str, Arrange] = {
    "420-sending-limit": lambda m: m.post(URL, status=420, json=SENDING_LIMIT),
    "auth": lambda m: m.post(URL, status=401, json={"errors": [{"message": "Unauthorized."}]}),
    "unverified-domain": lambda m: m.post(URL, status=400, json=INVALID_DOMAIN),
    "bad-response": lambda m: m.post(URL, status=200, body="not sparkpost"),
}


def mailer_with_backup(clock: FakeClock | None = None) -> tuple[FailoverMailer, MemoryDriver]:
    backup = MemoryDriver(name="backup")
    mailer = FailoverMailer(
        [make_driver(), backup], failure_threshold=2, cooldown=30.0, clock=clock or FakeClock()
    )
    return mailer, backup


def test_nothing_accepted_in_a_200_does_not_fail_over(mock: responses.RequestsMock) -> None:
    """A 200 whose recipients were all refused is a rejection (the contract checks a 422)."""
    answer = {"results": {
        "rcpt_to_errors": [{"message": "invalid data format/type", "code": "1300"}],
        "total_rejected_recipients": 1, "total_accepted_recipients": 0, "id": "1"}}  # fmt: skip
    mock.post(URL, status=200, json=answer)
    mailer, backup = mailer_with_backup()
    with mailer, pytest.raises(MessageRejected) as caught:
        mailer.send(simple_message())
    assert backup.outbox == []
    assert [(a.driver, a.outcome) for a in caught.value.attempts] == [("sparkpost-1", "rejected")]


def test_retry_after_keeps_the_driver_out_for_that_long(mock: responses.RequestsMock) -> None:
    """A 429 with Retry-After: 120 skips SparkPost for 120 s, then tries it again."""
    mock.post(URL, status=429, json={"errors": [{"message": "Too many requests"}]},
              headers={"Retry-After": "120"})  # fmt: skip
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
    assert third.driver == "sparkpost-1"
    assert third.message_id == "11668787484950529"
    assert len(backup.outbox) == 2


def test_huge_to_lists_are_refused_before_any_request(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 To addresses would repeat a 300 KB To line per recipient: refused up front."""
    monkeypatch.setattr(Message, "max_recipients", 10_000)  # past Message's own cap
    message = simple_message(to=[f"user{i}@example.com" for i in range(10_000)])
    with pytest.raises(UnsupportedFeature) as caught:
        make_driver().send(message)
    assert caught.value.field == "to"
    assert len(mock.calls) == 0
