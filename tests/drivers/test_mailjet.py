"""The ``mailjet`` driver against a fake Mailjet Send API v3.1 (``responses``).

Sections: contract (with transport failures, Retry-After and the generic failover cases from
:class:`HttpDriverContractTests`), payload mapping, success and message id, malformed success
answers, error classification, failover.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
import responses
from http_fakes import b64, sent_json

from mailfailover.drivers.mailjet import MailjetDriver
from mailfailover.errors import (
    AllProvidersFailed,
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

API_KEY = "mj-public-7a1c4e0f"
SECRET_KEY = "mj-secret-93b2d55e"
URL = "https://api.mailjet.com/v3.1/send"
BASIC = "Basic " + base64.b64encode(f"{API_KEY}:{SECRET_KEY}".encode()).decode()

SUCCESS: dict[str, Any] = {
    "Messages": [
        {
            "Status": "success",
            "CustomID": "",
            "To": [
                {
                    "Email": "rcpt@example.com",
                    "MessageUUID": "cb927469-36fd-4c02-bce4-0d199929a207",
                    "MessageID": 70650219165027410,
                    "MessageHref": "https://api.mailjet.com/v3/REST/message/70650219165027410",
                }
            ],
            "Cc": [],
            "Bcc": [],
        }
    ]
}


def message_error(code: str, status: int, text: str, related: list[str]) -> dict[str, Any]:
    """A per-message error, as the v3.1 guide's "Send API errors" shows it."""
    return {
        "Messages": [
            {
                "Status": "error",
                "Errors": [
                    {
                        "ErrorIdentifier": "f987008f-251a-4dff-8ffc-40f1583ad7bc",
                        "ErrorCode": code,
                        "StatusCode": status,
                        "ErrorMessage": text,
                        "ErrorRelatedTo": related,
                    }
                ],
            }
        ]
    }


INVALID_EMAIL = message_error(
    "mj-0013", 400, '"bob@" is an invalid email address.', ["To[1].Email"]
)
SENDER_NOT_AUTHORIZED = message_error(
    "send-0008", 403, '"sender@example.com" is not an authorized sender email address for your '
    "account.", ["From"],
)  # fmt: skip


def make_driver(**settings: Any) -> MailjetDriver:
    settings.setdefault("api_key", API_KEY)
    settings.setdefault("secret_key", SECRET_KEY)
    return MailjetDriver(name="mailjet-1", **settings)


@pytest.fixture
def driver() -> Iterator[MailjetDriver]:
    instance = make_driver()
    yield instance
    instance.close()


# -- contract -------------------------------------------------------------------------------


class TestMailjetContract(HttpDriverContractTests):
    def failover_cases(self) -> dict[str, Arrange]:
        return TRANSIENT

    secrets = (API_KEY, SECRET_KEY, BASIC.split()[1])
    endpoint = URL
    success_response: ClassVar[dict[str, Any]] = {"json": SUCCESS}
    rejection_response: ClassVar[dict[str, Any]] = {"status": 400, "json": INVALID_EMAIL}
    unavailable_response: ClassVar[dict[str, Any]] = {
        "status": 503,
        "body": "<html>503 Service Unavailable</html>",
    }

    def make_driver(self) -> MailjetDriver:
        return make_driver()


# -- payload mapping --------------------------------------------------------------------------


def test_full_message_with_two_tags_is_unsupported_before_any_request(
    mock: responses.RequestsMock, driver: MailjetDriver
) -> None:
    """CustomCampaign holds one tag: two tags are refused, naming the field, nothing sent."""
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(full_message())
    assert caught.value.field == "tags"
    assert caught.value.driver == "mailjet-1"
    assert len(mock.calls) == 0


