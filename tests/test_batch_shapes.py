"""Batch shapes beyond Postmark and Resend: Mailjet's ``Messages`` array, the re-send of a
batch refused whole, and the providers whose batch shapes cannot carry distinct messages
(pinned at one request per message, with the reason on their docs page)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from mailfailover import (
    AllProvidersFailed,
    ConfigError,
    FailoverMailer,
    Message,
    MessageRejected,
    ProviderUnavailable,
    SendResult,
)
from mailfailover.drivers._http import HttpDriver, HttpResponse, encode_json
from mailfailover.drivers.brevo import BrevoDriver
from mailfailover.drivers.mailgun import MailgunDriver
from mailfailover.drivers.mailjet import MailjetDriver
from mailfailover.drivers.mandrill import MandrillDriver
from mailfailover.drivers.postmark import PostmarkDriver
from mailfailover.drivers.resend import ResendDriver
from mailfailover.drivers.sendgrid import SendGridDriver
from mailfailover.drivers.sparkpost import SparkPostDriver
from mailfailover.testing import MemoryDriver, full_message, simple_message

DOCS = Path(__file__).resolve().parent.parent / "docs" / "drivers"
KEY, SECRET = "mj-public-0123", "mj-secret-4567"  # made up
URL = "https://api.mailjet.com/v3.1/send"


def ok(n: int, email: str = "") -> dict[str, Any]:
    """Mailjet's documented success entry for one message."""
    email = email or f"r{n}@example.com"
    return {"Status": "success", "CustomID": "", "Cc": [], "Bcc": [],
            "To": [{"Email": email, "MessageUUID": f"uuid-{n}", "MessageID": 70650219165027410 + n,
                    "MessageHref": f"https://api.mailjet.com/v3/REST/message/{n}"}]}  # fmt: skip


def refused(code: str, status: int, text: str, related: list[str]) -> dict[str, Any]:
    """Mailjet's documented error entry for one message."""
    return {"Status": "error", "Errors": [{
        "ErrorIdentifier": "88b5ca9f-5f1f-42e7-a45e-9ecbad0c285e", "ErrorCode": code,
        "StatusCode": status, "ErrorMessage": text, "ErrorRelatedTo": related,
    }]}  # fmt: skip


def messages(n: int) -> list[Message]:
    return [simple_message(to=[f"r{i}@example.com"], subject=f"Hello {i}", text=f"Body {i}")
            for i in range(n)]  # fmt: skip


def mailjet(**settings: Any) -> MailjetDriver:
    return MailjetDriver(name="mailjet", api_key=KEY, secret_key=SECRET, **settings)


def mailer(**settings: Any) -> tuple[FailoverMailer, MemoryDriver]:
    backup = MemoryDriver(name="backup")
    return FailoverMailer([mailjet(**settings), backup]), backup


def sent_messages(call: Any) -> list[dict[str, Any]]:
    body = json.loads(call.request.body)
    assert set(body) <= {"Messages", "SandboxMode"}
    return list(body["Messages"])


# -- Mailjet: the Messages array ---------------------------------------------------------------


