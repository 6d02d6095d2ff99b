"""The ``mailgun`` driver against Mailgun's documented requests and answers (with ``responses``)."""

from __future__ import annotations

import base64
import functools
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, ClassVar

import pytest
import requests
import responses
from http_fakes import ResponsesHarness

from mailfailover import Attachment, MemoryDriver
from mailfailover.driver import Driver
from mailfailover.drivers.mailgun import MailgunDriver, wait_from_text
from mailfailover.errors import (
    AllProvidersFailed,
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

API_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"  # a made-up key, checked never to leak
DOMAIN = "mg.example.com"
URL = f"https://api.mailgun.net/v3/{DOMAIN}/messages"
EU_URL = f"https://api.eu.mailgun.net/v3/{DOMAIN}/messages"
QUEUED = {"id": "<20260301120000.1.ABCDEF@mg.example.com>", "message": "Queued. Thank you."}
INVALID_TO = {"message": "'to' parameter is not a valid address. please check documentation"}


def make(**settings: Any) -> MailgunDriver:
    settings = {"api_key": API_KEY, "domain": DOMAIN, **settings}
    return MailgunDriver(name="mailgun", **settings)


def form_parts(
    request: requests.PreparedRequest,
) -> list[tuple[str, str | None, str | None, bytes]]:
    """The multipart body as (field name, filename, content type, raw content), in order."""
    content_type = request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    body = request.body
    assert isinstance(body, bytes)
    chunks = body.split(b"--" + boundary)
    assert chunks[0] == b""
    assert chunks[-1] == b"--\r\n"
    parts = []
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"\r\n")
        assert chunk.endswith(b"\r\n")
        head, _, content = chunk[2:-2].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode("utf-8").split("\r\n"))
        disposition = headers.pop("Content-Disposition")
        name = re.search(r'; name="([^"]*)"', disposition)
        filename = re.search(r'; filename="([^"]*)"', disposition)
        assert name is not None
        parts.append(
            (
                name.group(1),
                filename.group(1) if filename else None,
                headers.pop("Content-Type", None),
                content,
            )
        )
        assert headers == {}
    return parts


def text_fields(parts: list[tuple[str, str | None, str | None, bytes]]) -> list[tuple[str, str]]:
    return [(name, raw.decode("utf-8")) for name, filename, _, raw in parts if filename is None]


class MailgunHarness(ResponsesHarness):
    make = staticmethod(make)


class TestContract(HttpDriverContractTests):
    def failover_cases(self) -> dict[str, Callable[[responses.RequestsMock], object]]:
        return {label: functools.partial(_post, answer) for label, answer in FAILURES.items()}

    secrets = (API_KEY,)
    endpoint = URL
    success_response: ClassVar[dict[str, Any]] = {"json": QUEUED}
    rejection_response: ClassVar[dict[str, Any]] = {"status": 400, "json": INVALID_TO}

    def make_driver(self) -> Driver:
        return make()