def test_full_message_with_one_tag_maps_every_field(
    mock: responses.RequestsMock, driver: MailjetDriver
) -> None:
    """Every field of the full message lands in its documented v3.1 property."""
    mock.post(URL, json=SUCCESS)
    driver.send(full_message(tags=["receipts"]))
    request = mock.calls[0].request
    assert request.method == "POST"
    assert request.url == URL
    assert request.headers["Authorization"] == BASIC
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("mailfailover/")
    assert isinstance(request.body, bytes)
    assert "Grüße".encode() in request.body  # UTF-8 JSON, not \\u escapes
    assert sent_json(mock) == {
        "Messages": [
            {
                "From": {"Email": "sender@example.com", "Name": "Zoë Sender"},
                "To": [
                    {"Email": "ann@example.com", "Name": "Ann Tö"},
                    {"Email": "bob@example.com"},
                ],
                "Cc": [
                    {"Email": "cc1@example.com", "Name": "Cäcilie"},
                    {"Email": "cc2@example.com"},
                ],
                "Bcc": [
                    {"Email": "bcc1@example.com"},
                    {"Email": "bcc2@example.com", "Name": "Björn"},
                ],
                "ReplyTo": {"Email": "reply@example.com", "Name": "Replies"},
                "Subject": "Grüße — your receipt",
                "TextPart": "Hallo, grüße!\nSee the PDF.",
                "HTMLPart": '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">',
                "Headers": {"X-Campaign": "spring-2026"},
                "Attachments": [
                    {
                        "ContentType": "application/pdf",
                        "Filename": "Rechnung-ä.pdf",
                        "Base64Content": b64(PDF_BYTES),
                    }
                ],
                "InlinedAttachments": [
                    {
                        "ContentType": "image/png",
                        "Filename": "logo.png",
                        "ContentID": "logo.png",
                        "Base64Content": b64(PNG_BYTES),
                    }
                ],
                "CustomCampaign": "receipts",
                "EventPayload": '{"user_id": "42", "order": "A-17"}',
                "CustomID": "<full-message-1@example.com>",
            }
        ]
    }


def test_simple_message_sends_only_what_it_has(
    mock: responses.RequestsMock, driver: MailjetDriver
) -> None:
    """No empty properties: a plain message has From, To, Subject, TextPart and CustomID."""
    mock.post(URL, json=SUCCESS)
    message = simple_message()
    driver.send(message)
    assert sent_json(mock) == {
        "Messages": [
            {
                "From": {"Email": "sender@example.com", "Name": "Sender"},
                "To": [{"Email": "rcpt@example.com"}],
                "Subject": "Hello",
                "TextPart": "Hello there.",
                "CustomID": message.message_id,
            }
        ]
    }


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        ({}, "https://api.mailjet.com/v3.1/send"),
        ({"region": "global"}, "https://api.mailjet.com/v3.1/send"),
        ({"region": "us"}, "https://api.us.mailjet.com/v3.1/send"),
        ({"base_url": "http://127.0.0.1:8025/"}, "http://127.0.0.1:8025/v3.1/send"),
        ({"base_url": "http://127.0.0.1:8025", "region": "us"}, "http://127.0.0.1:8025/v3.1/send"),
    ],
)
def test_url_default_regional_and_base_url(
    mock: responses.RequestsMock, settings: dict[str, Any], url: str
) -> None:
    """The region picks the host; base_url replaces scheme and host, keeping the path."""
    mock.post(url, json=SUCCESS)
    with make_driver(**settings) as driver:
        driver.send(simple_message())
    assert mock.calls[0].request.url == url
    assert mock.calls[0].request.headers["Authorization"] == BASIC


def test_test_mode_sets_sandbox_mode_and_accepts_empty_ids(mock: responses.RequestsMock) -> None:
    """test_mode: true adds SandboxMode at the payload root; its zero ids give no message id."""
    answer = {
        "Messages": [{
            "Status": "success", "CustomID": "",
            "To": [{"Email": "rcpt@example.com", "MessageUUID": "", "MessageID": 0,
                    "MessageHref": "https://api.mailjet.com/v3/message/0"}],
            "Cc": [], "Bcc": [],
        }]
    }  # fmt: skip
    mock.post(URL, json=answer)
    with make_driver(test_mode="true") as driver:
        receipt = driver.send(simple_message())
    assert sent_json(mock)["SandboxMode"] is True
    assert receipt.message_id is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reply_to": ["a@example.com", "b@example.com"]}, "reply_to"),
        ({"headers": {"List-Id": "<list.example.com>"}}, "headers"),
        ({"headers": {"X-Mailer": "mine"}}, "headers"),
        ({"headers": {"X-MJ-Vars": "{}"}}, "headers"),
        ({"to": [f"r{i}@example.com" for i in range(51)]}, "to"),
    ],
)
def test_what_mailjet_cannot_carry_is_unsupported_before_any_request(
    mock: responses.RequestsMock, driver: MailjetDriver, changes: dict[str, Any], field: str
) -> None:
    """One ReplyTo, no forbidden headers, at most 50 recipients: else skipped, not sent."""
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(simple_message(**changes))
    assert caught.value.field == field
    assert len(mock.calls) == 0