@responses.activate
def test_mailjet_distinct_messages_go_in_one_documented_request() -> None:
    responses.post(URL, json={"Messages": [ok(0), ok(1, "ann@example.com"), ok(2)]})
    send, backup = mailer()
    items = messages(3)
    items[1] = full_message(tags=["receipts"])  # every field Mailjet carries, one campaign
    results = send.send_many(items)
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert request.url == URL
    expected_auth = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    body = json.loads(request.body)
    assert list(body) == ["Messages"]  # no SandboxMode outside test mode
    # each entry is exactly the single send's Messages[0], in order
    single = mailjet()
    assert body["Messages"] == [
        json.loads(encode_json(single.build_request(m).json))["Messages"][0] for m in items
    ]
    first, full, last = body["Messages"]
    assert first == {"From": {"Email": "sender@example.com", "Name": "Sender"},
                     "To": [{"Email": "r0@example.com"}], "Subject": "Hello 0",
                     "TextPart": "Body 0", "CustomID": items[0].message_id}  # fmt: skip
    assert last["To"] == [{"Email": "r2@example.com"}] and last["CustomID"] == items[2].message_id
    assert full["Cc"] == [{"Email": "cc1@example.com", "Name": "Cäcilie"},
                          {"Email": "cc2@example.com"}]  # fmt: skip
    assert full["Bcc"] == [{"Email": "bcc1@example.com"},
                           {"Email": "bcc2@example.com", "Name": "Björn"}]  # fmt: skip
    assert full["ReplyTo"] == {"Email": "reply@example.com", "Name": "Replies"}
    assert full["Headers"] == {"X-Campaign": "spring-2026"}
    assert full["HTMLPart"].startswith("<p>Hallo") and full["TextPart"].startswith("Hallo")
    assert [a["Filename"] for a in full["Attachments"]] == ["Rechnung-ä.pdf"]
    assert [a["ContentID"] for a in full["InlinedAttachments"]] == ["logo.png"]
    assert full["CustomCampaign"] == "receipts"
    assert json.loads(full["EventPayload"]) == {"user_id": "42", "order": "A-17"}
    assert full["CustomID"] == "<full-message-1@example.com>"
    assert [r.message_id for r in results if isinstance(r, SendResult)] == [
        "uuid-0", "uuid-1", "uuid-2",
    ]  # fmt: skip
    for result in results:
        assert isinstance(result, SendResult)
        assert [(a.driver, a.outcome) for a in result.attempts] == [("mailjet", "sent")]
    assert backup.outbox == []


@responses.activate
def test_mailjet_a_400_with_refused_messages_is_read_per_message() -> None:
    """Mailjet answers 400 when a message of the batch failed; the others were sent."""
    responses.post(URL, status=400, json={"Messages": [
        ok(0),
        refused("mj-0013", 400, '"nobody" is an invalid email address.', ["To[0].Email"]),
        refused("send-0008", 403, '"sender@example.com" is not an authorized sender email '
                "address for your account.", ["From"]),
        ok(3),
    ]})  # fmt: skip
    send, backup = mailer()
    items = messages(4)
    first, invalid, sender, last = send.send_many(items)
    assert len(responses.calls) == 1
    assert len(sent_messages(responses.calls[0])) == 4
    assert isinstance(first, SendResult) and first.message_id == "uuid-0"
    assert isinstance(last, SendResult) and last.message_id == "uuid-3"
    assert [(a.driver, a.outcome) for a in last.attempts] == [("mailjet", "sent")]
    # a refused address is that message's rejection: nothing else tried
    assert isinstance(invalid, MessageRejected)
    assert (invalid.provider_code, invalid.status, invalid.driver) == ("mj-0013", 400, "mailjet")
    assert invalid.detail == '"nobody" is an invalid email address. (To[0].Email)'
    assert [(a.driver, a.outcome) for a in invalid.attempts] == [("mailjet", "rejected")]
    # an unauthorized sender is an account problem: that message alone fails over
    assert isinstance(sender, SendResult) and sender.driver == "backup"
    assert [(a.driver, a.outcome) for a in sender.attempts] == [
        ("mailjet", "unavailable"), ("backup", "sent"),
    ]  # fmt: skip
    error = sender.attempts[0].error
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.provider_code, error.status) == ("account", "send-0008", 403)
    assert error.ambiguous is False
    assert backup.outbox == [items[2]]


@responses.activate
def test_mailjet_a_200_carrying_a_server_error_fails_over_that_message_only() -> None:
    responses.post(URL, json={"Messages": [
        refused("send-0000", 500, "Internal error", []), ok(1),
    ]})  # fmt: skip
    send, backup = mailer()
    items = messages(2)
    failed, sent = send.send_many(items)
    assert isinstance(sent, SendResult) and sent.message_id == "uuid-1"
    assert isinstance(failed, SendResult) and failed.driver == "backup"
    error = failed.attempts[0].error
    assert isinstance(error, ProviderUnavailable) and error.reason == "server_error"
    assert backup.outbox == [items[0]]