class TestPayload(MailgunHarness):
    def test_full_message_is_exactly_the_documented_request(self, driver: MailgunDriver) -> None:
        self.mock.post(URL, json=QUEUED)
        driver.send(full_message())

        assert len(self.mock.calls) == 1
        request = self.mock.calls[0].request
        assert request.method == "POST"
        assert request.url == URL
        expected_auth = "Basic " + base64.b64encode(f"api:{API_KEY}".encode()).decode()
        assert request.headers["Authorization"] == expected_auth
        assert request.headers["User-Agent"].startswith("mailfailover/")
        parts = form_parts(request)
        assert text_fields(parts) == [
            ("from", "Zoë Sender <sender@example.com>"),
            ("to", "Ann Tö <ann@example.com>"),
            ("to", "bob@example.com"),
            ("cc", "Cäcilie <cc1@example.com>"),
            ("cc", "cc2@example.com"),
            ("bcc", "bcc1@example.com"),
            ("bcc", "Björn <bcc2@example.com>"),
            ("subject", "Grüße — your receipt"),
            ("text", "Hallo, grüße!\nSee the PDF."),
            ("html", '<p>Hallo, <b>grüße</b>!</p><img src="cid:logo.png">'),
            ("h:Reply-To", "Replies <reply@example.com>"),
            ("h:Message-Id", "<full-message-1@example.com>"),
            ("h:X-Campaign", "spring-2026"),
            ("o:tag", "receipts"),
            ("o:tag", "billing"),
            ("v:user_id", "42"),
            ("v:order", "A-17"),
        ]
        files = [(n, f, t, raw) for n, f, t, raw in parts if f is not None]
        assert files == [
            ("attachment", "Rechnung-ä.pdf", "application/pdf", PDF_BYTES),
            ("inline", "logo.png", "image/png", PNG_BYTES),
        ]

    def test_inline_part_is_named_by_its_content_id(self, driver: MailgunDriver) -> None:
        self.mock.post(URL, json=QUEUED)
        inline = Attachment("logo.png", PNG_BYTES, inline=True, content_id="brand-logo")
        driver.send(simple_message(html='<img src="cid:brand-logo">', attachments=[inline]))
        files = [p for p in form_parts(self.mock.calls[0].request) if p[1] is not None]
        assert files == [("inline", "brand-logo", "image/png", PNG_BYTES)]

    def test_nameless_attachment_gets_a_filename(self, driver: MailgunDriver) -> None:
        self.mock.post(URL, json=QUEUED)
        driver.send(simple_message(attachments=[Attachment(None, PDF_BYTES, "application/pdf")]))
        files = [p for p in form_parts(self.mock.calls[0].request) if p[1] is not None]
        assert files == [("attachment", "attachment.pdf", "application/pdf", PDF_BYTES)]

    def test_eu_region_uses_the_eu_endpoint(self) -> None:
        self.mock.post(EU_URL, json=QUEUED)
        with make(region="eu") as driver:
            driver.send(simple_message())
        assert self.mock.calls[0].request.url == EU_URL

    def test_base_url_replaces_scheme_and_host_only(self) -> None:
        url = f"http://127.0.0.1:8025/v3/{DOMAIN}/messages"
        self.mock.post(url, json=QUEUED)
        with make(base_url="http://127.0.0.1:8025/", region="eu") as driver:
            driver.send(simple_message())
        assert self.mock.calls[0].request.url == url

    def test_test_mode_sends_o_testmode(self) -> None:
        self.mock.post(URL, json=QUEUED)
        with make(test_mode=True) as driver:
            driver.send(simple_message())
        fields = text_fields(form_parts(self.mock.calls[0].request))
        assert fields[-1] == ("o:testmode", "yes")

    def test_minimal_message_sends_only_what_it_has(self, driver: MailgunDriver) -> None:
        self.mock.post(URL, json=QUEUED)
        driver.send(simple_message(message_id="<m1@example.com>"))
        assert text_fields(form_parts(self.mock.calls[0].request)) == [
            ("from", "Sender <sender@example.com>"),
            ("to", "rcpt@example.com"),
            ("subject", "Hello"),
            ("text", "Hello there."),
            ("h:Message-Id", "<m1@example.com>"),
        ]

    def test_international_domain_is_sent_in_idna(self, driver: MailgunDriver) -> None:
        self.mock.post(URL, json=QUEUED)
        driver.send(simple_message(to=["Jörg <joerg@bücher.example>"]))
        fields = text_fields(form_parts(self.mock.calls[0].request))
        assert ("to", "Jörg <joerg@xn--bcher-kva.example>") in fields

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"tags": ["a", "b", "c", "d"]}, "tags"),
            ({"tags": ["größe"]}, "tags"),
            ({"tags": ["x" * 129]}, "tags"),
            ({"sender": "jörg@example.com"}, "sender"),
        ],
    )
    def test_what_mailgun_cannot_carry_is_refused_before_any_request(
        self, driver: MailgunDriver, overrides: dict[str, Any], field: str
    ) -> None:
        with pytest.raises(UnsupportedFeature) as caught:
            driver.send(simple_message(**overrides))
        assert caught.value.field == field
        assert caught.value.driver == "mailgun"
        assert len(self.mock.calls) == 0

    def test_three_tags_are_fine(self, driver: MailgunDriver) -> None:
        self.mock.post(URL, json=QUEUED)
        driver.send(simple_message(tags=["a", "b", "c"]))
        tags = [v for k, v in text_fields(form_parts(self.mock.calls[0].request)) if k == "o:tag"]
        assert tags == ["a", "b", "c"]

    @pytest.mark.parametrize("domain", ["", "mg.example.com/x", "mg.example.com%2Fx"])
    def test_a_domain_that_breaks_the_url_is_a_config_error(self, domain: str) -> None:
        with pytest.raises(ConfigError, match="domain"):
            make(domain=domain)

    def test_region_must_be_us_or_eu(self) -> None:
        with pytest.raises(ConfigError, match="region"):
            make(region="ap")


