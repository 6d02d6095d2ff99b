"""The ``postmark`` driver against Postmark's documented requests and answers (``responses``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import responses
from http_fakes import ResponsesHarness, b64, payload

from mailfailover import Attachment, MemoryDriver
from mailfailover.driver import Driver
from mailfailover.drivers.postmark import PostmarkDriver
from mailfailover.errors import MessageRejected, ProviderUnavailable, UnsupportedFeature
from mailfailover.mailer import FailoverMailer
from mailfailover.testing import (
    PDF_BYTES,
    PNG_BYTES,
    HttpDriverContractTests,
    full_message,
    simple_message,
)

TOKEN = "b1e2c3d4-aaaa-bbbb-cccc-0123456789ab"  # a made-up server token, checked never to leak
URL = "https://api.postmarkapp.com/email"
MESSAGE_ID = "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"
OK: dict[str, Any] = {
    "To": "rcpt@example.com",
    "SubmittedAt": "2026-03-01T12:00:00.0000000Z",
    "MessageID": MESSAGE_ID,
    "ErrorCode": 0,
    "Message": "OK",
}


def pm_error(code: int, message: str) -> dict[str, Any]:
    return {"ErrorCode": code, "Message": message}


def make(**settings: Any) -> PostmarkDriver:
    return PostmarkDriver(name="postmark", **{"server_token": TOKEN, **settings})


def one_tag_message(**overrides: Any) -> Any:
    """The full message trimmed to what Postmark can carry: one tag."""
    return full_message(**{"tags": ["receipts"], **overrides})


class PostmarkHarness(ResponsesHarness):
    make = staticmethod(make)


class TestContract(HttpDriverContractTests):
    def failover_cases(self) -> dict[str, Callable[[responses.RequestsMock], object]]:
        return {label: functools.partial(_post, answer) for label, answer in FAILURES.items()}

    secrets = (TOKEN,)
    endpoint = URL
    success_response: ClassVar[dict[str, Any]] = {"json": OK}
    rejection_response: ClassVar[dict[str, Any]] = {
        "status": 422,
        "json": pm_error(300, "Invalid 'To' address: 'nobody'."),
    }

    def make_driver(self) -> Driver:
        return make()


class TestPayload(PostmarkHarness):
    def test_full_message_with_two_tags_is_unsupported_before_any_request(
        self, driver: PostmarkDriver
    ) -> None:
        with pytest.raises(UnsupportedFeature) as caught:
            driver.send(full_message())
        assert caught.value.field == "tags"
        assert caught.value.driver == "postmark"
        assert len(self.mock.calls) == 0

    def test_full_message_with_one_tag_is_exactly_the_documented_request(
        self, driver: PostmarkDriver
    ) -> None:
        self.mock.post(URL, json=OK)
        driver.send(one_tag_message())

        assert len(self.mock.calls) == 1
        request = self.mock.calls[0].request
        assert request.method == "POST"
        assert request.url == URL
        assert request.headers["X-Postmark-Server-Token"] == TOKEN
        assert request.headers["Accept"] == "application/json"
        assert request.headers["Content-Type"] == "application/json"
        assert "Authorization" not in request.headers
        assert payload(self.mock.calls[0]) == {
            "From": "Zoë Sender <sender@example.com>",
            "To": "Ann Tö <ann@example.com>, bob@example.com",
            "Cc": "Cäcilie <cc1@example.com>, cc2@example.com",
            "Bcc": "bcc1@example.com, Björn <bcc2@example.com>",
            "ReplyTo": "Replies <reply@example.com>",
            "Subject": "Grüße — your receipt",
            "TextBody": "Hallo, grüße!\nSee the PDF.",
            "HtmlBody": '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">',
            "Headers": [
                {"Name": "X-Campaign", "Value": "spring-2026"},
                {"Name": "Message-ID", "Value": "<full-message-1@example.com>"},
            ],
            "Attachments": [
                {
                    "Name": "Rechnung-ä.pdf",
                    "Content": b64(PDF_BYTES),
                    "ContentType": "application/pdf",
                },
                {
                    "Name": "logo.png",
                    "Content": b64(PNG_BYTES),
                    "ContentType": "image/png",
                    "ContentID": "cid:logo.png",
                },
            ],
            "Tag": "receipts",
            "Metadata": {"user_id": "42", "order": "A-17"},
            "MessageStream": "outbound",
        }

    def test_names_that_need_quoting_are_quoted(self, driver: PostmarkDriver) -> None:
        self.mock.post(URL, json=OK)
        driver.send(simple_message(sender='"Shop, Inc." <shop@bücher.example>'))
        assert payload(self.mock.calls[0])["From"] == '"Shop, Inc." <shop@xn--bcher-kva.example>'

    def test_nameless_attachment_gets_a_name(self, driver: PostmarkDriver) -> None:
        self.mock.post(URL, json=OK)
        driver.send(simple_message(attachments=[Attachment(None, PDF_BYTES, "application/pdf")]))
        assert payload(self.mock.calls[0])["Attachments"] == [
            {"Name": "attachment.pdf", "Content": b64(PDF_BYTES), "ContentType": "application/pdf"}
        ]

    def test_message_stream_setting(self) -> None:
        self.mock.post(URL, json=OK)
        with make(message_stream="receipts") as driver:
            driver.send(simple_message())
        assert payload(self.mock.calls[0])["MessageStream"] == "receipts"

    def test_test_mode_sends_with_the_documented_test_token(self) -> None:
        self.mock.post(URL, json=OK)
        with make(test_mode=True) as driver:
            driver.send(simple_message())
        assert self.mock.calls[0].request.headers["X-Postmark-Server-Token"] == "POSTMARK_API_TEST"

    def test_base_url_replaces_scheme_and_host_only(self) -> None:
        self.mock.post("http://127.0.0.1:8025/email", json=OK)
        with make(base_url="http://127.0.0.1:8025") as driver:
            driver.send(simple_message())
        assert self.mock.calls[0].request.url == "http://127.0.0.1:8025/email"

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"tags": ["a", "b"]}, "tags"),
            ({"tags": ["x" * 1001]}, "tags"),
            ({"to": [f"r{i}@example.com" for i in range(51)]}, "to"),
            (
                {
                    "to": [f"t{i}@example.com" for i in range(20)],
                    "cc": [f"c{i}@example.com" for i in range(20)],
                    "bcc": [f"b{i}@example.com" for i in range(11)],
                },
                "to",
            ),
            ({"metadata": {f"k{i}": "v" for i in range(11)}}, "metadata"),
            ({"metadata": {"k" * 21: "v"}}, "metadata"),
            ({"metadata": {"k": "v" * 81}}, "metadata"),
            ({"metadata": {"Key": "1", "key": "2"}}, "metadata"),
            ({"to": ["jörg@example.com"]}, "to"),
            ({"sender": "zoë@example.com"}, "sender"),
            ({"attachments": [], "text": "x" * (11 * 1024 * 1024)}, "attachments"),
        ],
    )
    def test_what_postmark_cannot_carry_is_refused_before_any_request(
        self, driver: PostmarkDriver, overrides: dict[str, Any], field: str
    ) -> None:
        with pytest.raises(UnsupportedFeature) as caught:
            driver.send(simple_message(**overrides))
        assert caught.value.field == field
        assert len(self.mock.calls) == 0

    def test_fifty_recipients_are_fine(self, driver: PostmarkDriver) -> None:
        self.mock.post(URL, json=OK)
        driver.send(simple_message(to=[f"r{i}@example.com" for i in range(50)]))
        assert payload(self.mock.calls[0])["To"].count("@") == 50


class TestSuccess(PostmarkHarness):
    def test_message_id_from_the_body(self, driver: PostmarkDriver) -> None:
        self.mock.post(URL, json=OK)
        receipt = driver.send(simple_message())
        assert receipt.message_id == MESSAGE_ID
        assert receipt.response == OK
        assert receipt.refused_recipients == ()
        assert TOKEN not in repr(receipt)

    def test_inactive_recipients_in_an_accepted_send_are_reported(
        self, driver: PostmarkDriver
    ) -> None:
        body = {
            **OK,
            "Message": "Message OK, but will not deliver to these inactive addresses: "
            "bob@example.com, cc2@example.com. Inactive recipients are ones that have "
            "generated a hard bounce or a spam complaint.",
        }
        self.mock.post(URL, json=body)
        receipt = driver.send(simple_message(to=["ann@example.com", "bob@example.com"]))
        assert receipt.message_id == MESSAGE_ID
        assert receipt.refused_recipients == ("bob@example.com", "cc2@example.com")

    @pytest.mark.parametrize(
        "body",
        [
            "<html>Welcome to nginx</html>",
            '{"To": "rcpt@example.com", "ErrorCode": 0, "Message": "OK"}',
            '{"MessageID": "", "ErrorCode": 0}',
            '[{"MessageID": "x", "ErrorCode": 0}]',
            "",
        ],
    )
    def test_a_2xx_that_is_not_postmarks_answer_is_bad_response(
        self, driver: PostmarkDriver, body: str
    ) -> None:
        self.mock.post(URL, body=body, content_type="application/json")
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.reason == "bad_response"

    def test_a_200_with_a_non_zero_error_code_is_that_error(self, driver: PostmarkDriver) -> None:
        self.mock.post(URL, status=200, json=pm_error(406, "You tried to send to inactive."))
        with pytest.raises(MessageRejected) as caught:
            driver.send(simple_message())
        assert caught.value.provider_code == 406
        assert caught.value.status == 200

    def test_a_200_with_an_account_error_code_fails_over(self, driver: PostmarkDriver) -> None:
        self.mock.post(URL, status=200, json=pm_error(412, "Account is pending approval."))
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert (caught.value.reason, caught.value.provider_code) == ("account", 412)


INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
    "addresses: rcpt@example.com. Inactive recipients are ones that have generated a hard "
    "bounce, a spam complaint, or a manual suppression."
)


class TestErrors(PostmarkHarness):
    @pytest.mark.parametrize(
        ("status", "body", "kind", "reason", "code", "text"),
        [
            (401, pm_error(10, "The Server Token you provided in the X-Postmark-Server-Token "
                           "request header was invalid."),
             ProviderUnavailable, "auth", 10, "Server Token you provided"),
            (401, None, ProviderUnavailable, "auth", None, "Unauthorized"),
            (422, pm_error(300, "Invalid 'To' address: 'nobody'."),
             MessageRejected, None, 300, "Invalid 'To' address"),
            (422, pm_error(300, "Zero recipients specified"), MessageRejected, None, 300, "Zero"),
            (422, pm_error(400, "The 'From' address you supplied (sender@example.com) is not a "
                           "Sender Signature on your account."),
             ProviderUnavailable, "account", 400, "is not a Sender Signature"),
            (422, pm_error(401, "Sender signature not confirmed"),
             ProviderUnavailable, "account", 401, "not confirmed"),
            (422, pm_error(402, "Invalid JSON"), MessageRejected, None, 402, "Invalid JSON"),
            (422, pm_error(405, "Not allowed to send: you have run out of credits."),
             ProviderUnavailable, "account", 405, "run out of credits"),
            (422, pm_error(406, INACTIVE), MessageRejected, None, 406, "marked as inactive"),
            (422, pm_error(411, "Forbidden attachment type: 'virus.exe'"),
             MessageRejected, None, 411, "Forbidden attachment"),
            (422, pm_error(412, "Account is pending approval."),
             ProviderUnavailable, "account", 412, "pending"),
            (422, pm_error(413, "Account may not send."),
             ProviderUnavailable, "account", 413, "may not send"),
            (429, pm_error(429, "Rate limit exceeded."),
             ProviderUnavailable, "rate_limited", 429, "Rate limit"),
            (422, pm_error(429, "Rate limit exceeded."),
             ProviderUnavailable, "rate_limited", 429, "Rate limit"),
            (413, None, MessageRejected, None, None, "Too Large"),
            (500, pm_error(0, "Internal server error"),
             ProviderUnavailable, "server_error", 0, "Internal server error"),
            (503, pm_error(100, "Maintenance"), ProviderUnavailable, "server_error", 100,
             "Maintenance"),
            (503, "upstream connect error or disconnect/reset before headers",
             ProviderUnavailable, "server_error", None, "upstream connect error"),
            (422, pm_error(1235, "Message stream 'nope' not found."),
             ProviderUnavailable, "account", 1235, "Message stream 'nope'"),
            (422, pm_error(1235, "The 'MessageStream' provided does not exist on this server."),
             ProviderUnavailable, "account", 1235, "'MessageStream' provided does not exist"),
            (422, pm_error(701, "This message was not found."),
             MessageRejected, None, 701, "not found"),
        ],
    )  # fmt: skip
    def test_documented_error_answers(
        self,
        driver: PostmarkDriver,
        status: int,
        body: Any,
        kind: type[Exception],
        reason: str | None,
        code: int | None,
        text: str,
    ) -> None:
        if body is None:
            self.mock.post(URL, status=status, body="")
        elif isinstance(body, str):
            self.mock.post(URL, status=status, body=body, content_type="text/plain")
        else:
            self.mock.post(URL, status=status, json=body)
        with pytest.raises(kind) as caught:
            driver.send(simple_message())
        error = caught.value
        assert isinstance(error, (MessageRejected, ProviderUnavailable))
        assert error.status == status
        assert error.provider_code == code
        assert error.driver == "postmark"
        assert text in str(error)
        assert TOKEN not in str(error)
        if isinstance(error, ProviderUnavailable):
            assert error.reason == reason
            assert error.ambiguous is False
        else:
            assert error.code == 2

    def test_429_retry_after_header(self, driver: PostmarkDriver) -> None:
        self.mock.post(
            URL,
            status=429,
            json=pm_error(429, "Rate limit exceeded."),
            headers={"Retry-After": "120"},
        )
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.retry_after == 120


FAILURES: dict[str, dict[str, Any]] = {
    "500": {"status": 500, "json": pm_error(0, "Internal server error")},
    "429": {"status": 429, "json": pm_error(429, "Rate limit exceeded.")},
    "bad-token": {"status": 401, "json": pm_error(10, "Bad or missing server token.")},
    "no-signature": {"status": 422, "json": pm_error(400, "Sender signature not found")},
    "no-credits": {"status": 422, "json": pm_error(405, "Not allowed to send")},
    "bad-2xx": {"status": 200, "body": "<html>Welcome to nginx</html>"},
}


class TestFailover(PostmarkHarness):
    @pytest.mark.parametrize("error_code", [300, 406])
    def test_a_rejection_does_not_fail_over(self, error_code: int, clock: Any) -> None:
        self.mock.post(URL, status=422, json=pm_error(error_code, "refused"))
        backup = MemoryDriver(name="backup")
        mailer = FailoverMailer([make(), backup], failure_threshold=2, cooldown=30.0, clock=clock)
        with mailer, pytest.raises(MessageRejected) as caught:
            mailer.send(one_tag_message())
        assert backup.outbox == []
        assert [(a.driver, a.outcome) for a in caught.value.attempts] == [("postmark", "rejected")]

    def test_two_tags_skip_postmark_and_deliver_through_memory(self, clock: Any) -> None:
        backup = MemoryDriver(name="backup")
        with FailoverMailer([make(), backup], clock=clock) as mailer:
            result = mailer.send(full_message())
        assert result.driver == "backup"
        assert result.attempts[0].outcome == "skipped"
        assert len(self.mock.calls) == 0

    def test_retry_after_120_keeps_postmark_out_for_120_seconds(self, clock: Any) -> None:
        self.mock.post(URL, status=429, json=pm_error(429, "slow"), headers={"Retry-After": "120"})
        backup = MemoryDriver(name="backup")
        with FailoverMailer([make(), backup], failure_threshold=2, cooldown=30.0, clock=clock) as m:
            assert m.send(simple_message()).driver == "backup"
            clock.advance(119)
            assert m.send(simple_message()).attempts[0].outcome == "skipped"
            clock.advance(2)
            self.mock.replace(responses.POST, URL, json=OK)
            result = m.send(simple_message())
        assert (result.driver, result.message_id) == ("postmark", MESSAGE_ID)


def _post(answer: dict[str, Any], mock: responses.RequestsMock) -> None:
    mock.post(URL, **answer)