@responses.activate
def test_mailjet_a_global_error_sends_each_message_alone() -> None:
    """A request-level error (no ``Messages``) sent nothing: each message is sent again
    alone, so each gets its own verdict and none goes twice."""
    responses.post(URL, status=400, json={
        "ErrorIdentifier": "06df1144-c6f3-4ca7-8885-7ec5d4344113", "ErrorCode": "mj-0011",
        "ErrorMessage": "The payload size is over the limit.", "StatusCode": 400,
    })  # fmt: skip
    responses.post(URL, json={"Messages": [ok(0)]})
    responses.post(URL, status=400, json={"Messages": [
        refused("mj-0013", 400, '"r1@example.com" is an invalid email address.', ["To[0].Email"]),
    ]})  # fmt: skip
    responses.post(URL, json={"Messages": [ok(2)]})
    send, backup = mailer()
    items = messages(3)
    first, second, third = send.send_many(items)
    assert [len(sent_messages(call)) for call in responses.calls] == [3, 1, 1, 1]
    assert [sent_messages(call)[0]["CustomID"] for call in responses.calls[1:]] == [
        m.message_id for m in items
    ]
    assert isinstance(first, SendResult) and first.message_id == "uuid-0"
    assert isinstance(third, SendResult) and third.message_id == "uuid-2"
    assert isinstance(second, MessageRejected) and second.provider_code == "mj-0013"
    # the refused batch is not an attempt of its own: each message has its single send's
    assert [(a.driver, a.outcome) for a in first.attempts] == [("mailjet", "sent")]
    assert backup.outbox == []


@responses.activate
def test_mailjet_a_batch_refused_for_auth_fails_over_each_message_without_resending() -> None:
    responses.post(URL, status=401, json={
        "ErrorIdentifier": "06df1144", "ErrorCode": "mj-0015", "StatusCode": 401,
        "ErrorMessage": "API key authentication/authorization failure.",
    })  # fmt: skip
    send, backup = mailer()
    items = messages(3)
    results = send.send_many(items)
    assert len(responses.calls) == 1
    assert backup.outbox == items
    errors = []
    for result in results:
        assert isinstance(result, SendResult) and result.driver == "backup"
        error = result.attempts[0].error
        assert isinstance(error, ProviderUnavailable) and error.reason == "auth"
        errors.append(error)
    assert len({id(e) for e in errors}) == 3  # each message its own error


@responses.activate
def test_mailjet_a_whole_batch_timeout_fails_over_its_messages_each_ambiguous() -> None:
    responses.post(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    send, backup = mailer()
    items = messages(3)
    results = send.send_many(items)
    assert backup.outbox == items
    for result in results:
        assert isinstance(result, SendResult) and result.driver == "backup"
        error = result.attempts[0].error
        assert isinstance(error, ProviderUnavailable)
        assert (error.reason, error.ambiguous) == ("timeout", True)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, {"Messages": [ok(0)]}),  # one result for two messages
        (400, {"Messages": [ok(0), ok(1), ok(2)]}),  # three results for two
        (200, {"Sent": []}),  # not the v3.1 answer
    ],
    ids=["too-few", "too-many", "no-messages"],
)
@responses.activate
def test_mailjet_an_unreadable_batch_answer_is_ambiguous_for_each(status: int, body: Any) -> None:
    responses.post(URL, status=status, json=body)
    only = FailoverMailer([mailjet()])
    for result in only.send_many(messages(2)):
        assert isinstance(result, AllProvidersFailed)
        error = result.attempts[0].error
        assert isinstance(error, ProviderUnavailable)
        assert (error.reason, error.ambiguous) == ("bad_response", True)
    assert len(responses.calls) == 1