class TestSuccess(MailgunHarness):
    def test_receipt_keeps_the_id_with_its_angle_brackets(self, driver: MailgunDriver) -> None:
        self.mock.post(URL, json=QUEUED)
        receipt = driver.send(simple_message())
        assert receipt.driver == "mailgun"
        assert receipt.message_id == "<20260301120000.1.ABCDEF@mg.example.com>"
        assert receipt.response == QUEUED
        assert API_KEY not in repr(receipt)

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            ("Mailgun Magnificent API", "text/plain"),
            ("<html><body>Mailgun Magnificent API</body></html>", "text/html"),
            ("<html>proxy login</html>", "text/html"),
            ('{"message": "Queued. Thank you."}', "application/json"),
            ('{"id": "", "message": "Queued."}', "application/json"),
            ('["<id@mg.example.com>"]', "application/json"),
            ("", "application/json"),
        ],
    )
    def test_a_2xx_that_is_not_mailguns_acceptance_is_bad_response(
        self, driver: MailgunDriver, body: str, content_type: str
    ) -> None:
        self.mock.post(URL, body=body, content_type=content_type)
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.reason == "bad_response"
        assert caught.value.status == 200
        assert caught.value.ambiguous is False
        if "Magnificent" in body:
            assert "URL is wrong" in str(caught.value)


def _in(seconds: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime(time.time() + seconds))


class TestErrors(MailgunHarness):
    @pytest.mark.parametrize(
        ("status", "body", "kind", "reason", "text"),
        [
            (400, INVALID_TO, MessageRejected, None, "'to' parameter is not a valid address"),
            (400, {"message": "from parameter is missing"}, MessageRejected, None, "from param"),
            (
                400,
                {"message": "Sandbox subdomains are for test purposes only. Please add your own "
                 "domain or add the address to authorized recipients in Account Settings."},
                ProviderUnavailable, "account", "Sandbox subdomains",
            ),
            (401, "Forbidden", ProviderUnavailable, "auth", "Forbidden"),
            (402, {"message": "Payment required"}, ProviderUnavailable, "account", "Payment"),
            (
                403,
                {"message": "Domain mg.example.com is not allowed to send: The domain is "
                 "unverified and requires DNS configuration."},
                ProviderUnavailable, "account", "not allowed to send",
            ),
            (403, {"message": "Forbidden"}, ProviderUnavailable, "auth", "Forbidden"),
            (
                404, {"message": "Domain not found: mg.example.com"},
                ProviderUnavailable, "account", "Domain not found: mg.example.com",
            ),
            (404, "404 page not found", ProviderUnavailable, "server_error", "404 page"),
            (413, {"message": "request entity too large"}, MessageRejected, None, "too large"),
            (
                420,
                {"message": f"Domain mg.example.com is not allowed to send: recipient limit "
                 f"exceeded, try again after {_in(90)}"},
                ProviderUnavailable, "rate_limited", "recipient limit exceeded",
            ),
            (429, {"message": "Too many requests"}, ProviderUnavailable, "rate_limited", "Too"),
            (500, {"message": "Internal Server Error"}, ProviderUnavailable, "server_error",
             "Internal"),
            (502, "<html>Bad Gateway</html>", ProviderUnavailable, "server_error", "Bad Gateway"),
        ],
    )  # fmt: skip
    def test_documented_error_answers(
        self,
        driver: MailgunDriver,
        status: int,
        body: Any,
        kind: type[Exception],
        reason: str | None,
        text: str,
    ) -> None:
        if isinstance(body, dict):
            self.mock.post(URL, status=status, json=body)
        else:
            self.mock.post(URL, status=status, body=body, content_type="text/plain")
        with pytest.raises(kind) as caught:
            driver.send(simple_message())
        error = caught.value
        assert isinstance(error, (MessageRejected, ProviderUnavailable))
        assert error.status == status
        assert error.driver == "mailgun"
        assert error.provider_code is None  # Mailgun has no error codes
        assert text in str(error)
        assert API_KEY not in str(error)
        if isinstance(error, ProviderUnavailable):
            assert error.reason == reason
            assert error.ambiguous is False
        else:
            assert error.code == 2

    def test_404_domain_not_found_hints_at_the_region(self, driver: MailgunDriver) -> None:
        self.mock.post(URL, status=404, json={"message": "Domain not found: mg.example.com"})
        with pytest.raises(ProviderUnavailable, match="'us' region"):
            driver.send(simple_message())

    def test_429_retry_after_header(self, driver: MailgunDriver) -> None:
        self.mock.post(
            URL, status=429, json={"message": "Too many"}, headers={"Retry-After": "120"}
        )
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.reason == "rate_limited"
        assert caught.value.retry_after == 120

    def test_wait_is_read_from_try_again_after(self, driver: MailgunDriver) -> None:
        message = f"Domain mg.example.com is not allowed to send: try again after {_in(90)}"
        self.mock.post(URL, status=429, json={"message": message})
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        assert caught.value.retry_after == pytest.approx(90, abs=3)

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("try again in 15 seconds", 15.0),
            ("Try again in 2 minutes.", 120.0),
            ("try again in 1 hour", 3600.0),
            ("try again in 30", 30.0),
            ("try again after {in_60s}", 60.0),
            ("try again after Mon, 01 Jan 2001 00:00:00 UTC", 0.0),
            ("try again later", None),
            ("try again after whenever", None),
            # Mailgun's spec, 429: "... limit exceeded, try again after 120 seconds"
            ("limit exceeded, try again after 120 seconds", 120.0),
            ("try again after 2 minutes", 120.0),
            ("try again after 2026-03-01", None),
            ("no hint here", None),
            ("try again in 90 days", None),
        ],
    )
    def test_wait_from_text(self, text: str, seconds: float | None) -> None:
        result = wait_from_text(text.format(in_60s=formatdate(time.time() + 60, usegmt=True)))
        if seconds is None:
            assert result is None
        else:
            assert result == pytest.approx(seconds, abs=3)