# -- success and message id -------------------------------------------------------------------


def test_success_returns_first_recipient_uuid_and_the_answer(
    mock: responses.RequestsMock, driver: MailjetDriver
) -> None:
    mock.post(URL, json=SUCCESS)
    receipt = driver.send(simple_message())
    assert receipt.driver == "mailjet-1"
    assert receipt.message_id == "cb927469-36fd-4c02-bce4-0d199929a207"
    assert receipt.response == SUCCESS


def test_legacy_message_id_is_used_without_uuid(
    mock: responses.RequestsMock, driver: MailjetDriver
) -> None:
    mock.post(URL, json={"Messages": [{"Status": "success", "To": [{"MessageID": 456}]}]})
    assert driver.send(simple_message()).message_id == "456"


# -- malformed success answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "<html>Welcome to nginx!</html>", "content_type": "text/html"},
        {"json": {}},
        {"json": []},
        {"json": {"Messages": []}},
        {"json": {"Messages": [{"Status": "success", "To": []}]}},
        {
            "json": {
                "Messages": [{"Status": "success", "To": [{"MessageUUID": "", "MessageID": 0}]}]
            }
        },
        {"json": {"Messages": [{"Status": "queued"}]}},
    ],
)
def test_a_2xx_that_is_not_a_success_is_bad_response(
    mock: responses.RequestsMock, driver: MailjetDriver, answer: dict[str, Any]
) -> None:
    """A 200 without Mailjet's per-recipient ids did not send anything we can vouch for."""
    mock.post(URL, status=200, **answer)
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "bad_response"
    assert caught.value.status == 200
    assert caught.value.ambiguous is False


def test_per_message_error_inside_a_200_is_a_rejection(
    mock: responses.RequestsMock, driver: MailjetDriver
) -> None:
    """A 200 whose Messages[0] says Status: error is that error, not a success."""
    mock.post(URL, status=200, json=INVALID_EMAIL)
    with pytest.raises(MessageRejected) as caught:
        driver.send(simple_message())
    assert caught.value.provider_code == "mj-0013"
    assert "is an invalid email address" in str(caught.value)
    assert "To[1].Email" in str(caught.value)


def test_per_message_sender_error_inside_a_200_fails_over(
    mock: responses.RequestsMock, driver: MailjetDriver
) -> None:
    mock.post(URL, status=200, json=SENDER_NOT_AUTHORIZED)
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message())
    assert caught.value.reason == "account"
    assert caught.value.provider_code == "send-0008"


# -- error classification ---------------------------------------------------------------------

ERRORS = [
    # (status, body, class, reason, provider_code, text)
    (401, {"ErrorIdentifier": "06df1144-c6f3-4ca7-8885-7ec5d4344113", "ErrorCode": "mj-0015",
           "StatusCode": 401, "ErrorMessage": "API key authentication/authorization failure. You "
           "may be unauthorized to access the API or your API key may be expired."},
     ProviderUnavailable, "auth", "mj-0015", "API key authentication/authorization failure"),
    (401, {"ErrorIdentifier": "a1b2c3d4-0000-4000-8000-000000000001", "ErrorCode": "mj-0001",
           "StatusCode": 401, "ErrorMessage": "Your API key is suspended."},
     ProviderUnavailable, "account", "mj-0001", "Your API key is suspended."),
    (400, {"ErrorIdentifier": "06df1144-c6f3-4ca7-8885-7ec5d4344113", "ErrorCode": "mj-0002",
           "ErrorMessage": "Malformed JSON, please review the syntax and properties types.",
           "StatusCode": 400},
     MessageRejected, None, "mj-0002", "Malformed JSON"),
    (400, INVALID_EMAIL, MessageRejected, None, "mj-0013", "is an invalid email address"),
    (400, message_error("mj-0003", 400, "The To is mandatory but missing from the input",
                        ["To"]),
     MessageRejected, None, "mj-0003", "The To is mandatory"),
    (403, SENDER_NOT_AUTHORIZED, ProviderUnavailable, "account", "send-0008",
     "is not an authorized sender"),
    (403, {"ErrorMessage": "You are not authorized to access this resource."},
     ProviderUnavailable, "auth", None, "not authorized to access this resource"),
    (429, {"ErrorMessage": "Too many requests"}, ProviderUnavailable, "rate_limited", None,
     "Too many requests"),
    (500, {"ErrorIdentifier": "D4DF574C-0C5F-45C7-BA52-7AA8E533C3DE", "ErrorMessage":
           "Internal Server Error", "StatusCode": 500},
     ProviderUnavailable, "server_error", None, "Internal Server Error"),
    (502, "<html><h1>502 Bad Gateway</h1></html>", ProviderUnavailable, "server_error", None,
     "502 Bad Gateway"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "cls", "reason", "code", "text"), ERRORS)