@responses.activate
def test_mailjet_test_mode_batches_under_one_sandbox_flag() -> None:
    sandbox = {"Status": "success", "CustomID": "", "Cc": [], "Bcc": [],
               "To": [{"Email": "r@example.com", "MessageUUID": "", "MessageID": 0,
                       "MessageHref": ""}]}  # fmt: skip
    responses.post(URL, json={"Messages": [sandbox, sandbox]})
    send = FailoverMailer([mailjet(test_mode=True)])
    results = send.send_many(messages(2))
    body = json.loads(responses.calls[0].request.body)
    assert body["SandboxMode"] is True and len(body["Messages"]) == 2
    for result in results:  # SandboxMode gives no provider id
        assert isinstance(result, SendResult) and result.receipt is not None
        assert result.receipt.message_id is None


@responses.activate
def test_mailjet_batch_size_sets_the_size_and_one_turns_batching_off() -> None:
    responses.post(URL, json={"Messages": [ok(0), ok(1)]})
    responses.post(URL, json={"Messages": [ok(2), ok(3)]})
    responses.post(URL, json={"Messages": [ok(4)]})
    send, _ = mailer(batch_size=2)
    results = send.send_many(messages(5))
    assert all(isinstance(r, SendResult) for r in results)
    assert sorted(len(sent_messages(c)) for c in responses.calls) == [1, 2, 2]
    responses.calls.reset()
    off, _ = mailer(batch_size=1)
    off.send_many(messages(3))
    assert [len(sent_messages(c)) for c in responses.calls] == [1, 1, 1]


def test_mailjet_batch_size_defaults_to_the_documented_50() -> None:
    assert mailjet().batch_size == 50
    with pytest.raises(ConfigError, match="at most 50"):
        mailjet(batch_size=51)


@responses.activate
def test_mailjet_a_batch_is_cut_at_15_mb() -> None:
    responses.post(URL, json={"Messages": [ok(0)]})
    responses.post(URL, json={"Messages": [ok(1)]})
    big = "x" * (8 * 1024 * 1024)  # two 8 MB messages do not fit in one 15 MB request
    items = [simple_message(to=[f"r{i}@example.com"], text=big) for i in range(2)]
    results = FailoverMailer([mailjet()]).send_many(items)
    assert all(isinstance(r, SendResult) for r in results)
    assert [len(sent_messages(c)) for c in responses.calls] == [1, 1]


# -- a batch refused whole, for the other batching drivers -------------------------------------


@responses.activate
def test_postmark_a_batch_refused_whole_sends_each_message_alone() -> None:
    """Postmark answers 200 whatever each message's fate; an error status refuses the
    request itself and sent none of it."""
    responses.post("https://api.postmarkapp.com/email/batch", status=422,
                   json={"ErrorCode": 402, "Message": "Received invalid JSON input."})  # fmt: skip
    responses.post("https://api.postmarkapp.com/email", json={
        "ErrorCode": 0, "Message": "OK", "MessageID": "pm-alone", "To": "r@example.com",
        "SubmittedAt": "2026-03-01T12:00:00Z",
    })  # fmt: skip
    send = FailoverMailer([PostmarkDriver(name="postmark", server_token="t0ken")])
    results = send.send_many(messages(2))
    assert [c.request.url.rsplit("/", 1)[1] for c in responses.calls] == ["batch", "email", "email"]
    assert all(isinstance(r, SendResult) and r.message_id == "pm-alone" for r in results)


@responses.activate
def test_resend_a_batch_refused_whole_sends_each_message_alone() -> None:
    responses.post("https://api.resend.com/emails/batch", status=422, json={
        "statusCode": 422, "name": "validation_error", "message": "Too many emails in batch.",
    })  # fmt: skip
    responses.post("https://api.resend.com/emails", json={"id": "re-alone"})
    send = FailoverMailer([ResendDriver(name="resend", api_key="re_made_up_0123")])
    results = send.send_many(messages(2))
    paths = [c.request.url.rsplit("/", 1)[1] for c in responses.calls]
    assert paths == ["batch", "emails", "emails"]
    assert all(isinstance(r, SendResult) and r.message_id == "re-alone" for r in results)


# -- providers whose batch shape does not carry distinct messages --------------------------------