FAILURES: dict[str, dict[str, Any]] = {
    "500": {"status": 500, "json": {"message": "Internal Server Error"}},
    "429": {"status": 429, "json": {"message": "Too many requests"}},
    "401": {"status": 401, "body": "Forbidden"},
    "domain-not-found": {"status": 404, "json": {"message": "Domain not found: mg.example.com"}},
    "magnificent": {"status": 200, "body": "Mailgun Magnificent API"},
}


class TestFailover(MailgunHarness):
    def test_a_rejection_does_not_fail_over(self, clock: Any) -> None:
        self.mock.post(URL, status=400, json=INVALID_TO)
        backup = MemoryDriver(name="backup")
        mailer = FailoverMailer([make(), backup], failure_threshold=2, cooldown=30.0, clock=clock)
        with mailer, pytest.raises(MessageRejected) as caught:
            mailer.send(full_message())
        assert backup.outbox == []
        assert [(a.driver, a.outcome) for a in caught.value.attempts] == [("mailgun", "rejected")]

    def test_unsupported_message_skips_mailgun_without_a_request(self, clock: Any) -> None:
        backup = MemoryDriver(name="backup")
        with FailoverMailer([make(), backup], clock=clock) as mailer:
            result = mailer.send(full_message(tags=["a", "b", "c", "d"]))
        assert result.driver == "backup"
        assert result.attempts[0].outcome == "skipped"
        assert len(self.mock.calls) == 0

    def test_retry_after_120_keeps_mailgun_out_for_120_seconds(self, clock: Any) -> None:
        self.mock.post(
            URL, status=429, json={"message": "slow down"}, headers={"Retry-After": "120"}
        )
        backup = MemoryDriver(name="backup")
        with FailoverMailer([make(), backup], failure_threshold=2, cooldown=30.0, clock=clock) as m:
            assert m.send(simple_message()).driver == "backup"
            clock.advance(119)
            result = m.send(simple_message())
            assert [(a.driver, a.outcome) for a in result.attempts] == [
                ("mailgun", "skipped"),
                ("backup", "sent"),
            ]
            assert len(self.mock.calls) == 1
            clock.advance(2)
            self.mock.replace(responses.POST, URL, json=QUEUED)
            assert m.send(simple_message()).driver == "mailgun"
        assert len(self.mock.calls) == 2

    def test_when_every_driver_fails_all_providers_failed(self, clock: Any) -> None:
        self.mock.post(URL, status=503, body="unavailable")
        down = MemoryDriver(name="backup", fail="unavailable")
        mailer = FailoverMailer([make(), down], clock=clock)
        with mailer, pytest.raises(AllProvidersFailed) as caught:
            mailer.send(simple_message())
        assert [a.outcome for a in caught.value.attempts] == ["unavailable", "unavailable"]


def _post(answer: dict[str, Any], mock: responses.RequestsMock) -> None:
    mock.post(URL, **answer)
