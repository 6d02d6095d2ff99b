"""The ``sendgrid`` driver against SendGrid's documented requests and answers (``responses``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import responses
from http_fakes import ResponsesHarness, b64, payload

from mailfailover import Attachment, MemoryDriver, Message
from mailfailover.driver import Driver
from mailfailover.drivers.sendgrid import SendGridDriver
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
    HttpDriverContractTests,
    full_message,
    simple_message,
)

API_KEY = "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"  # made up
URL = "https://api.sendgrid.com/v3/mail/send"
EU_URL = "https://api.eu.sendgrid.com/v3/mail/send"
MESSAGE_ID = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"
ACCEPTED: dict[str, Any] = {"status": 202, "body": "", "headers": {"X-Message-Id": MESSAGE_ID}}


def sg_error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": field, "help": None}]}


def make(**settings: Any) -> SendGridDriver:
    return SendGridDriver(name="sendgrid", **{"api_key": API_KEY, **settings})


class SendGridHarness(ResponsesHarness):
    make = staticmethod(make)


class TestContract(HttpDriverContractTests):
    def failover_cases(self) -> dict[str, Callable[[responses.RequestsMock], object]]:
        return {label: functools.partial(_post, answer) for label, answer in FAILURES.items()}

    secrets = (API_KEY,)
    endpoint = URL
    success_response: ClassVar[dict[str, Any]] = ACCEPTED
    rejection_response: ClassVar[dict[str, Any]] = {
        "status": 400,
        "json": sg_error("The from email does not contain a valid address.", "from.email"),
    }

    def make_driver(self) -> Driver:
        return make()


class TestPayload(SendGridHarness):
    def test_full_message_is_exactly_the_documented_request(self, driver: SendGridDriver) -> None:
        self.mock.post(URL, **ACCEPTED)
        driver.send(full_message())

        assert len(self.mock.calls) == 1
        request = self.mock.calls[0].request
        assert request.method == "POST"
        assert request.url == URL
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("mailfailover/")
        assert payload(self.mock.calls[0]) == {
            "personalizations": [
                {
                    "to": [
                        {"email": "ann@example.com", "name": "Ann Tö"},
                        {"email": "bob@example.com"},
                    ],
                    "cc": [
                        {"email": "cc1@example.com", "name": "Cäcilie"},
                        {"email": "cc2@example.com"},
                    ],
                    "bcc": [
                        {"email": "bcc1@example.com"},
                        {"email": "bcc2@example.com", "name": "Björn"},
                    ],
                    "custom_args": {"user_id": "42", "order": "A-17"},
                }
            ],
            "from": {"email": "sender@example.com", "name": "Zoë Sender"},
            "reply_to_list": [{"email": "reply@example.com", "name": "Replies"}],
            "subject": "Grüße — your receipt",
            "content": [
                {"type": "text/plain", "value": "Hallo, grüße!\nSee the PDF."},
                {
                    "type": "text/html",
                    "value": '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">',
                },
            ],
            "headers": {"X-Campaign": "spring-2026", "Message-ID": "<full-message-1@example.com>"},
            "attachments": [
                {
                    "content": b64(PDF_BYTES),
                    "type": "application/pdf",
                    "filename": "Rechnung-ä.pdf",
                    "disposition": "attachment",
                },
                {
                    "content": b64(PNG_BYTES),
                    "type": "image/png",
                    "filename": "logo.png",
                    "disposition": "inline",
                    "content_id": "logo.png",
                },
            ],
            "categories": ["receipts", "billing"],
        }
        # Non-ASCII is sent as UTF-8, not \u escapes.
        assert isinstance(request.body, bytes)
        assert "Grüße".encode() in request.body

    def test_eu_region_uses_the_eu_endpoint(self) -> None:
        self.mock.post(EU_URL, **ACCEPTED)
        with make(region="eu") as driver:
            driver.send(simple_message())
        assert self.mock.calls[0].request.url == EU_URL

    def test_base_url_replaces_scheme_and_host_only(self) -> None:
        self.mock.post("http://127.0.0.1:8025/v3/mail/send", **ACCEPTED)
        with make(base_url="http://127.0.0.1:8025", region="eu") as driver:
            driver.send(simple_message())
        assert self.mock.calls[0].request.url == "http://127.0.0.1:8025/v3/mail/send"

    def test_test_mode_turns_on_sandbox_mode(self) -> None:
        self.mock.post(URL, status=200, body="")
        with make(test_mode=True) as driver:
            receipt = driver.send(simple_message())
        assert payload(self.mock.calls[0])["mail_settings"] == {"sandbox_mode": {"enable": True}}
        assert receipt.message_id is None

    def test_minimal_message(self, driver: SendGridDriver) -> None:
        self.mock.post(URL, **ACCEPTED)
        driver.send(simple_message(message_id="<m1@example.com>", html="<p>hi</p>", text=None))
        assert payload(self.mock.calls[0]) == {
            "personalizations": [{"to": [{"email": "rcpt@example.com"}]}],
            "from": {"email": "sender@example.com", "name": "Sender"},
            "subject": "Hello",
            "content": [{"type": "text/html", "value": "<p>hi</p>"}],
            "headers": {"Message-ID": "<m1@example.com>"},
        }

    def test_names_with_commas_are_quoted_in_personalizations(self, driver: SendGridDriver) -> None:
        self.mock.post(URL, **ACCEPTED)
        driver.send(
            simple_message(
                sender='"Shop, Inc." <shop@example.com>',
                to=['"Doe, Jane" <jane@bücher.example>'],
                reply_to=['"Help; Desk" <help@example.com>'],
            )
        )
        sent = payload(self.mock.calls[0])
        assert sent["personalizations"][0]["to"] == [
            {"email": "jane@xn--bcher-kva.example", "name": '"Doe, Jane"'}
        ]
        assert sent["from"] == {"email": "shop@example.com", "name": "Shop, Inc."}
        assert sent["reply_to_list"] == [{"email": "help@example.com", "name": "Help; Desk"}]

    def test_duplicate_tags_are_sent_once(self, driver: SendGridDriver) -> None:
        self.mock.post(URL, **ACCEPTED)
        driver.send(simple_message(tags=["a", "b", "a"]))
        assert payload(self.mock.calls[0])["categories"] == ["a", "b"]

    def test_attachment_without_filename(self, driver: SendGridDriver) -> None:
        self.mock.post(URL, **ACCEPTED)
        driver.send(simple_message(attachments=[Attachment(None, b"data")]))
        assert payload(self.mock.calls[0])["attachments"] == [
            {
                "content": b64(b"data"),
                "type": "application/octet-stream",
                "filename": "attachment.bin",
                "disposition": "attachment",
            }
        ]

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"tags": [f"t{i}" for i in range(11)]}, "tags"),
            ({"tags": ["x" * 256]}, "tags"),
            ({"subject": ""}, "subject"),
            ({"text": "", "html": None}, "text"),
            ({"to": ["a@example.com"], "cc": ["A@example.com"]}, "cc"),
            ({"to": ["a@example.com"], "bcc": ["Ann <a@example.com>"]}, "bcc"),
            ({"headers": {"X-SG-ID": "x"}}, "headers"),
            ({"to": [f"r{i}@example.com" for i in range(1001)]}, "to"),
        ],
    )
    def test_what_sendgrid_refuses_is_refused_before_any_request(
        self,
        driver: SendGridDriver,
        overrides: dict[str, Any],
        field: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(Message, "max_recipients", 10_000)  # reach SendGrid's own limit
        with pytest.raises(UnsupportedFeature) as caught:
            driver.send(simple_message(**overrides))
        assert caught.value.field == field
        assert len(self.mock.calls) == 0

    def test_region_must_be_known(self) -> None:
        with pytest.raises(ConfigError, match="region"):
            make(region="us")


class TestSuccess(SendGridHarness):
    def test_202_with_x_message_id(self, driver: SendGridDriver) -> None:
        self.mock.post(URL, **ACCEPTED)
        receipt = driver.send(simple_message())
        assert receipt.message_id == MESSAGE_ID
        assert receipt.driver == "sendgrid"
        assert API_KEY not in repr(receipt)

    def test_202_without_x_message_id_is_accepted_without_an_id(
        self, driver: SendGridDriver
    ) -> None:
        self.mock.post(URL, status=202, body="")
        assert driver.send(simple_message()).message_id is None

    @pytest.mark.parametrize(
        ("status", "body"),
        [
            (200, ""),  # 200 is sandbox-only; outside sandbox mode it is not SendGrid
            (200, "<html>captive portal</html>"),
            (202, "<html>accepted by a proxy</html>"),
            (201, '{"id": "x"}'),
        ],
    )
    def test_a_2xx_that_is_not_sendgrids_acceptance_is_bad_response(
        self, driver: SendGridDriver, status: int, body: str
    ) -> None:
        self.mock.post(URL, status=status, body=body, headers={"X-Message-Id": "x"})
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.reason == "bad_response"
        assert caught.value.status == status


class TestErrors(SendGridHarness):
    @pytest.mark.parametrize(
        ("status", "body", "kind", "reason", "text"),
        [
            (
                400, sg_error("The from email does not contain a valid address.", "from.email"),
                MessageRejected, None,
                "The from email does not contain a valid address. (field from.email)",
            ),
            (
                400,
                {"errors": [
                    {"message": "Invalid type. Expected: string", "field": "subject"},
                    {"message": "Does not contain a valid address.",
                     "field": "personalizations.0.to.0.email"},
                ]},
                MessageRejected, None,
                "Invalid type. Expected: string (field subject); Does not contain a valid "
                "address. (field personalizations.0.to.0.email)",
            ),
            (400, sg_error("invalid request", "null"), MessageRejected, None, "invalid request"),
            (
                401, sg_error("The provided authorization grant is invalid, expired, or revoked"),
                ProviderUnavailable, "auth", "authorization grant is invalid",
            ),
            (401, sg_error("authorization required"), ProviderUnavailable, "auth", "authorization"),
            (
                401, sg_error("Maximum credits exceeded"),
                ProviderUnavailable, "account", "Maximum credits exceeded",
            ),
            (403, sg_error("access forbidden"), ProviderUnavailable, "auth", "access forbidden"),
            (
                403,
                sg_error("The from address does not match a verified Sender Identity. Mail "
                         "cannot be sent until this error is resolved."),
                ProviderUnavailable, "account", "verified Sender Identity",
            ),
            (404, sg_error("not found"), ProviderUnavailable, "server_error", "not found"),
            (413, sg_error("content too large"), MessageRejected, None, "content too large"),
            (429, sg_error("too many requests"), ProviderUnavailable, "rate_limited", "too many"),
            (500, sg_error("internal server error"), ProviderUnavailable, "server_error",
             "internal server error"),
            (503, "<html>Service Unavailable</html>", ProviderUnavailable, "server_error",
             "Service Unavailable"),
        ],
    )  # fmt: skip
    def test_documented_error_answers(
        self,
        driver: SendGridDriver,
        status: int,
        body: Any,
        kind: type[Exception],
        reason: str | None,
        text: str,
    ) -> None:
        if isinstance(body, dict):
            self.mock.post(URL, status=status, json=body)
        else:
            self.mock.post(URL, status=status, body=body, content_type="text/html")
        with pytest.raises(kind) as caught:
            driver.send(simple_message())
        error = caught.value
        assert isinstance(error, (MessageRejected, ProviderUnavailable))
        assert error.status == status
        assert error.driver == "sendgrid"
        assert text in str(error)
        assert API_KEY not in str(error)
        if isinstance(error, ProviderUnavailable):
            assert error.reason == reason
            assert error.ambiguous is False
        else:
            assert error.code == 2

    def test_429_retry_after_header(self, driver: SendGridDriver) -> None:
        self.mock.post(URL, status=429, json=sg_error("too many"), headers={"Retry-After": "120"})
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.retry_after == 120

    def test_429_x_ratelimit_reset_epoch(self, driver: SendGridDriver) -> None:
        reset_at = str(int(time.time()) + 60)
        self.mock.post(
            URL, status=429, json=sg_error("too many"), headers={"X-RateLimit-Reset": reset_at}
        )
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.reason == "rate_limited"
        assert caught.value.retry_after == pytest.approx(60, abs=2)

    def test_429_without_a_hint_has_no_retry_after(self, driver: SendGridDriver) -> None:
        self.mock.post(URL, status=429, json=sg_error("too many"))
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.retry_after is None


FAILURES: dict[str, dict[str, Any]] = {
    "500": {"status": 500, "json": sg_error("internal server error")},
    "429": {"status": 429, "json": sg_error("too many requests")},
    "401": {"status": 401, "json": sg_error("authorization required")},
    "unverified-sender": {"status": 403, "json": sg_error("does not match a verified Sender")},
    "bad-2xx": {"status": 200, "body": "<html>captive portal</html>"},
}


class TestFailover(SendGridHarness):
    def test_a_rejection_does_not_fail_over(self, clock: Any) -> None:
        self.mock.post(URL, status=400, json=sg_error("Does not contain a valid address.", "to"))
        backup = MemoryDriver(name="backup")
        mailer = FailoverMailer([make(), backup], failure_threshold=2, cooldown=30.0, clock=clock)
        with mailer, pytest.raises(MessageRejected) as caught:
            mailer.send(full_message())
        assert backup.outbox == []
        assert [(a.driver, a.outcome) for a in caught.value.attempts] == [("sendgrid", "rejected")]

    def test_retry_after_120_keeps_sendgrid_out_for_120_seconds(self, clock: Any) -> None:
        self.mock.post(URL, status=429, json=sg_error("slow down"), headers={"Retry-After": "120"})
        backup = MemoryDriver(name="backup")
        with FailoverMailer([make(), backup], failure_threshold=2, cooldown=30.0, clock=clock) as m:
            assert m.send(simple_message()).driver == "backup"
            clock.advance(119)
            assert m.send(simple_message()).attempts[0].outcome == "skipped"
            clock.advance(2)
            self.mock.replace(responses.POST, URL, **ACCEPTED)
            result = m.send(simple_message())
        assert (result.driver, result.message_id) == ("sendgrid", MESSAGE_ID)
        assert len(self.mock.calls) == 2


def _post(answer: dict[str, Any], mock: responses.RequestsMock) -> None:
    mock.post(URL, **answer)
