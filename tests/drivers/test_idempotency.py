"""An idempotency key never lets a *different* message pass as delivered (issue 9, item 2).

Brevo and Resend de-duplicate on the key we send. A per-recipient copy that reused the
original's Message-ID used to get the same key: Brevo answered "idempotencyKey is already
used", which the driver (rightly, for a retry) reads as "delivered", and the second
recipient never got the mail; Resend refused it. Each fake provider below behaves as its
documentation says: the first request with a key is processed, a later one with the same
key is answered as a duplicate (Brevo) or compared by payload (Resend).
"""

from __future__ import annotations

import json
from typing import Any

import responses

from mailfailover import FailoverMailer, MemoryDriver
from mailfailover.drivers.brevo import BrevoDriver
from mailfailover.drivers.resend import ResendDriver
from mailfailover.testing import simple_message

BREVO = "http://brevo.test/v3/smtp/email"
RESEND = "http://resend.test/emails"


class FakeBrevo:
    """Brevo's idempotency: a key processed once is answered 400 duplicate_parameter."""

    def __init__(self) -> None:
        self.delivered: list[list[str]] = []
        self.keys: set[str] = set()

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        key = body["headers"]["idempotencyKey"]
        if key in self.keys:
            answer = {"code": "duplicate_parameter", "message": "idempotencyKey is already used"}
            return 400, {}, json.dumps(answer)
        self.keys.add(key)
        self.delivered.append([person["email"] for person in body["to"]])
        return 201, {}, json.dumps({"messageId": f"<brevo-{len(self.delivered)}@relay>"})


class FakeResend:
    """Resend's idempotency: the same key with the same payload replays the first answer;
    with another payload it is 409 invalid_idempotent_request."""

    def __init__(self) -> None:
        self.delivered: list[list[str]] = []
        self.seen: dict[str, bytes] = {}

    def __call__(self, request: Any) -> tuple[int, dict[str, str], str]:
        key = request.headers["Idempotency-Key"]
        if key in self.seen:
            if self.seen[key] != request.body:
                answer = {
                    "statusCode": 409,
                    "name": "invalid_idempotent_request",
                    "message": "Same idempotency key used with a different payload",
                }
                return 409, {}, json.dumps(answer)
            return 200, {}, json.dumps({"id": "replayed"})
        self.seen[key] = request.body
        self.delivered.append(json.loads(request.body)["to"])
        return 200, {}, json.dumps({"id": f"re-{len(self.delivered)}"})


def _per_recipient_copies() -> list[Any]:
    """Copies of one message, one per recipient, that (wrongly, but possibly) keep its id."""
    original = simple_message(to=["ann@example.com", "bob@example.com"])
    return [original.replace(to=[r], message_id=original.message_id) for r in original.to]


def test_brevo_per_recipient_copies_are_each_delivered() -> None:
    fake = FakeBrevo()
    brevo = BrevoDriver(name="brevo", api_key="xkeysib-test", base_url="http://brevo.test")
    backup = MemoryDriver(name="backup")
    with responses.RequestsMock() as mock, FailoverMailer([brevo, backup]) as mailer:
        mock.add_callback(responses.POST, BREVO, callback=fake)
        results = [mailer.send(copy) for copy in _per_recipient_copies()]
    assert fake.delivered == [["ann@example.com"], ["bob@example.com"]]
    assert [r.message_id for r in results] == ["<brevo-1@relay>", "<brevo-2@relay>"]


def test_brevo_retry_of_the_same_message_is_still_delivered_once() -> None:
    """The other side of the rule: a retry of the very same message (after an ambiguous
    timeout) is answered "already used", which is a delivery, not a second mail."""
    fake = FakeBrevo()
    brevo = BrevoDriver(name="brevo", api_key="xkeysib-test", base_url="http://brevo.test")
    message = simple_message()
    with responses.RequestsMock() as mock, FailoverMailer([brevo]) as mailer:
        mock.add_callback(responses.POST, BREVO, callback=fake)
        first = mailer.send(message)
        again = mailer.send(message)
    assert fake.delivered == [["rcpt@example.com"]]
    assert first.driver == again.driver == "brevo"


def test_resend_per_recipient_copies_are_each_delivered() -> None:
    fake = FakeResend()
    resend = ResendDriver(name="resend", api_key="re_test", base_url="http://resend.test")
    with responses.RequestsMock() as mock, FailoverMailer([resend]) as mailer:
        mock.add_callback(responses.POST, RESEND, callback=fake)
        results = [mailer.send(copy) for copy in _per_recipient_copies()]
    assert fake.delivered == [["ann@example.com"], ["bob@example.com"]]
    assert [r.driver for r in results] == ["resend", "resend"]
