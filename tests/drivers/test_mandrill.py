"""The ``mandrill`` driver against Mandrill's documented requests and answers (``responses``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import responses
from http_fakes import ResponsesHarness, b64, payload

from mailfailover import Attachment, MemoryDriver
from mailfailover.driver import Driver
from mailfailover.drivers.mandrill import MandrillDriver
from mailfailover.errors import MessageRejected, ProviderUnavailable, UnsupportedFeature
from mailfailover.mailer import FailoverMailer
from mailfailover.testing import (
    PDF_BYTES,
    PNG_BYTES,
    HttpDriverContractTests,
    full_message,
    simple_message,
)

API_KEY = "md-Xq7cL2mZ9vT4kP1sR8wY3n"  # a made-up key, checked never to leak
URL = "https://mandrillapp.com/api/1.0/messages/send"


def sent(email: str, _id: str, status: str = "sent") -> dict[str, Any]:
    return {"email": email, "status": status, "reject_reason": None, "_id": _id}


def refused_result(email: str, reason: str | None, status: str = "rejected") -> dict[str, Any]:
    return {"email": email, "status": status, "reject_reason": reason, "_id": "r" + email[:3]}


SENT = [sent("rcpt@example.com", "abc123abc123abc123abc123abc123ab")]


def md_error(name: str, message: str, code: int = -1) -> dict[str, Any]:
    return {"status": "error", "code": code, "name": name, "message": message}


def make(**settings: Any) -> MandrillDriver:
    return MandrillDriver(name="mandrill", **{"api_key": API_KEY, **settings})


class MandrillHarness(ResponsesHarness):
    make = staticmethod(make)


class TestContract(HttpDriverContractTests):
    def failover_cases(self) -> dict[str, Callable[[responses.RequestsMock], object]]:
        return {label: functools.partial(_post, answer) for label, answer in FAILURES.items()}

    secrets = (API_KEY,)
    endpoint = URL
    success_response: ClassVar[dict[str, Any]] = {"json": SENT}
    # Mandrill reports a validation error with HTTP 500: still a rejection.
    rejection_response: ClassVar[dict[str, Any]] = {
        "status": 500,
        "json": md_error("ValidationError", "You must specify a key value"),
    }
    unavailable_response: ClassVar[dict[str, Any]] = {
        "status": 500,
        "json": md_error("GeneralError", "An unexpected error"),
    }

    def make_driver(self) -> Driver:
        return make()


class TestPayload(MandrillHarness):
    def test_full_message_is_exactly_the_documented_request(self, driver: MandrillDriver) -> None:
        self.mock.post(URL, json=SENT)
        driver.send(full_message())

        assert len(self.mock.calls) == 1
        request = self.mock.calls[0].request
        assert request.method == "POST"
        assert request.url == URL
        assert request.headers["Content-Type"] == "application/json"
        assert "Authorization" not in request.headers  # Mandrill takes the key in the body
        assert payload(self.mock.calls[0]) == {
            "key": API_KEY,
            "message": {
                "from_email": "sender@example.com",
                "from_name": "Zoë Sender",
                "to": [
                    {"email": "ann@example.com", "name": "Ann Tö", "type": "to"},
                    {"email": "bob@example.com", "type": "to"},
                    {"email": "cc1@example.com", "name": "Cäcilie", "type": "cc"},
                    {"email": "cc2@example.com", "type": "cc"},
                    {"email": "bcc1@example.com", "type": "bcc"},
                    {"email": "bcc2@example.com", "name": "Björn", "type": "bcc"},
                ],
                "subject": "Grüße — your receipt",
                "text": "Hallo, grüße!\nSee the PDF.",
                "html": '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">',
                "headers": {
                    "Reply-To": "Replies <reply@example.com>",
                    "Message-Id": "<full-message-1@example.com>",
                    "X-Campaign": "spring-2026",
                },
                "attachments": [
                    {"type": "application/pdf", "name": "Rechnung-ä.pdf", "content": b64(PDF_BYTES)}
                ],
                "images": [{"type": "image/png", "name": "logo.png", "content": b64(PNG_BYTES)}],
                "tags": ["receipts", "billing"],
                "metadata": {"user_id": "42", "order": "A-17"},
                "preserve_recipients": True,
            },
        }

    def test_minimal_message(self, driver: MandrillDriver) -> None:
        self.mock.post(URL, json=SENT)
        driver.send(simple_message(sender="noreply@bücher.example", message_id="<m1@example.com>"))
        assert payload(self.mock.calls[0])["message"] == {
            "from_email": "noreply@xn--bcher-kva.example",
            "to": [{"email": "rcpt@example.com", "type": "to"}],
            "subject": "Hello",
            "text": "Hello there.",
            "headers": {"Message-Id": "<m1@example.com>"},
            "preserve_recipients": True,
        }

    def test_nameless_attachment_gets_a_name(self, driver: MandrillDriver) -> None:
        self.mock.post(URL, json=SENT)
        driver.send(simple_message(attachments=[Attachment(None, PDF_BYTES, "application/pdf")]))
        assert payload(self.mock.calls[0])["message"]["attachments"] == [
            {"type": "application/pdf", "name": "attachment.pdf", "content": b64(PDF_BYTES)}
        ]

    def test_base_url_replaces_scheme_and_host_only(self) -> None:
        self.mock.post("http://127.0.0.1:8025/api/1.0/messages/send", json=SENT)
        with make(base_url="http://127.0.0.1:8025") as driver:
            driver.send(simple_message())
        assert self.mock.calls[0].request.url == "http://127.0.0.1:8025/api/1.0/messages/send"

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"tags": ["_internal"]}, "tags"),
            ({"tags": ["x" * 51]}, "tags"),
            (
                {
                    "html": '<a href="cid:terms.pdf">',
                    "attachments": [Attachment("terms.pdf", PDF_BYTES, inline=True)],
                },
                "attachments",
            ),
        ],
    )
    def test_what_mandrill_cannot_carry_is_refused_before_any_request(
        self, driver: MandrillDriver, overrides: dict[str, Any], field: str
    ) -> None:
        with pytest.raises(UnsupportedFeature) as caught:
            driver.send(simple_message(**overrides))
        assert caught.value.field == field
        assert len(self.mock.calls) == 0

    def test_the_key_travels_only_in_the_body(self, driver: MandrillDriver) -> None:
        self.mock.post(URL, json=SENT)
        driver.send(simple_message())
        request = self.mock.calls[0].request
        assert API_KEY not in str(request.url)
        assert all(API_KEY not in str(value) for value in request.headers.values())
        assert API_KEY not in repr(driver)


class TestSuccess(MandrillHarness):
    def test_message_id_is_the_first_accepted_recipients_id(self, driver: MandrillDriver) -> None:
        results = [
            refused_result("ann@example.com", "hard-bounce"),
            sent("bob@example.com", "id-bob", status="queued"),
            sent("cc1@example.com", "id-cc1"),
        ]
        self.mock.post(URL, json=results)
        receipt = driver.send(simple_message(to=["ann@example.com", "bob@example.com"]))
        assert receipt.message_id == "id-bob"
        assert receipt.refused_recipients == ("ann@example.com",)
        assert receipt.response == {"recipients": results}
        assert API_KEY not in repr(receipt)

    def test_scheduled_counts_as_accepted(self, driver: MandrillDriver) -> None:
        self.mock.post(URL, json=[sent("rcpt@example.com", "id1", status="scheduled")])
        assert driver.send(simple_message()).message_id == "id1"

    @pytest.mark.parametrize(
        "body",
        [
            "<html>Mandrill is down for maintenance</html>",
            "[]",
            "{}",
            '{"email": "rcpt@example.com", "status": "sent"}',
            '[{"email": "rcpt@example.com"}]',
            '[{"email": "rcpt@example.com", "status": "teleported"}]',
            "",
        ],
    )
    def test_a_2xx_that_is_not_mandrills_answer_is_bad_response(
        self, driver: MandrillDriver, body: str
    ) -> None:
        self.mock.post(URL, body=body, content_type="application/json")
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.reason == "bad_response"
        assert caught.value.status == 200

    @pytest.mark.parametrize(
        ("results", "kind", "reason", "code"),
        [
            ([refused_result("a@example.com", None, "invalid")], MessageRejected, None, "invalid"),
            (
                [
                    refused_result("a@example.com", "hard-bounce"),
                    refused_result("b@example.com", "spam"),
                ],
                MessageRejected, None, "hard-bounce,spam",
            ),
            ([refused_result("a@example.com", "unsub")], MessageRejected, None, "unsub"),
            (
                [refused_result("a@example.com", "soft-bounce")],
                MessageRejected, None, "soft-bounce",
            ),
            ([refused_result("a@example.com", "custom")], MessageRejected, None, "custom"),
            ([refused_result("a@example.com", "rule")], MessageRejected, None, "rule"),
            (
                [refused_result("a@example.com", "invalid-sender")],
                MessageRejected, None, "invalid-sender",
            ),
            (
                [
                    refused_result("a@example.com", "unsigned"),
                    refused_result("b@example.com", "hard-bounce"),
                ],
                ProviderUnavailable, "account", "hard-bounce,unsigned",
            ),
            (
                [refused_result("a@example.com", "test-mode-limit")],
                ProviderUnavailable, "account", "test-mode-limit",
            ),
        ],
    )  # fmt: skip
    def test_every_recipient_refused_is_the_failure_it_is(
        self,
        driver: MandrillDriver,
        results: list[dict[str, Any]],
        kind: type[Exception],
        reason: str | None,
        code: str,
    ) -> None:
        self.mock.post(URL, json=results)
        with pytest.raises(kind) as caught:
            driver.send(simple_message())
        error = caught.value
        assert isinstance(error, (MessageRejected, ProviderUnavailable))
        assert error.status == 200
        assert error.provider_code == code
        assert "every recipient was refused: a@example.com" in str(error)
        if isinstance(error, ProviderUnavailable):
            assert error.reason == reason


class TestErrors(MandrillHarness):
    @pytest.mark.parametrize(
        ("status", "body", "kind", "reason", "text"),
        [
            (500, md_error("ValidationError", "Validation error: {\"message\":{\"to\":[{\"email\":"
                           "\"Please enter a valid email address\"}]}}", -2),
             MessageRejected, None, "Please enter a valid email address"),
            (400, md_error("ValidationError", "You must specify a key value", -2),
             MessageRejected, None, "You must specify a key value"),
            (500, md_error("Invalid_Key", "Invalid API key", -1),
             ProviderUnavailable, "auth", "Invalid API key"),
            (500, md_error("PaymentRequired", "This feature is only available for paid accounts",
                           -3),
             ProviderUnavailable, "account", "paid accounts"),
            (500, md_error("Unknown_Subaccount", "No subaccount exists with the id 'cust-1'", 12),
             ProviderUnavailable, "account", "No subaccount"),
            (500, md_error("GeneralError", "An unexpected error occurred processing the request.",
                           -1),
             ProviderUnavailable, "server_error", "unexpected error"),
            (500, md_error("ServiceUnavailable", "Service temporarily unavailable", -99),
             ProviderUnavailable, "server_error", "temporarily unavailable"),
            (429, md_error("Too_Many_Requests", "Too many requests", -50),
             ProviderUnavailable, "rate_limited", "Too many requests"),
            (500, md_error("Something_New", "A new kind of failure", -42),
             ProviderUnavailable, "server_error", "A new kind"),
            (400, md_error("Something_New", "A new kind of refusal", -42),
             MessageRejected, None, "A new kind"),
            (200, md_error("ValidationError", "Validation error at 200", -2),
             MessageRejected, None, "Validation error at 200"),
        ],
    )  # fmt: skip
    def test_errors_are_classified_by_name(
        self,
        driver: MandrillDriver,
        status: int,
        body: dict[str, Any],
        kind: type[Exception],
        reason: str | None,
        text: str,
    ) -> None:
        self.mock.post(URL, status=status, json=body)
        with pytest.raises(kind) as caught:
            driver.send(simple_message())
        error = caught.value
        assert isinstance(error, (MessageRejected, ProviderUnavailable))
        assert error.status == status
        assert error.provider_code == body["name"]
        assert error.driver == "mandrill"
        assert text in str(error)
        assert API_KEY not in str(error)
        if isinstance(error, ProviderUnavailable):
            assert error.reason == reason
            assert error.ambiguous is False
        else:
            assert error.code == 2

    def test_a_non_json_5xx_is_a_server_error(self, driver: MandrillDriver) -> None:
        self.mock.post(URL, status=502, body="<html>Bad Gateway</html>", content_type="text/html")
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert (caught.value.reason, caught.value.provider_code) == ("server_error", None)

    def test_429_retry_after_header(self, driver: MandrillDriver) -> None:
        self.mock.post(
            URL,
            status=429,
            json=md_error("Too_Many_Requests", "Too many requests"),
            headers={"Retry-After": "120"},
        )
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.retry_after == 120


FAILURES: dict[str, dict[str, Any]] = {
    "general-error": {"status": 500, "json": md_error("GeneralError", "unexpected")},
    "invalid-key": {"status": 500, "json": md_error("Invalid_Key", "Invalid API key")},
    "payment": {"status": 500, "json": md_error("PaymentRequired", "paid accounts only")},
    "429": {"status": 429, "json": md_error("Too_Many_Requests", "Too many requests")},
    "unsigned": {"status": 200, "json": [refused_result("ann@example.com", "unsigned")]},
    "bad-2xx": {"status": 200, "body": "<html>maintenance</html>"},
}


class TestFailover(MandrillHarness):
    @pytest.mark.parametrize(
        "answer",
        [
            {"status": 500, "json": md_error("ValidationError", "Please enter a valid email")},
            {"status": 200, "json": [refused_result("ann@example.com", None, "invalid")]},
            {"status": 200, "json": [refused_result("ann@example.com", "hard-bounce")]},
        ],
        ids=["validation-error-500", "all-invalid", "all-hard-bounce"],
    )
    def test_a_rejection_does_not_fail_over(self, answer: dict[str, Any], clock: Any) -> None:
        self.mock.post(URL, **answer)
        backup = MemoryDriver(name="backup")
        mailer = FailoverMailer([make(), backup], failure_threshold=2, cooldown=30.0, clock=clock)
        with mailer, pytest.raises(MessageRejected) as caught:
            mailer.send(full_message())
        assert backup.outbox == []
        assert [(a.driver, a.outcome) for a in caught.value.attempts] == [("mandrill", "rejected")]

    def test_retry_after_120_keeps_mandrill_out_for_120_seconds(self, clock: Any) -> None:
        self.mock.post(
            URL,
            status=429,
            json=md_error("Too_Many_Requests", "slow"),
            headers={"Retry-After": "120"},
        )
        backup = MemoryDriver(name="backup")
        with FailoverMailer([make(), backup], failure_threshold=2, cooldown=30.0, clock=clock) as m:
            assert m.send(simple_message()).driver == "backup"
            clock.advance(119)
            assert m.send(simple_message()).attempts[0].outcome == "skipped"
            clock.advance(2)
            self.mock.replace(responses.POST, URL, json=SENT)
            result = m.send(simple_message())
        assert (result.driver, result.message_id) == ("mandrill", SENT[0]["_id"])


def _post(answer: dict[str, Any], mock: responses.RequestsMock) -> None:
    mock.post(URL, **answer)
