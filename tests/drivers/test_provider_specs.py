"""Every HTTP driver's requests and answers checked against the provider's own published spec.

The specs are the copies in ``tests/provider_specs/`` (``SOURCES.json`` says where each came
from). For each provider: the endpoint (base host of every region + path) and the method,
the auth scheme, and the request body of a full message, a text-only and an HTML-only
message in every mode (default, test mode, each region) validated against the spec's
request schema, with objects *closed* (a field the spec does not list is an error). Then
the spec's documented success and error examples are fed through the driver's send path and
the outcome asserted.

Where a spec is itself wrong or stale the test says so, with the evidence, and checks
against the provider's current reference instead (URL cited at the spot).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
import pytest
import requests
import responses
import spec_loader as specs

from mailfailover.driver import Driver, Receipt
from mailfailover.drivers.brevo import BrevoDriver
from mailfailover.drivers.mailgun import MailgunDriver
from mailfailover.drivers.mailjet import MailjetDriver
from mailfailover.drivers.mandrill import MandrillDriver
from mailfailover.drivers.postmark import PostmarkDriver
from mailfailover.drivers.resend import ResendDriver
from mailfailover.drivers.sendgrid import SendGridDriver
from mailfailover.drivers.sparkpost import SparkPostDriver
from mailfailover.errors import (
    ConfigError,
    DeliveryError,
    MessageRejected,
    ProviderUnavailable,
    UnsupportedFeature,
)
from mailfailover.message import Message
from mailfailover.testing import full_message, simple_message

KINDS = ("full", "text_only", "html_only")


@attrs.frozen
class Example:
    """A documented answer and what the driver must make of it."""

    name: str
    status: int
    body: Any  # JSON value, or str for a raw body
    outcome: str  # "receipt" | "rejected" | "unavailable" | "unsupported"
    message_id: str | None = None
    reason: str | None = None
    retry_after: float | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    cls = metafunc.cls
    if cls is None or not issubclass(cls, SpecChecks):
        return
    if "variant" in metafunc.fixturenames:
        metafunc.parametrize("variant", list(cls.variants))
    if "kind" in metafunc.fixturenames:
        metafunc.parametrize("kind", KINDS)
    if "example" in metafunc.fixturenames:
        examples = cls.examples()
        metafunc.parametrize("example", examples, ids=[e.name for e in examples])


def exchange(
    driver: Driver,
    message: Message,
    *,
    status: int = 200,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[requests.PreparedRequest, Receipt | DeliveryError]:
    """Send ``message`` to a fake provider answering ``status``/``body``: the request the
    driver made, and what it returned or raised."""
    kwargs: dict[str, Any] = {"body": body} if isinstance(body, (str, bytes)) else {"json": body}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.POST, re.compile(r"https?://.*"), status=status, headers=headers, **kwargs
        )
        try:
            outcome: Receipt | DeliveryError = driver.send(message)
        except DeliveryError as exc:
            outcome = exc
        request = mock.calls[0].request if mock.calls else None
    assert request is not None, f"no request was made: {outcome!r}"
    return request, outcome


def json_body(request: requests.PreparedRequest) -> Any:
    body = request.body
    assert isinstance(body, bytes), type(body)
    return json.loads(body.decode("utf-8"))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class SpecChecks:
    """The checks every provider runs; a subclass describes the provider and its spec."""

    provider: ClassVar[str]
    #: variant name -> (driver settings, base URL the provider documents for it)
    variants: ClassVar[Mapping[str, tuple[Mapping[str, Any], str]]]
    #: what a 2xx answer for the request checks looks like
    success_status: ClassVar[int] = 200
    success_body: ClassVar[Any] = None

    # -- what a subclass provides ----------------------------------------------------------

    def make(self, **settings: Any) -> Driver:
        raise NotImplementedError

    def message(self, kind: str) -> Message:
        """The message of each kind this provider can carry (a full one trims what it
        cannot: those refusals are tested in the driver's own module)."""
        if kind == "full":
            return full_message()
        if kind == "text_only":
            return simple_message()
        return simple_message(text=None, html="<p>Hello there.</p>")

    def path(self, settings: Mapping[str, Any]) -> str:
        """The operation's path as the spec writes it, filled in."""
        raise NotImplementedError

    def check_auth(self, request: requests.PreparedRequest, settings: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def body_errors(
        self, request: requests.PreparedRequest, message: Message, settings: Mapping[str, Any]
    ) -> list[str]:
        raise NotImplementedError

    @classmethod
    def examples(cls) -> list[Example]:
        raise NotImplementedError

    # -- the checks ---------------------------------------------------------------------------

    def _send(self, variant: str, kind: str = "text_only") -> Any:
        settings, base = self.variants[variant]
        driver = self.make(**settings)
        try:
            request, outcome = exchange(
                driver,
                self.message(kind),
                status=self.success_status,
                body=self.success_body,
            )
        finally:
            driver.close()
        return settings, base, request, outcome

    def test_endpoint_and_method(self, variant: str) -> None:
        settings, base, request, _ = self._send(variant)
        assert request.method == "POST"
        assert request.url == base + self.path(settings)

    def test_auth(self, variant: str) -> None:
        settings, _, request, _ = self._send(variant)
        self.check_auth(request, settings)

    def test_body_matches_the_spec(self, variant: str, kind: str) -> None:
        settings, _, request, outcome = self._send(variant, kind)
        assert isinstance(outcome, Receipt), outcome
        assert self.body_errors(request, self.message(kind), settings) == []

    def test_documented_answer(self, example: Example) -> None:
        driver = self.make(**next(iter(self.variants.values()))[0])
        try:
            _, outcome = exchange(
                driver,
                self.message("text_only"),
                status=example.status,
                body=example.body,
                headers=example.headers,
            )
        finally:
            driver.close()
        if example.outcome == "receipt":
            assert isinstance(outcome, Receipt), outcome
            assert outcome.message_id == example.message_id
            return
        expected = {
            "rejected": MessageRejected,
            "unavailable": ProviderUnavailable,
            "unsupported": UnsupportedFeature,
        }[example.outcome]
        assert isinstance(outcome, expected), outcome
        assert outcome.driver == driver.name
        if isinstance(outcome, ProviderUnavailable):
            assert outcome.reason == example.reason
            assert outcome.retry_after == example.retry_after


def openapi_errors(
    provider: str, path: str, body: Any, *, patch: Callable[[Any], Any] | None = None
) -> list[str]:
    doc = specs.document(provider)
    schema = specs.closed(specs.request_schema(doc, path))
    if patch is not None:
        schema = patch(schema)
    return specs.errors(schema, doc, body)


def documented_examples(provider: str, path: str) -> dict[str, list[Any]]:
    """``{status: [example bodies]}`` the OpenAPI spec documents for an operation."""
    doc = specs.document(provider)
    return {
        status: specs.response_examples(response)
        for status, response in specs.responses(doc, path).items()
    }


# -- SendGrid ----------------------------------------------------------------------------------

SENDGRID_KEY = "SG.test-key"


class TestSendGridSpec(SpecChecks):
    provider = "sendgrid"
    doc = specs.document("sendgrid")
    variants: ClassVar[Mapping[str, tuple[Mapping[str, Any], str]]] = {
        "global": ({}, specs.servers(doc)[0]),
        "eu": ({"region": "eu"}, specs.servers(doc)[1]),
        "test_mode": ({"test_mode": True}, specs.servers(doc)[0]),
    }
    success_status = 202
    success_body = ""

    def make(self, **settings: Any) -> Driver:
        return SendGridDriver(name="sendgrid", api_key=SENDGRID_KEY, **settings)

    def path(self, settings: Mapping[str, Any]) -> str:
        return "/v3/mail/send"

    def check_auth(self, request: requests.PreparedRequest, settings: Mapping[str, Any]) -> None:
        (scheme,) = specs.security_schemes(self.doc, "/v3/mail/send")
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        assert request.headers["Authorization"] == f"Bearer {SENDGRID_KEY}"

    def body_errors(
        self, request: requests.PreparedRequest, message: Message, settings: Mapping[str, Any]
    ) -> list[str]:
        return openapi_errors("sendgrid", "/v3/mail/send", json_body(request))

    def test_metadata_goes_where_the_spec_types_an_object(self) -> None:
        """The spec types top-level ``custom_args`` as a string and
        ``personalizations[].custom_args`` as an object: metadata is sent in the latter."""
        schema = specs.request_schema(self.doc, "/v3/mail/send")
        assert schema["properties"]["custom_args"]["type"] == "string"
        personalization = schema["properties"]["personalizations"]["items"]
        assert personalization["properties"]["custom_args"]["type"] == "object"
        driver = self.make()
        request, _ = exchange(driver, full_message(), status=202, body="")
        driver.close()
        body = json_body(request)
        assert "custom_args" not in body
        assert body["personalizations"][0]["custom_args"] == {"user_id": "42", "order": "A-17"}

    def test_custom_args_over_10_000_bytes_are_refused_before_sending(self) -> None:
        """ "This field may not exceed 10,000 bytes." (personalizations[].custom_args): more
        metadata is UnsupportedFeature, so the next provider gets the message; up to it
        (measured as compact UTF-8 JSON, multi-byte characters counted as bytes) it goes."""
        schema = specs.request_schema(self.doc, "/v3/mail/send")
        personalization = schema["properties"]["personalizations"]["items"]
        limit_text = personalization["properties"]["custom_args"]["description"]
        assert "This field may not exceed 10,000 bytes." in limit_text
        driver = self.make()
        just_fits = {"k": "x" * (10_000 - len('{"k":""}'))}
        _, outcome = exchange(driver, simple_message(metadata=just_fits), status=202, body="")
        assert isinstance(outcome, Receipt), outcome
        one_over = {"k": "ü" * 4997}  # 2 bytes each: 10,002 bytes with the braces and key
        with pytest.raises(UnsupportedFeature) as caught:
            driver.send(simple_message(metadata=one_over))
        assert caught.value.field == "metadata" and "10002 bytes" in str(caught.value)
        driver.close()

    @classmethod
    def examples(cls) -> list[Example]:
        documented = documented_examples("sendgrid", "/v3/mail/send")
        # The spec documents 202 "Accepted" with no body; the id is in X-Message-Id.
        found = [
            Example("202", 202, "", "receipt", message_id="abc123",
                    headers={"X-Message-Id": "abc123"}),
        ]  # fmt: skip
        expected = {
            "400": ("rejected", None),
            "401": ("unavailable", "auth"),
            "403": ("unavailable", "auth"),
            "404": ("unavailable", "server_error"),
            "405": ("unavailable", "server_error"),
            "413": ("rejected", None),
            "500": ("unavailable", "server_error"),
        }
        for status, (outcome, reason) in expected.items():
            body = documented[status][0]  # the answer's example (then its schema's)
            found.append(Example(status, int(status), body, outcome, reason=reason))
        assert set(documented) == {"202", *expected}, "the spec documents other answers"
        return found


# -- Mailgun ---------------------------------------------------------------------------------

MAILGUN_KEY = "key-test"
MAILGUN_PATH = "/v3/{domain_name}/messages"


class TestMailgunSpec(SpecChecks):
    provider = "mailgun"
    doc = specs.document("mailgun")
    variants: ClassVar[Mapping[str, tuple[Mapping[str, Any], str]]] = {
        "us": ({}, specs.servers(doc)[0]),
        "eu": ({"region": "eu"}, specs.servers(doc)[1]),
        "test_mode": ({"test_mode": True}, specs.servers(doc)[0]),
    }
    success_body: ClassVar[Any] = {"id": "<id@mg.example.com>", "message": "Queued. Thank you."}

    def make(self, **settings: Any) -> Driver:
        return MailgunDriver(
            name="mailgun", api_key=MAILGUN_KEY, domain="mg.example.com", **settings
        )

    def path(self, settings: Mapping[str, Any]) -> str:
        return MAILGUN_PATH.replace("{domain_name}", "mg.example.com")

    def check_auth(self, request: requests.PreparedRequest, settings: Mapping[str, Any]) -> None:
        (scheme,) = specs.security_schemes(self.doc, MAILGUN_PATH)
        assert (scheme["type"], scheme["scheme"]) == ("http", "basic")
        assert "api:YOUR_API_KEY" in scheme["description"]
        assert request.headers["Authorization"] == basic("api", MAILGUN_KEY)

    def form_schema(self) -> dict[str, Any]:
        op = specs.operation(self.doc, MAILGUN_PATH, "post")
        media = op["requestBody"]["content"]["multipart/form-data"]
        schema: dict[str, Any] = specs.inline_refs(self.doc, media["schema"])
        return schema

    def body_errors(
        self, request: requests.PreparedRequest, message: Message, settings: Mapping[str, Any]
    ) -> list[str]:
        """Field names against the spec's form schema: every name is a documented property,
        or a documented prefix (``h:``/``v:``, which the spec shows as the examples
        ``h:X-My-Header`` and ``v:my-var``); a non-array field is sent once; an enum field has
        a documented value; the required fields are there; files go in file fields."""
        schema = self.form_schema()
        properties = schema["properties"]
        assert {"h:X-My-Header", "v:my-var"} <= set(properties)
        prefixes = ("h:", "v:")
        parts = specs.form_fields(request.body, request.headers["Content-Type"])  # type: ignore[arg-type]
        problems: list[str] = []
        counts: dict[str, int] = {}
        for name, filename, content in parts:
            counts[name] = counts.get(name, 0) + 1
            prop = properties.get(name)
            if prop is None:
                if not name.startswith(prefixes):
                    problems.append(f"{name}: not a documented field")
                continue
            items = prop.get("items", prop)
            if items.get("format") == "binary":
                if filename is None:
                    problems.append(f"{name}: a file field sent without a filename")
            elif filename is not None:
                problems.append(f"{name}: a text field sent as a file")
            if "enum" in items and content.decode() not in items["enum"]:
                problems.append(f"{name}: {content!r} is not one of {items['enum']}")
        for name, count in counts.items():
            prop = properties.get(name, {"type": "string"})
            if prop.get("type") != "array" and count > 1:
                problems.append(f"{name}: sent {count} times but is not an array")
        problems += [f"{name}: required" for name in schema["required"] if name not in counts]
        return problems

    def test_options_over_16_kb_are_refused_before_sending(self) -> None:
        """ "Send options (parameters starting with o:, h:, v:, or t:) are limited to 16KB
        total" (the operation's description): more is UnsupportedFeature, nothing sent."""
        description = specs.operation(self.doc, MAILGUN_PATH, "post")["description"]
        limit = "parameters starting with o:, h:, v:, or t:) are limited to 16KB total"
        assert limit in description
        driver = self.make()
        big = simple_message(metadata={"blob": "x" * (16 * 1024)})
        with responses.RequestsMock() as mock:  # any request would fail the test
            with pytest.raises(UnsupportedFeature) as caught:
                driver.send(big)
            assert not mock.calls
        assert caught.value.field == "metadata"
        # just under the limit is sent
        fits = simple_message(metadata={"blob": "x" * (15 * 1024)})
        _, outcome = exchange(driver, fits, body=self.success_body)
        driver.close()
        assert isinstance(outcome, Receipt)

    @classmethod
    def examples(cls) -> list[Example]:
        documented = documented_examples("mailgun", MAILGUN_PATH)
        ((success,),) = [documented["200"]]
        return [
            Example("200", 200, success, "receipt", message_id=success["id"]),
            Example("400", 400, documented["400"][0], "rejected"),
            # documented as the JSON string "Forbidden"
            Example("401", 401, documented["401"][0], "unavailable", reason="auth"),
            # "... account-requests-per-sec limit exceeded, try again after 120 seconds"
            Example("429", 429, documented["429"][0], "unavailable",
                    reason="rate_limited", retry_after=120.0),
            Example("500", 500, documented["500"][0], "unavailable", reason="server_error"),
        ]  # fmt: skip


# -- Postmark --------------------------------------------------------------------------------

POSTMARK_TOKEN = "server-token"
# The spec (Postmark's swagger/server.yml as APIs.guru stored it) predates Metadata and
# MessageStream: its SendEmailRequest lists neither, though Postmark's current reference
# documents both for POST /email ("Metadata: object, Custom metadata key/value pairs",
# "MessageStream: string, Set message stream ID that's used for sending. If not provided,
# message will default to the "outbound" transactional stream."):
# https://postmarkapp.com/developer/api/email-api. The request is checked against the spec
# plus those two fields.
POSTMARK_CURRENT_FIELDS = {"Metadata": {"type": "object"}, "MessageStream": {"type": "string"}}


def _postmark_current(schema: Any) -> Any:
    assert not set(POSTMARK_CURRENT_FIELDS) & set(schema["properties"]), "spec now has them"
    schema["properties"].update(POSTMARK_CURRENT_FIELDS)
    return schema


class TestPostmarkSpec(SpecChecks):
    provider = "postmark"
    doc = specs.document("postmark", "swagger")
    variants: ClassVar[Mapping[str, tuple[Mapping[str, Any], str]]] = {
        "default": ({}, specs.servers(doc)[0]),
        "test_mode": ({"test_mode": True}, specs.servers(doc)[0]),
    }
    success_body: ClassVar[Any] = {
        "To": "rcpt@example.com", "SubmittedAt": "2014-02-17T07:25:01.4178645-05:00",
        "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff48d", "ErrorCode": 0, "Message": "OK",
    }  # fmt: skip

    def make(self, **settings: Any) -> Driver:
        return PostmarkDriver(name="postmark", server_token=POSTMARK_TOKEN, **settings)

    def message(self, kind: str) -> Message:
        if kind == "full":
            return full_message(tags=["receipts"])  # Postmark takes one Tag
        return super().message(kind)

    def path(self, settings: Mapping[str, Any]) -> str:
        return "/email"

    def check_auth(self, request: requests.PreparedRequest, settings: Mapping[str, Any]) -> None:
        op = specs.operation(self.doc, "/email", "post")
        (header,) = [p for p in op["parameters"] if p["in"] == "header"]
        assert header["required"] is True
        token = "POSTMARK_API_TEST" if settings.get("test_mode") else POSTMARK_TOKEN
        assert request.headers[header["name"]] == token

    def body_errors(
        self, request: requests.PreparedRequest, message: Message, settings: Mapping[str, Any]
    ) -> list[str]:
        return openapi_errors("postmark", "/email", json_body(request), patch=_postmark_current)

    @classmethod
    def examples(cls) -> list[Example]:
        # The spec documents schemas, no example bodies. These are the answers Postmark's
        # reference shows (https://postmarkapp.com/developer/api/email-api and
        # https://postmarkapp.com/developer/api/overview#error-codes), each checked here
        # against the spec's own response schema.
        doc = specs.document("postmark", "swagger")
        answers = specs.responses(doc, "/email")
        found = [
            Example("200", 200, cls.success_body, "receipt",
                    message_id=cls.success_body["MessageID"]),
            Example("422-300-invalid-request", 422,
                    {"ErrorCode": 300, "Message": "Invalid email request"}, "rejected"),
            Example("422-406-inactive-recipient", 422,
                    {"ErrorCode": 406, "Message": "You tried to send to a recipient that has "
                     "been marked as inactive."}, "rejected"),
            Example("422-400-sender-signature", 422,
                    {"ErrorCode": 400, "Message": "Sender signature not defined for From "
                     "address."}, "unavailable", reason="account"),
            Example("422-10-bad-token", 422,
                    {"ErrorCode": 10, "Message": "Bad or missing Server API token"},
                    "unavailable", reason="auth"),
            Example("500", 500, "", "unavailable", reason="server_error"),
        ]  # fmt: skip
        for example in found:
            schema = answers[str(example.status)].get("schema")
            if schema is not None:
                assert specs.errors(schema, doc, example.body) == [], example.name
        return found


# -- Mandrill --------------------------------------------------------------------------------

MANDRILL_KEY = "md-test-key"
# The spec serves https://mandrillapp.com/api/1.4 (its Swagger 2 sibling /api/1.3, older
# versions /api/1.0), but Mailchimp's current reference, "Transactional API Conventions",
# says "All API URLs listed in this documentation are relative to
# https://mandrillapp.com/api/1.0/" (https://mailchimp.com/developer/transactional/guides/
# transactional-api-conventions/), and Mailchimp's own SDKs generated from that spec still
# call https://mandrillapp.com/api/1.0 (mailchimp/mailchimp-transactional-python,
# api_client.py, host). The driver follows the reference: docs/drivers/mandrill.md.
MANDRILL_REFERENCE_BASE = "https://mandrillapp.com/api/1.0"


def _mandrill_request_schema(schema: Any) -> Any:
    """The spec's MessagesSendRequest is ``allOf: [ApiKey, {message, ...}]`` where ApiKey
    has ``additionalProperties: false``: read literally no body can be valid (ApiKey allows
    only ``key``, the other part requires ``message``). The intent is one object with both
    parts' properties, which is what is checked."""
    key_part, rest = schema["allOf"]
    assert key_part["additionalProperties"] is False
    return {
        "type": "object",
        "properties": {**key_part["properties"], **rest["properties"]},
        "required": [*key_part["required"], *rest["required"]],
        "additionalProperties": False,
    }


class TestMandrillSpec(SpecChecks):
    provider = "mandrill"
    doc = specs.document("mandrill")
    variants: ClassVar[Mapping[str, tuple[Mapping[str, Any], str]]] = {
        "default": ({}, MANDRILL_REFERENCE_BASE),
    }
    success_body: ClassVar[Any] = [
        {"email": "rcpt@example.com", "status": "sent", "_id": "abc123", "reject_reason": None}
    ]

    def make(self, **settings: Any) -> Driver:
        return MandrillDriver(name="mandrill", api_key=MANDRILL_KEY, **settings)

    def path(self, settings: Mapping[str, Any]) -> str:
        return "/messages/send"

    def test_spec_server_differs_from_the_reference(self) -> None:
        """Kept so a spec update that agrees with the reference is noticed."""
        assert specs.servers(self.doc) == ["https://mandrillapp.com/api/1.4"]

    def check_auth(self, request: requests.PreparedRequest, settings: Mapping[str, Any]) -> None:
        # No security scheme: the ApiKey schema's `key` field of the body.
        assert specs.security_schemes(self.doc, "/messages/send") == []
        assert json_body(request)["key"] == MANDRILL_KEY
        assert "Authorization" not in request.headers

    def body_errors(
        self, request: requests.PreparedRequest, message: Message, settings: Mapping[str, Any]
    ) -> list[str]:
        return openapi_errors(
            "mandrill", "/messages/send", json_body(request), patch=_mandrill_request_schema
        )

    @classmethod
    def examples(cls) -> list[Example]:
        doc = specs.document("mandrill")
        result_schema = specs.inline_refs(doc, doc["components"]["schemas"]["MessagesSendResponse"])
        # Spec defect: reject_reason is typed ["string", "null"] with "example": null, but its
        # enum leaves null out, so every accepted recipient's answer (reject_reason null, as
        # in Mailchimp's reference example for /messages/send) would be invalid. null is
        # added to the enum for this check.
        reason = result_schema["items"]["properties"]["reject_reason"]
        assert None not in reason["enum"] and reason["example"] is None
        reason["enum"] = [*reason["enum"], None]
        assert specs.errors(result_schema, doc, cls.success_body) == []
        responses_ = doc["components"]["responses"]

        def error(name: str) -> Any:
            (body,) = specs.response_examples(specs.inline_refs(doc, responses_[name]))
            return body

        rejected = [
            {
                "email": "rcpt@example.com",
                "status": "rejected",
                "_id": "x",
                "reject_reason": "hard-bounce",
            }
        ]
        unsigned = [
            {
                "email": "rcpt@example.com",
                "status": "rejected",
                "_id": "x",
                "reject_reason": "unsigned",
            }
        ]
        for body in (rejected, unsigned):
            assert specs.errors(result_schema, doc, body) == []
        return [
            Example("200-sent", 200, cls.success_body, "receipt", message_id="abc123"),
            Example("200-rejected", 200, rejected, "rejected"),
            Example("200-unsigned", 200, unsigned, "unavailable", reason="account"),
            Example("401-invalid-key", 401, error("Unauthorized"), "unavailable", reason="auth"),
            Example("402-payment", 402, error("PaymentRequired"), "unavailable",
                    reason="account"),
            Example("404-subaccount", 404, error("MessageSubaccountNotFound"), "unavailable",
                    reason="account"),
            Example("500-general", 500, error("ServerError"), "unavailable",
                    reason="server_error"),
            # Mandrill answers its errors with HTTP 500 (ValidationError included): the
            # error's name decides. The spec gives these components no status.
            Example("500-validation", 500, error("ValidationError"), "rejected"),
            Example("500-rate-limited", 500, error("RateLimited"), "unavailable",
                    reason="rate_limited"),
            Example("500-unavailable", 500, error("MessageServiceUnavailable"), "unavailable",
                    reason="server_error"),
        ]  # fmt: skip


# -- Mailjet ---------------------------------------------------------------------------------

MAILJET_KEY, MAILJET_SECRET = "mj-public", "mj-private"
MAILJET_TYPES = specs.spec_file("mailjet", "types").read_text("utf-8")
MAILJET_ENDPOINT = specs.spec_file("mailjet", "endpoint").read_text("utf-8")


def _mailjet_hosts() -> list[str]:
    hosts = re.findall(r"host: '([^']+)'", MAILJET_ENDPOINT)
    return [f"https://{host}" for host in hosts]


def _mailjet_body_schema() -> dict[str, Any]:
    """``SendEmailV3_1.Body`` (first arm of its union: messages each with their own From).
    It is a type alias, so its four fields are written out here; the assert keeps them
    tied to the source."""
    declared = re.search(
        r"Body<.*?> = \{\s*Messages: Array<Message<Headers, Variables>>;\s*"
        r"SandboxMode\?: boolean;\s*AdvanceErrorHandling\?: boolean;\s*Globals\?: Globals;",
        MAILJET_TYPES,
        re.DOTALL,
    )
    assert declared, "SendEmailV3_1.Body changed"
    message = specs.typescript_schema(MAILJET_TYPES, "SendEmailV3_1", "Message")
    return {
        "type": "object",
        "properties": {
            "Messages": {"type": "array", "items": message},
            "SandboxMode": {"type": "boolean"},
            "AdvanceErrorHandling": {"type": "boolean"},
            "Globals": {"type": "object"},
        },
        "required": ["Messages"],
        "additionalProperties": False,
    }


class TestMailjetSpec(SpecChecks):
    provider = "mailjet"
    hosts = _mailjet_hosts()
    variants: ClassVar[Mapping[str, tuple[Mapping[str, Any], str]]] = {
        "global": ({}, hosts[0]),
        "us": ({"region": "us"}, hosts[1]),
        "test_mode": ({"test_mode": True}, hosts[0]),
    }
    success_body: ClassVar[Any] = {
        "Messages": [{
            "Status": "success", "CustomID": "", "Errors": [],
            "To": [{"Email": "rcpt@example.com", "MessageUUID": "1ab23cd-e45f",
                    "MessageID": 456, "MessageHref": "https://api.mailjet.com/v3/message/456"}],
            "Cc": [], "Bcc": [],
        }]
    }  # fmt: skip

    def make(self, **settings: Any) -> Driver:
        return MailjetDriver(
            name="mailjet", api_key=MAILJET_KEY, secret_key=MAILJET_SECRET, **settings
        )

    def message(self, kind: str) -> Message:
        if kind == "full":
            return full_message(tags=["receipts"])  # one CustomCampaign
        return super().message(kind)

    def path(self, settings: Mapping[str, Any]) -> str:
        # urlJoin(protocol, host, version, subPath, url) with .post('send', {version: 'v3.1'})
        assert ".post('send', { version: 'v3.1' })" in MAILJET_ENDPOINT
        return "/v3.1/send"

    def check_auth(self, request: requests.PreparedRequest, settings: Mapping[str, Any]) -> None:
        assert "username: credentials.apiKey" in MAILJET_ENDPOINT
        assert request.headers["Authorization"] == basic(MAILJET_KEY, MAILJET_SECRET)

    def body_errors(
        self, request: requests.PreparedRequest, message: Message, settings: Mapping[str, Any]
    ) -> list[str]:
        schema = _mailjet_body_schema()
        return specs.errors(schema, {"openapi": "3.1"}, json_body(request))

    @pytest.mark.parametrize("mode", ["global", "test_mode"])
    def test_batch_body_matches_the_spec_and_its_answer_is_read_per_message(
        self, mode: str
    ) -> None:
        """``send_many``'s batch: one ``Body`` whose ``Messages`` hold every message (the
        SDK's ``Array<Message>``), answered with one ``ResponseMessage`` per message."""
        settings, base = self.variants[mode]
        driver = self.make(**settings)
        items = [self.message(kind) for kind in KINDS]
        response_schema = specs.typescript_schema(MAILJET_TYPES, "SendEmailV3_1", "ResponseMessage")
        entries = [
            {**self.success_body["Messages"][0], "To": [{**recipient, "MessageUUID": f"u-{n}"}
             for recipient in self.success_body["Messages"][0]["To"]]}
            for n in range(len(items))
        ]  # fmt: skip
        entries[1] = {"Status": "error", "CustomID": "", "To": [], "Cc": [], "Bcc": [],
                      "Errors": [{"ErrorIdentifier": "f987008f", "ErrorCode": "mj-0013",
                                  "StatusCode": 400, "ErrorMessage": "invalid email address",
                                  "ErrorRelatedTo": ["To[0].Email"]}]}  # fmt: skip
        for entry in entries:
            assert specs.errors(response_schema, {"openapi": "3.1"}, entry) == []
        with responses.RequestsMock() as mock:
            mock.add(responses.POST, base + "/v3.1/send", status=400, json={"Messages": entries})
            outcomes = driver.send_batch(items)
            assert len(mock.calls) == 1
            request = mock.calls[0].request
        driver.close()
        body = json_body(request)
        assert specs.errors(_mailjet_body_schema(), {"openapi": "3.1"}, body) == []
        assert len(body["Messages"]) == len(items)
        assert body.get("SandboxMode") is (True if settings else None)
        self.check_auth(request, settings)
        first, refused, last = outcomes
        assert isinstance(first, Receipt) and first.message_id == "u-0"
        assert isinstance(refused, MessageRejected) and refused.provider_code == "mj-0013"
        assert isinstance(last, Receipt) and last.message_id == "u-2"

    @classmethod
    def examples(cls) -> list[Example]:
        # The SDK types give the answer's shape, not examples; these follow Mailjet's Send
        # API v3.1 reference (https://dev.mailjet.com/email/guides/send-api-v31/) and are
        # checked against SendEmailV3_1.Response derived from the types.
        response_schema = specs.typescript_schema(MAILJET_TYPES, "SendEmailV3_1", "ResponseMessage")

        def error(code: str, status: int, text: str) -> Any:
            return {"Messages": [{
                "Status": "error", "CustomID": "", "To": [], "Cc": [], "Bcc": [],
                "Errors": [{"ErrorIdentifier": "f987008f-251a-4dff-8ffc-40f1583ad30c",
                            "ErrorCode": code, "StatusCode": status, "ErrorMessage": text,
                            "ErrorRelatedTo": ["HTMLPart", "TextPart"]}],
            }]}  # fmt: skip

        bodies = [
            ("200", 200, cls.success_body, "receipt", None),
            ("400-send-0003", 400, error("send-0003", 400, 'At least "HTMLPart", "TextPart" '
                                         'or "TemplateID" must be provided.'), "rejected", None),
            ("200-error-500", 200, error("send-0000", 500, "Internal error"), "unavailable",
             "server_error"),
            ("403-sender", 400, error("send-0006", 403, "The sender is not authorized"),
             "unavailable", "account"),
        ]  # fmt: skip
        found = []
        for name, status, body, outcome, reason in bodies:
            for entry in body["Messages"]:
                assert specs.errors(response_schema, {"openapi": "3.1"}, entry) == [], name
            message_id = "1ab23cd-e45f" if outcome == "receipt" else None
            found.append(Example(name, status, body, outcome, message_id=message_id,
                                 reason=reason))  # fmt: skip
        return found


# -- SparkPost -------------------------------------------------------------------------------

SPARKPOST_KEY = "14ac5499cfdd2bb2859e4476d2e5b1d2bad079bf"
SP_TRANSMISSIONS = specs.spec_file("sparkpost", "transmissions").read_text("utf-8")
SP_RECIPIENTS = specs.spec_file("sparkpost", "recipient_lists").read_text("utf-8")
SP_INDEX = specs.spec_file("sparkpost", "index").read_text("utf-8")


def _sparkpost_bases() -> list[str]:
    return re.findall(r"`(https://api[.a-z]*\.sparkpost\.com/api/v1)`", SP_INDEX)


def _sparkpost_schema() -> dict[str, Any]:
    """The Transmissions request as the blueprint's attribute lists describe it: the request
    body, inline content, attachment and inline image objects, recipient and address objects."""
    top = specs.blueprint_attributes(SP_TRANSMISSIONS, "### Request Body")
    content = specs.blueprint_attributes(SP_TRANSMISSIONS, "### Send Inline Content")
    attachment = specs.blueprint_attributes(SP_TRANSMISSIONS, "#### Attachment Object")
    image = specs.blueprint_attributes(SP_TRANSMISSIONS, "#### Inline Image Object")
    recipient = specs.blueprint_attributes(SP_RECIPIENTS, "### Recipient Object")
    address = specs.blueprint_attributes(SP_RECIPIENTS, "### Address Object")
    content["properties"]["attachments"] = {"type": "array", "items": attachment}
    content["properties"]["inline_images"] = {"type": "array", "items": image}
    recipient["properties"]["address"] = {"anyOf": [address, {"type": "string"}]}
    recipient["properties"]["tags"] = {"type": "array", "items": {"type": "string"}}
    top["properties"]["recipients"] = {"type": "array", "items": recipient}
    top["properties"]["content"] = content
    return top


class TestSparkPostSpec(SpecChecks):
    provider = "sparkpost"
    bases = _sparkpost_bases()
    variants: ClassVar[Mapping[str, tuple[Mapping[str, Any], str]]] = {
        "us": ({}, bases[0]),
        "eu": ({"region": "eu"}, bases[1]),
        "test_mode": ({"test_mode": True}, bases[0]),
    }
    success_body: ClassVar[Any] = {
        "results": {"total_rejected_recipients": 0, "total_accepted_recipients": 1,
                    "id": "11668787484950529"}
    }  # fmt: skip

    def make(self, **settings: Any) -> Driver:
        return SparkPostDriver(name="sparkpost", api_key=SPARKPOST_KEY, **settings)

    def path(self, settings: Mapping[str, Any]) -> str:
        assert "## Create a Transmission [/v1/transmissions]" in SP_TRANSMISSIONS
        return "/transmissions"

    def check_auth(self, request: requests.PreparedRequest, settings: Mapping[str, Any]) -> None:
        # "Authenticate each request by setting the Authorization header with a valid API
        # key": the bare key, as in the blueprint's example.
        assert f'"Authorization": "{SPARKPOST_KEY}"' in SP_INDEX
        assert request.headers["Authorization"] == SPARKPOST_KEY

    def body_errors(
        self, request: requests.PreparedRequest, message: Message, settings: Mapping[str, Any]
    ) -> list[str]:
        return specs.errors(_sparkpost_schema(), {"openapi": "3.1"}, json_body(request))

    def test_attribute_lists_accept_the_blueprints_own_example(self) -> None:
        """The parsed schema is not vacuous: it takes the blueprint's inline-content request
        and refuses an unknown field. The example itself has a trailing comma after
        ``"customer_type": "Platinum"`` (not JSON): removed before parsing."""
        section = specs.blueprint_section(SP_TRANSMISSIONS, "### Send Inline Content")
        text = specs.blueprint_request_body(section)
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        example = json.loads(re.sub(r",(\s*[}\]])", r"\1", text))
        schema = _sparkpost_schema()
        assert specs.errors(schema, {"openapi": "3.1"}, example) == []
        example["content"]["unknown_field"] = 1
        assert specs.errors(schema, {"openapi": "3.1"}, example) != []

    def test_sandbox_needs_the_my_first_email_template(self) -> None:
        """ "You can only use the sandbox domain with the `my-first-email` template": a send
        of the message's own content never sets ``options.sandbox``, and the old ``sandbox``
        setting is a ConfigError naming its replacement."""
        assert "You can only use the sandbox domain with the `my-first-email` template" in (
            SP_TRANSMISSIONS
        )
        for variant in self.variants:
            _, _, request, _ = self._send(variant, "full")
            assert "sandbox" not in json_body(request).get("options", {})
        with pytest.raises(ConfigError, match="test_mode"):
            self.make(sandbox=True)

    def test_test_mode_sends_to_the_sink(self) -> None:
        """test_mode: every envelope recipient goes to SparkPost's sink server
        (``<address>.sink.sparkpostmail.com``), the visible To line unchanged."""
        _, _, request, _ = self._send("test_mode", "full")
        body = json_body(request)
        emails = [r["address"]["email"] for r in body["recipients"]]
        assert emails and all(e.endswith(".sink.sparkpostmail.com") for e in emails)
        assert emails[0] == "ann@example.com.sink.sparkpostmail.com"
        assert "ann@example.com>" in body["recipients"][0]["address"]["header_to"]
        assert "sink" not in body["recipients"][0]["address"]["header_to"]

    def test_substitutions_are_off(self) -> None:
        """``options.perform_substitutions: false``: ``{{amount}}`` in a body is sent literally
        ("Can only be set to false when using an inline template", which the driver does)."""
        assert "+ perform_substitutions (boolean)" in SP_TRANSMISSIONS
        driver = self.make()
        message = simple_message(text="You owe {{amount}}.", html="<p>{{amount}}</p>")
        request, _ = exchange(driver, message, body=self.success_body)
        driver.close()
        assert json_body(request)["options"]["perform_substitutions"] is False

    def test_metadata_limit_is_10_kb(self) -> None:
        """ "metadata (object) - Transmission level metadata. ... Maximum length - 10KB.\""""
        assert (
            "Recipient metadata takes precedence over transmission metadata. Maximum length - 10KB."
            in SP_TRANSMISSIONS
        )
        driver = self.make()
        _, outcome = exchange(
            driver, simple_message(metadata={"blob": "x" * 9000}), body=self.success_body
        )
        assert isinstance(outcome, Receipt), outcome
        with pytest.raises(UnsupportedFeature):
            driver.send(simple_message(metadata={"blob": "x" * (10 * 1024)}))
        driver.close()

    @classmethod
    def examples(cls) -> list[Example]:
        found: list[Example] = []
        for heading in ("### Send Inline Content", "### Send a Template"):
            section = specs.blueprint_section(SP_TRANSMISSIONS, heading)
            for status, text in specs.blueprint_responses(section):
                found.append(Example(f"{heading[4:]}-{status}-{len(found)}", status,
                                     json.loads(text), "?"))  # fmt: skip
        expected = [
            ("receipt", None, "11668787484950529"),  # inline 200
            ("unavailable", "account", None),  # 7001 unconfigured or unverified domain
            ("rejected", None, None),  # 1100 invalid DKIM key id
            # 1100 "DKIM key ... is not verified": the shared account-problem rule (the
            # driver sends no dkim_key; an account whose default key is unverified)
            ("unavailable", "account", None),
            ("receipt", None, "11668787484950530"),  # template 200, one of two refused
            ("rejected", None, None),  # 422 1603 template does not exist
        ]
        assert len(found) == len(expected), [e.name for e in found]
        # "If a transmission will push you over the sandbox, daily, or monthly sending limit,
        # an error with the status code 420 is returned"; no body is documented.
        limit = {"errors": [{"message": "Exceed Sending Limit (daily)", "code": "2102"}]}
        return [
            attrs.evolve(e, outcome=outcome, reason=reason, message_id=message_id)
            for e, (outcome, reason, message_id) in zip(found, expected, strict=True)
        ] + [Example("420", 420, limit, "unavailable", reason="rate_limited", retry_after=3600.0)]


# -- Resend ----------------------------------------------------------------------------------

RESEND_KEY = "re_test"


class TestResendSpec(SpecChecks):
    provider = "resend"
    doc = specs.document("resend")
    variants: ClassVar[Mapping[str, tuple[Mapping[str, Any], str]]] = {
        "default": ({}, specs.servers(doc)[0]),
    }
    success_body: ClassVar[Any] = {"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}

    def make(self, **settings: Any) -> Driver:
        return ResendDriver(name="resend", api_key=RESEND_KEY, **settings)

    def path(self, settings: Mapping[str, Any]) -> str:
        return "/emails"

    def check_auth(self, request: requests.PreparedRequest, settings: Mapping[str, Any]) -> None:
        (scheme,) = specs.security_schemes(self.doc, "/emails")
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        assert request.headers["Authorization"] == f"Bearer {RESEND_KEY}"
        (key,) = specs.operation(self.doc, "/emails", "post")["parameters"]
        assert key["name"] == "Idempotency-Key"
        assert 0 < len(request.headers["Idempotency-Key"]) <= key["schema"]["maxLength"]

    def body_errors(
        self, request: requests.PreparedRequest, message: Message, settings: Mapping[str, Any]
    ) -> list[str]:
        return openapi_errors("resend", "/emails", json_body(request))

    @classmethod
    def examples(cls) -> list[Example]:
        # The spec documents the 200 schema and no error answers; the errors below are from
        # Resend's reference (https://resend.com/docs/api-reference/errors), the success body
        # from https://resend.com/docs/api-reference/emails/send-email, checked against the
        # spec's SendEmailResponse.
        doc = specs.document("resend")
        schema = specs.inline_refs(doc, doc["components"]["schemas"]["SendEmailResponse"])
        assert specs.errors(schema, doc, cls.success_body) == []

        def error(status: int, name: str, text: str) -> Any:
            return {"statusCode": status, "message": text, "name": name}

        return [
            Example("200", 200, cls.success_body, "receipt", message_id=cls.success_body["id"]),
            Example("422-validation", 422, error(422, "validation_error", "Invalid `to` field."),
                    "rejected"),
            Example("401-missing-key", 401, error(401, "missing_api_key", "Missing API key"),
                    "unavailable", reason="auth"),
            Example("403-invalid-key", 403, error(403, "invalid_api_key", "API key is invalid"),
                    "unavailable", reason="auth"),
            Example("429-rate", 429, error(429, "rate_limit_exceeded", "Too many requests"),
                    "unavailable", reason="rate_limited"),
            Example("500", 500, error(500, "application_error", "Internal server error"),
                    "unavailable", reason="server_error"),
        ]  # fmt: skip


# -- Brevo -----------------------------------------------------------------------------------

BREVO_KEY = "xkeysib-test"


class TestBrevoSpec(SpecChecks):
    provider = "brevo"
    doc = specs.document("brevo")
    variants: ClassVar[Mapping[str, tuple[Mapping[str, Any], str]]] = {
        "default": ({}, specs.servers(doc)[0]),
        "test_mode": ({"test_mode": True}, specs.servers(doc)[0]),
    }
    success_status = 201
    success_body: ClassVar[Any] = {"messageId": "<201798300811.5787683@relay.domain.com>"}

    def make(self, **settings: Any) -> Driver:
        return BrevoDriver(name="brevo", api_key=BREVO_KEY, **settings)

    def message(self, kind: str) -> Message:
        if kind == "full":  # Brevo cannot inline images
            message = full_message()
            return message.replace(attachments=[a for a in message.attachments if not a.inline])
        return super().message(kind)

    def path(self, settings: Mapping[str, Any]) -> str:
        return "/smtp/email"

    def check_auth(self, request: requests.PreparedRequest, settings: Mapping[str, Any]) -> None:
        schemes = specs.security_schemes(self.doc, "/smtp/email")
        api_key = next(s for s in schemes if s["name"] == "api-key")
        assert (api_key["type"], api_key["in"]) == ("apiKey", "header")
        assert request.headers["api-key"] == BREVO_KEY

    def body_errors(
        self, request: requests.PreparedRequest, message: Message, settings: Mapping[str, Any]
    ) -> list[str]:
        body = json_body(request)
        problems = openapi_errors("brevo", "/smtp/email", body)
        props = specs.request_schema(self.doc, "/smtp/email")["properties"]
        # Rules the spec states in prose, not in the schema:
        html_rule = "**Mandatory if 'templateId' is not passed"
        assert html_rule in props["htmlContent"]["description"]
        if "templateId" not in body and "htmlContent" not in body:
            problems.append("htmlContent: mandatory if 'templateId' is not passed")
        for field in ("sender", "to", "cc", "bcc", "replyTo"):
            values = body.get(field)
            for person in values if isinstance(values, list) else [values] if values else []:
                if len(person.get("name", "")) > 70:
                    problems.append(f"{field}.name: more than 70 characters")
        return problems

    def test_text_only_keeps_its_text_part(self) -> None:
        """A text-only message is sent with its text as textContent, unchanged, plus the
        htmlContent the spec requires: that text, escaped, in a ``<pre>``-like block (Brevo
        turns a text-only request into an HTML-only message, dropping the text part)."""
        driver = self.make()
        message = simple_message(text="Total: 3 < 5 & done\nbye")
        request, _ = exchange(driver, message, status=201, body=self.success_body)
        driver.close()
        body = json_body(request)
        assert body["textContent"] == "Total: 3 < 5 & done\nbye"
        assert "Total: 3 &lt; 5 &amp; done\nbye" in body["htmlContent"]

    def test_display_names_over_70_characters_are_refused(self) -> None:
        """ "Name of the recipient. **Maximum allowed characters are 70**" (and the sender's):
        refused before any request, naming the field."""
        props = specs.request_schema(self.doc, "/smtp/email")["properties"]
        assert (
            "Maximum allowed characters are 70"
            in props["to"]["items"]["properties"]["name"]["description"]
        )
        assert (
            "Maximum allowed characters are 70"
            in props["sender"]["properties"]["name"]["description"]
        )
        driver = self.make()
        long_name = "N" * 71
        for field, value in (
            ("to", [f"{long_name} <ann@example.com>"]),
            ("sender", f"{long_name} <shop@example.com>"),
            ("cc", [f"{long_name} <cc@example.com>"]),
        ):
            with responses.RequestsMock() as mock:
                with pytest.raises(UnsupportedFeature) as caught:
                    driver.send(simple_message(**{field: value}))
                assert not mock.calls
            assert caught.value.field == field
        # exactly 70 is sent
        _, outcome = exchange(
            driver, simple_message(to=[f"{'N' * 70} <ann@example.com>"]), status=201,
            body=self.success_body,
        )  # fmt: skip
        driver.close()
        assert isinstance(outcome, Receipt)

    @classmethod
    def examples(cls) -> list[Example]:
        documented = documented_examples("brevo", "/smtp/email")
        (created,) = documented["201"]
        (scheduled,) = documented["202"]
        doc = specs.document("brevo")
        error_model = doc["components"]["schemas"]["errorModel"]["properties"]
        # The 400 documents only a schema; its example code and message, and codes of its enum.
        example_error = {
            "code": error_model["code"]["example"], "message": error_model["message"]["example"],
        }  # fmt: skip
        assert example_error["code"] == "method_not_allowed"

        def error(code: str, text: str) -> Any:
            assert code in error_model["code"]["enum"]
            return {"code": code, "message": text}

        return [
            Example("201", 201, created, "receipt", message_id=created["messageId"]),
            Example("202", 202, scheduled, "receipt", message_id=scheduled["messageId"]),
            Example("405-method-not-allowed", 405, example_error, "unavailable",
                    reason="server_error"),
            Example("400-invalid-parameter", 400, error("invalid_parameter", "to is not valid"),
                    "rejected"),
            Example("400-missing-parameter", 400,
                    error("missing_parameter", "Either of htmlContent or textContent is required"),
                    "rejected"),
            Example("402-credits", 402, error("not_enough_credits", "Not enough credits"),
                    "unavailable", reason="account"),
            Example("400-under-validation", 400,
                    error("account_under_validation", "Your account is under validation"),
                    "unavailable", reason="account"),
            Example("401-unauthorized", 401, error("unauthorized", "Key not found"),
                    "unavailable", reason="auth"),
        ]  # fmt: skip
