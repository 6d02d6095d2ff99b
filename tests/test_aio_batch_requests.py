"""``AsyncFailoverMailer.send_many``'s batch requests as aiohttp sends them, asserted
exactly with ``aioresponses`` (URL, headers, body) as tests/test_batching.py asserts the
``requests`` ones: Postmark and Resend (its permissive validation and idempotency key),
answers refused in part, a transport failure and an unreadable answer for the whole batch,
``batch_size`` cuts. tests/test_aio_batching.py covers the scheduling against a stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("aioresponses")

import aiohttp.client_exceptions as ce
import aioresponses
from batch_support import BATCH_URL, ONE_URL, TOKEN, messages, ok
from yarl import URL

from mailfailover import (
    AllProvidersFailed,
    MailError,
    MessageRejected,
    ProviderUnavailable,
    SendResult,
)
from mailfailover._contract_tests import _AiohttpMock
from mailfailover.aio import AsyncFailoverMailer
from mailfailover.driver import Driver
from mailfailover.drivers.postmark import PostmarkDriver
from mailfailover.drivers.resend import ResendDriver
from mailfailover.message import Message
from mailfailover.testing import MemoryDriver

RESEND_KEY = "re_made_up_key_0123456789"
RESEND_BATCH = "https://api.resend.com/emails/batch"


@pytest.fixture
def http() -> Iterator[_AiohttpMock]:
    with aioresponses.aioresponses() as mock:
        yield _AiohttpMock(mock)


def send_many(drivers: list[Driver], items: list[Message], **options: Any) -> list[Any]:
    async def scenario() -> list[SendResult | MailError]:
        async with AsyncFailoverMailer(drivers) as mailer:
            return await mailer.send_many(items, **options)

    return asyncio.run(scenario())


def _url_of(http: _AiohttpMock, call: Any) -> str:
    for (_method, url), calls in http.mock.requests.items():
        if any(c is call for c in calls):
            return str(url)
    raise AssertionError("a call the mock did not record")


def test_distinct_messages_go_in_one_documented_batch_request(http: _AiohttpMock) -> None:
    http.post(BATCH_URL, json=[ok(0), ok(1), ok(2)])
    backup = MemoryDriver(name="backup")
    items = messages(3)
    results = send_many([PostmarkDriver(name="postmark", server_token=TOKEN), backup], items)
    assert len(http.calls) == 1
    call = http.calls[0]
    assert _url_of(http, call) == BATCH_URL
    assert call.kwargs["headers"]["X-Postmark-Server-Token"] == TOKEN
    assert call.kwargs["headers"]["Content-Type"] == "application/json"
    single = PostmarkDriver(name="p", server_token=TOKEN)
    # exactly the bodies the single sends would post, in order: the sync batch's body
    assert json.loads(call.kwargs["data"]) == [
        json.loads(json.dumps(single.build_request(m).json)) for m in items
    ]
    assert [r.message_id for r in results] == ["pm-0", "pm-1", "pm-2"]
    for result in results:
        assert isinstance(result, SendResult)
        assert [(a.driver, a.outcome) for a in result.attempts] == [("postmark", "sent")]
    assert backup.outbox == []


def test_a_batch_answer_with_refused_messages_is_read_per_message(http: _AiohttpMock) -> None:
    http.post(BATCH_URL, json=[
        ok(0),
        {"ErrorCode": 406, "Message": "You tried to send to recipient(s) that have been "
         "marked as inactive. Found inactive addresses: r1@example.com. Inactive recipients "
         "are ones that have generated a hard bounce, a spam complaint, or a manual "
         "suppression."},
        {"ErrorCode": 412, "Message": "Your account is pending approval."},
        ok(3),
    ])  # fmt: skip
    backup = MemoryDriver(name="backup")
    items = messages(4)
    postmark = PostmarkDriver(name="postmark", server_token=TOKEN)
    first, refused, account, last = send_many([postmark, backup], items)
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
    assert len(http.calls) == 1


def test_a_whole_batch_transport_failure_fails_over_only_its_messages_each_ambiguous(
    http: _AiohttpMock,
) -> None:
    http.post(BATCH_URL, body=ce.ServerDisconnectedError())
    backup = MemoryDriver(name="backup")
    items = messages(3)
    results = send_many([PostmarkDriver(name="postmark", server_token=TOKEN), backup], items)
    assert backup.outbox == items  # each failed over, once
    errors = []
    for result in results:
        assert isinstance(result, SendResult) and result.driver == "backup"
        assert [(a.driver, a.outcome) for a in result.attempts] == [
            ("postmark", "unavailable"), ("backup", "sent"),
        ]  # fmt: skip
        error = result.attempts[0].error
        assert isinstance(error, ProviderUnavailable)
        assert (error.reason, error.ambiguous) == ("connection", True)
        errors.append(error)
    assert len({id(e) for e in errors}) == 3  # each message its own error


def test_an_unreadable_batch_answer_is_ambiguous_for_each_message(http: _AiohttpMock) -> None:
    http.post(BATCH_URL, json=[ok(0)])  # one result for two messages
    results = send_many([PostmarkDriver(name="postmark", server_token=TOKEN)], messages(2))
    for result in results:
        assert isinstance(result, AllProvidersFailed)
        error = result.attempts[0].error
        assert isinstance(error, ProviderUnavailable)
        assert (error.reason, error.ambiguous) == ("bad_response", True)


def test_batch_size_cuts_the_batches_and_a_lone_message_goes_alone(http: _AiohttpMock) -> None:
    http.post(BATCH_URL, json=[ok(0), ok(1)])
    http.post(BATCH_URL, json=[ok(2), ok(3)])
    http.post(ONE_URL, json=ok(4))
    postmark = PostmarkDriver(name="postmark", server_token=TOKEN, batch_size=2)
    items = messages(5)
    results = send_many([postmark], items, concurrency=1)
    assert [r.message_id for r in results] == ["pm-0", "pm-1", "pm-2", "pm-3", "pm-4"]
    assert len(http.calls) == 3
    batches = http.mock.requests[("POST", URL(BATCH_URL))]
    assert [[b["To"] for b in json.loads(c.kwargs["data"])] for c in batches] == [
        ["r0@example.com", "r1@example.com"], ["r2@example.com", "r3@example.com"],
    ]  # fmt: skip
    alone = http.mock.requests[("POST", URL(ONE_URL))]
    assert json.loads(alone[0].kwargs["data"])["To"] == "r4@example.com"


def test_resend_batch_and_a_permissive_answer_with_a_refused_message(http: _AiohttpMock) -> None:
    http.post(RESEND_BATCH, json={
        "data": [{"id": "ae2014de-c168-4c61-8267-70d2662a1ce1"},
                 {"id": "faccb7a5-8a28-4e9a-ac64-8da1cc3bc1cb"}],
        "errors": [{"index": 1, "message": "The `to` field is missing."}],
    })  # fmt: skip
    items = messages(3)
    first, refused, last = send_many([ResendDriver(name="resend", api_key=RESEND_KEY)], items)
    assert len(http.calls) == 1
    call = http.calls[0]
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {RESEND_KEY}"
    assert call.kwargs["headers"]["x-batch-validation"] == "permissive"
    assert call.kwargs["headers"]["Idempotency-Key"].startswith("batch-")
    single = ResendDriver(name="r", api_key=RESEND_KEY)
    assert json.loads(call.kwargs["data"]) == [
        json.loads(json.dumps(single.build_request(m).json)) for m in items
    ]
    assert isinstance(first, SendResult)
    assert first.message_id == "ae2014de-c168-4c61-8267-70d2662a1ce1"
    assert isinstance(last, SendResult)
    assert last.message_id == "faccb7a5-8a28-4e9a-ac64-8da1cc3bc1cb"
    assert isinstance(refused, MessageRejected)
    assert [(a.driver, a.outcome) for a in refused.attempts] == [("resend", "rejected")]
