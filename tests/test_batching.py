"""``send_many`` through batch endpoints: one request for many messages, and per-message
semantics exactly as one send each (Postmark ``POST /email/batch``, with ``responses``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from batch_support import BATCH_URL, ONE_URL, TOKEN, messages, ok

from mailfailover import (
    AllProvidersFailed,
    Attachment,
    ConfigError,
    FailoverMailer,
    MessageRejected,
    ProviderUnavailable,
    SendResult,
)
from mailfailover.drivers.postmark import PostmarkDriver
from mailfailover.drivers.resend import ResendDriver
from mailfailover.testing import MemoryDriver, simple_message


def mailer(**settings: Any) -> tuple[FailoverMailer, MemoryDriver]:
    backup = MemoryDriver(name="backup")
    driver = PostmarkDriver(name="postmark", server_token=TOKEN, **settings)
    return FailoverMailer([driver, backup]), backup


@responses.activate
def test_distinct_messages_go_in_one_documented_batch_request() -> None:
    responses.post(BATCH_URL, json=[ok(0), ok(1), ok(2)])
    send, backup = mailer()
    items = messages(3)
    results = send.send_many(items)
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert request.url == BATCH_URL
    assert request.headers["X-Postmark-Server-Token"] == TOKEN
    body = json.loads(request.body)
    single = PostmarkDriver(name="p", server_token=TOKEN)
    # a JSON array of exactly the bodies the single sends would post, in order
    assert body == [json.loads(json.dumps(single.build_request(m).json)) for m in items]
    assert [b["To"] for b in body] == ["r0@example.com", "r1@example.com", "r2@example.com"]
    assert [b["Subject"] for b in body] == ["Hello 0", "Hello 1", "Hello 2"]
    assert all(isinstance(r, SendResult) for r in results)
    assert [r.message_id for r in results if isinstance(r, SendResult)] == ["pm-0", "pm-1", "pm-2"]
    for result in results:
        assert isinstance(result, SendResult)
        assert [(a.driver, a.outcome) for a in result.attempts] == [("postmark", "sent")]
    assert backup.outbox == []


@responses.activate
def test_a_batch_answer_with_refused_messages_is_read_per_message() -> None:
    responses.post(BATCH_URL, json=[
        ok(0),
        {"ErrorCode": 406, "Message": "You tried to send to recipient(s) that have been "
         "marked as inactive. Found inactive addresses: r1@example.com. Inactive recipients "
         "are ones that have generated a hard bounce, a spam complaint, or a manual "
         "suppression."},
        {"ErrorCode": 412, "Message": "Your account is pending approval."},
        ok(3),
    ])  # fmt: skip
    send, backup = mailer()
    items = messages(4)
    first, refused, account, last = send.send_many(items)
    assert isinstance(first, SendResult) and first.message_id == "pm-0"
    assert isinstance(last, SendResult) and last.message_id == "pm-3"
    assert isinstance(refused, MessageRejected)  # refused: nothing else tried
    assert refused.provider_code == 406 and refused.driver == "postmark"
    assert [(a.driver, a.outcome) for a in refused.attempts] == [("postmark", "rejected")]
    # an account problem of one message fails over that message alone
    assert isinstance(account, SendResult) and account.driver == "backup"
    assert [(a.driver, a.outcome) for a in account.attempts] == [
        ("postmark", "unavailable"), ("backup", "sent"),
    ]  # fmt: skip
    error = account.attempts[0].error
    assert isinstance(error, ProviderUnavailable) and error.reason == "account"
    assert backup.outbox == [items[2]]
    assert len(responses.calls) == 1


@responses.activate
def test_a_whole_batch_transport_failure_fails_over_only_its_messages_each_ambiguous() -> None:
    responses.post(BATCH_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    send, backup = mailer()
    items = messages(3)
    results = send.send_many(items)
    assert backup.outbox == items  # each failed over, once
    errors = []
    for result in results:
        assert isinstance(result, SendResult) and result.driver == "backup"
        assert [(a.driver, a.outcome) for a in result.attempts] == [
            ("postmark", "unavailable"), ("backup", "sent"),
        ]  # fmt: skip
        error = result.attempts[0].error
        assert isinstance(error, ProviderUnavailable)
        assert (error.reason, error.ambiguous) == ("timeout", True)
        errors.append(error)
    assert len({id(e) for e in errors}) == 3  # each message its own error


@responses.activate
def test_a_batch_refused_whole_is_each_messages_error() -> None:
    responses.post(BATCH_URL, status=401, json={"ErrorCode": 10, "Message": "Bad token"})
    send, _backup = mailer()
    results = send.send_many(messages(2))
    for result in results:
        assert isinstance(result, SendResult) and result.driver == "backup"
        error = result.attempts[0].error
        assert isinstance(error, ProviderUnavailable) and error.reason == "auth"


@responses.activate
def test_an_unreadable_batch_answer_is_ambiguous_for_each_message() -> None:
    responses.post(BATCH_URL, json=[ok(0)])  # one result for two messages
    send, backup = mailer()
    only = FailoverMailer([PostmarkDriver(name="postmark", server_token=TOKEN)])
    results = only.send_many(messages(2))
    for result in results:
        assert isinstance(result, AllProvidersFailed)
        error = result.attempts[0].error
        assert isinstance(error, ProviderUnavailable)
        assert (error.reason, error.ambiguous) == ("bad_response", True)
    send.close()
    assert backup.outbox == []


@responses.activate
def test_batch_size_sets_the_size_and_one_turns_batching_off() -> None:
    responses.post(BATCH_URL, json=[ok(0), ok(1)])
    responses.post(ONE_URL, json=ok(9))
    send, _ = mailer(batch_size=2)
    results = send.send_many(messages(5))
    assert all(isinstance(r, SendResult) for r in results)
    assert sorted(c.request.url for c in responses.calls) == [ONE_URL, BATCH_URL, BATCH_URL]
    responses.calls.reset()
    off, _ = mailer(batch_size=1)
    off.send_many(messages(3))
    assert [c.request.url for c in responses.calls] == [ONE_URL] * 3


def test_batch_size_is_checked_against_the_providers_maximum() -> None:
    assert PostmarkDriver(name="p", server_token=TOKEN).batch_size == 500
    with pytest.raises(ConfigError, match="at most 500"):
        PostmarkDriver(name="p", server_token=TOKEN, batch_size=501)
    with pytest.raises(ConfigError, match="at least 1"):
        PostmarkDriver(name="p", server_token=TOKEN, batch_size=0)


@responses.activate
def test_a_message_the_driver_refuses_before_sending_does_not_stop_the_batch() -> None:
    responses.post(BATCH_URL, json=[ok(0), ok(2)])
    send, _backup = mailer()
    items = messages(3)
    items[1] = simple_message(to=["rcpt@example.com"], metadata={f"k{i}": "v" for i in range(11)})
    first, odd, last = send.send_many(items)
    assert isinstance(first, SendResult) and isinstance(last, SendResult)
    assert isinstance(odd, SendResult) and odd.driver == "backup"  # Postmark skipped it
    assert next((a.outcome, a.reason) for a in odd.attempts) == ("skipped", "unsupported")
    assert len(json.loads(responses.calls[0].request.body)) == 2  # the only request


@responses.activate
def test_a_batch_is_cut_at_the_providers_byte_cap() -> None:
    responses.post(BATCH_URL, json=[ok(i) for i in range(6)])
    responses.post(ONE_URL, json=ok(6))
    send, _ = mailer()
    big = "x" * (8 * 1024 * 1024)  # seven 8 MB messages: 50 MB holds six
    items = [simple_message(to=[f"r{i}@example.com"], text=big) for i in range(7)]
    results = send.send_many(items)
    assert all(isinstance(r, SendResult) for r in results)
    assert sorted(c.request.url for c in responses.calls) == [ONE_URL, BATCH_URL]


# -- Resend: POST /emails/batch, permissive validation -------------------------------------

RESEND_KEY = "re_made_up_key_0123456789"
RESEND_BATCH = "https://api.resend.com/emails/batch"
RESEND_ONE = "https://api.resend.com/emails"


def resend_mailer(**settings: Any) -> tuple[FailoverMailer, MemoryDriver]:
    backup = MemoryDriver(name="backup")
    driver = ResendDriver(name="resend", api_key=RESEND_KEY, **settings)
    return FailoverMailer([driver, backup]), backup


@responses.activate
def test_resend_batch_request_and_a_permissive_answer_with_a_refused_message() -> None:
    responses.post(RESEND_BATCH, json={
        "data": [{"id": "ae2014de-c168-4c61-8267-70d2662a1ce1"},
                 {"id": "faccb7a5-8a28-4e9a-ac64-8da1cc3bc1cb"}],
        "errors": [{"index": 1, "message": "The `to` field is missing."}],
    })  # fmt: skip
    send, backup = resend_mailer()
    items = messages(3)
    first, refused, last = send.send_many(items)
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {RESEND_KEY}"
    assert request.headers["x-batch-validation"] == "permissive"
    assert request.headers["Idempotency-Key"].startswith("batch-")
    single = ResendDriver(name="r", api_key=RESEND_KEY)
    assert json.loads(request.body) == [
        json.loads(json.dumps(single.build_request(m).json)) for m in items
    ]
    assert isinstance(first, SendResult)
    assert first.message_id == "ae2014de-c168-4c61-8267-70d2662a1ce1"
    assert isinstance(last, SendResult)
    assert last.message_id == "faccb7a5-8a28-4e9a-ac64-8da1cc3bc1cb"  # ids skip the refused
    assert isinstance(refused, MessageRejected)
    assert refused.detail == "The `to` field is missing."
    assert [(a.driver, a.outcome) for a in refused.attempts] == [("resend", "rejected")]
    assert backup.outbox == []


@responses.activate
def test_resend_messages_with_attachments_go_one_by_one() -> None:
    responses.post(RESEND_BATCH, json={"data": [{"id": "a"}, {"id": "b"}]})
    responses.post(RESEND_ONE, json={"id": "c"})
    send, _ = resend_mailer()
    items = messages(3)
    items[1] = simple_message(attachments=[Attachment("a.pdf", b"%PDF-1.4", "application/pdf")])
    results = send.send_many(items)
    assert [r.message_id for r in results if isinstance(r, SendResult)] == ["a", "c", "b"]
    assert sorted(c.request.url for c in responses.calls) == [RESEND_ONE, RESEND_BATCH]
    batch = next(c for c in responses.calls if c.request.url == RESEND_BATCH)
    assert len(json.loads(batch.request.body)) == 2


@responses.activate
def test_resend_whole_batch_refusal_fails_over_each_message() -> None:
    responses.post(RESEND_BATCH, status=500, json={"statusCode": 500, "name": "application_error",
                                                  "message": "Something went wrong"})  # fmt: skip
    send, backup = resend_mailer()
    items = messages(2)
    results = send.send_many(items)
    assert backup.outbox == items
    for result in results:
        assert isinstance(result, SendResult) and result.driver == "backup"
        error = result.attempts[0].error
        assert isinstance(error, ProviderUnavailable) and error.reason == "server_error"