def test_documented_errors_are_classified(
    mock: responses.RequestsMock,
    driver: MailjetDriver,
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
    assert error.driver == "mailjet-1"
    assert error.status == status
    assert error.provider_code == code
    assert text in str(error)
    if reason is not None:
        assert isinstance(error, ProviderUnavailable)
        assert error.reason == reason
        assert error.ambiguous is False
    for secret in (API_KEY, SECRET_KEY):
        assert secret not in str(error)


# -- failover ---------------------------------------------------------------------------------

RESET = connection_reset()

Arrange = Callable[[responses.RequestsMock], None]

#: Failures that fail over beyond the contract's 503, 429, read timeout and refused cases.
TRANSIENT: dict[str, Arrange] = {
    "auth": lambda m: m.post(URL, status=401, json=ERRORS[0][1]),
    "sender-not-authorized": lambda m: m.post(URL, status=403, json=SENDER_NOT_AUTHORIZED),
    "bad-response": lambda m: m.post(URL, status=200, body="Mailjet says hi"),
}


def mailer_with_backup(clock: FakeClock | None = None) -> tuple[FailoverMailer, MemoryDriver]:
    backup = MemoryDriver(name="backup")
    mailer = FailoverMailer(
        [make_driver(), backup], failure_threshold=2, cooldown=30.0, clock=clock or FakeClock()
    )
    return mailer, backup


def test_unsupported_message_is_skipped_and_delivered_by_memory(
    mock: responses.RequestsMock,
) -> None:
    mailer, backup = mailer_with_backup()
    with mailer:
        result = mailer.send(full_message())
    assert [(a.driver, a.outcome) for a in result.attempts] == [
        ("mailjet-1", "skipped"),
        ("backup", "sent"),
    ]
    assert len(backup.outbox) == 1
    assert len(mock.calls) == 0


def test_retry_after_keeps_the_driver_out_for_that_long(mock: responses.RequestsMock) -> None:
    """A 429 with Retry-After: 120 skips Mailjet for 120 s, then tries it again."""
    mock.post(URL, status=429, json={"ErrorMessage": "Too many requests"},
              headers={"Retry-After": "120"})  # fmt: skip
    clock = FakeClock()
    mailer, backup = mailer_with_backup(clock)
    with mailer:
        mailer.send(simple_message())
        clock.now += 119
        second = mailer.send(simple_message())
        assert [a.outcome for a in second.attempts] == ["skipped", "sent"]
        assert len(mock.calls) == 1
        mock.replace(responses.POST, URL, json=SUCCESS)
        clock.now += 2
        third = mailer.send(simple_message())
    assert third.driver == "mailjet-1"
    assert third.message_id == "cb927469-36fd-4c02-bce4-0d199929a207"
    assert len(backup.outbox) == 2


def test_all_down_raises_all_providers_failed(mock: responses.RequestsMock) -> None:
    mock.post(URL, status=503, body="unavailable")
    mailer = FailoverMailer([make_driver()], clock=FakeClock())
    with mailer, pytest.raises(AllProvidersFailed) as caught:
        mailer.send(simple_message())
    assert [a.outcome for a in caught.value.attempts] == ["unavailable"]