#: driver class -> what its batch shape shares across messages (the docs page says why)
NOT_BATCHED: dict[type[HttpDriver], tuple[str, dict[str, Any]]] = {
    SendGridDriver: ("sendgrid", {"api_key": "SG.made-up"}),
    SparkPostDriver: ("sparkpost", {"api_key": "made-up"}),
    BrevoDriver: ("brevo", {"api_key": "xkeysib-made-up"}),
    MailgunDriver: ("mailgun", {"api_key": "key-made-up", "domain": "mg.example.com"}),
    MandrillDriver: ("mandrill", {"api_key": "made-up"}),
}


@pytest.mark.parametrize("cls", list(NOT_BATCHED), ids=lambda c: NOT_BATCHED[c][0])
def test_a_provider_without_a_faithful_batch_shape_sends_one_request_per_message(
    cls: type[HttpDriver],
) -> None:
    """SendGrid personalizations, SparkPost recipients and Mailgun recipient-variables share
    one body and headers and answer one id for the request; Brevo's messageVersions share
    headers (the Message-ID, the idempotency key) and attachments; Mandrill's call carries
    one message. None carries distinct messages whole, each with its own result."""
    name, settings = NOT_BATCHED[cls]
    driver = cls(name=name, **settings)
    assert driver.batch_size == 1 and cls.max_batch == 1
    assert "batch_size" not in cls.settings_spec
    page = (DOCS / f"{name}.md").read_text("utf-8")
    assert "No batching: `send_many` sends one" in page


@pytest.mark.parametrize(("name", "maximum"), [("postmark", 500), ("resend", 100), ("mailjet", 50)])
def test_each_batching_driver_documents_batch_size(name: str, maximum: int) -> None:
    page = (DOCS / f"{name}.md").read_text("utf-8")
    assert f"| `batch_size` | `{maximum}` |" in page


@responses.activate
def test_mailjet_an_entry_without_an_id_is_that_messages_bad_response_with_its_text() -> None:
    """Each entry is read as a single send's answer, so an entry that is not one is that
    message's ``bad_response`` (kept in the error, as a single send's body would be)."""
    entry = {**ok(0), "To": [{"Email": "r0@example.com", "MessageUUID": "", "MessageID": 0}]}
    responses.post(URL, json={"Messages": [entry, ok(1)]})
    broken, sent = mailjet().send_batch(messages(2))
    assert not isinstance(sent, Exception) and sent.message_id == "uuid-1"
    assert isinstance(broken, ProviderUnavailable)
    assert (broken.reason, broken.ambiguous) == ("bad_response", False)
    assert isinstance(broken.response, str)
    assert json.loads(broken.response) == {"Messages": [entry]}


def test_the_batch_exchange_is_sans_io() -> None:
    """``batch_exchange`` yields the requests to make and is sent their answers (or the
    exception a post raised): the same reading drives any transport."""
    driver = mailjet()
    items = messages(3)
    exchange = driver.batch_exchange(items)
    batch = next(exchange)
    assert (batch.path, batch.auth) == ("/v3.1/send", (KEY, SECRET))
    assert [m["CustomID"] for m in batch.json["Messages"]] == [m.message_id for m in items]
    glob = {"ErrorIdentifier": "x", "ErrorCode": "mj-0008", "StatusCode": 400,
            "ErrorMessage": "Messages: too many elements"}  # fmt: skip
    answer = HttpResponse(400, {"Content-Type": "application/json"}, encode_json(glob))
    alone = [exchange.send(answer)]  # refused whole: the first message alone
    alone.append(exchange.send(HttpResponse(200, {}, encode_json({"Messages": [ok(0)]}))))
    alone.append(exchange.send(requests.exceptions.ConnectionError("refused")))
    assert [len(r.json["Messages"]) for r in alone] == [1, 1, 1]
    with pytest.raises(StopIteration) as done:
        exchange.send(HttpResponse(200, {}, encode_json({"Messages": [ok(2)]})))
    first, second, third = done.value.value
    assert not isinstance(first, Exception) and first.message_id == "uuid-0"
    assert isinstance(second, requests.exceptions.ConnectionError)  # a post's own exception
    assert not isinstance(third, Exception) and third.message_id == "uuid-2"
