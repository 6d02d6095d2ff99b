"""Tests of the Acme driver: the shared contract, plus Acme's own payload and limits."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import responses
from mailfailover_acme import AcmeDriver

from mailfailover import Attachment, MessageRejected, ProviderUnavailable, UnsupportedFeature
from mailfailover.testing import DriverContractTests, simple_message

BASE_URL = "http://acme.test"
URL = f"{BASE_URL}/v1/messages"
API_KEY = "acme-test-key-7f3a"


@pytest.fixture(autouse=True)
def fake_acme() -> Iterator[responses.RequestsMock]:
    """Every request goes to a fake Acme API; nothing reaches the network."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make_acme(**settings: object) -> AcmeDriver:
    return AcmeDriver(name="acme", api_key=API_KEY, base_url=BASE_URL, **settings)


class TestAcmeContract(DriverContractTests):
    """The contract every mailfailover driver keeps, run against the fake Acme API."""

    secrets = (API_KEY,)

    @pytest.fixture(autouse=True)
    def _mock(self, fake_acme: responses.RequestsMock) -> None:
        self.mock = fake_acme

    def make_driver(self) -> AcmeDriver:
        return make_acme()

    def arrange_success(self) -> None:
        self.mock.add(responses.POST, URL, json={"id": "acme-1"}, status=202)

    def arrange_unavailable(self) -> None:
        self.mock.add(responses.POST, URL, json={"message": "maintenance"}, status=503)

    def arrange_rejection(self) -> None:
        self.mock.add(responses.POST, URL, json={"message": "bad recipient"}, status=422)

    def requests_made(self) -> int:
        return len(self.mock.calls)


def test_payload_maps_every_field(fake_acme: responses.RequestsMock) -> None:
    """The request carries the bearer token, the idempotency key and every message field."""
    fake_acme.add(responses.POST, URL, json={"id": "acme-42"}, status=202)
    message = simple_message(cc=["cc@example.com"], tags=["welcome"], metadata={"user": "7"})
    receipt = make_acme(sandbox=True).send(message)
    assert receipt.message_id == "acme-42"
    request = fake_acme.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == message.message_id
    assert json.loads(request.body) == {
        "from": "Sender <sender@example.com>",
        "to": ["rcpt@example.com"],
        "cc": ["cc@example.com"],
        "subject": "Hello",
        "text": "Hello there.",
        "tags": ["welcome"],
        "metadata": {"user": "7"},
        "headers": {"Message-ID": message.message_id},
        "sandbox": True,
    }


def test_attachments_are_unsupported_before_any_request(
    fake_acme: responses.RequestsMock,
) -> None:
    """A message with an attachment raises UnsupportedFeature and sends nothing."""
    message = simple_message(attachments=[Attachment("a.txt", b"hi")])
    with pytest.raises(UnsupportedFeature) as caught:
        make_acme().send(message)
    assert caught.value.field == "attachments"
    assert len(fake_acme.calls) == 0


def test_server_error_is_unavailable_and_client_error_is_rejection(
    fake_acme: responses.RequestsMock,
) -> None:
    """503 means fail over (with Retry-After read); 422 means the message is refused."""
    fake_acme.add(responses.POST, URL, status=503, headers={"Retry-After": "20"})
    fake_acme.add(responses.POST, URL, json={"message": "no such mailbox"}, status=422)
    driver = make_acme()
    with pytest.raises(ProviderUnavailable) as down:
        driver.send(simple_message())
    assert (down.value.status, down.value.retry_after) == (503, 20.0)
    with pytest.raises(MessageRejected, match="no such mailbox"):
        driver.send(simple_message())


def test_a_2xx_without_an_id_is_a_failure(fake_acme: responses.RequestsMock) -> None:
    """A 2xx that is not Acme's answer (a captive portal, a proxy page) is not a delivery."""
    fake_acme.add(responses.POST, URL, body="<html>hello</html>", status=200)
    with pytest.raises(ProviderUnavailable) as caught:
        make_acme().send(simple_message())
    assert caught.value.reason == "bad_response"
