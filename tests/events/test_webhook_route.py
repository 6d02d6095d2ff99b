"""``POST /webhooks/<driver>`` on the Flask adapter: statuses, no API token, body limit,
and hostile bodies and headers never giving a 500 or a suppression."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfailover import FailoverMailer
from mailfailover.config import HttpConfig
from mailfailover.drivers.mailgun import MailgunDriver
from mailfailover.drivers.memory import MemoryDriver
from mailfailover.drivers.postmark import PostmarkDriver
from mailfailover.flask import create_app

KEY = "route-signing-key"
CREDENTIALS = "pm:secret"


def mailgun_body(event: str = "complained", *, key: str = KEY, token: str = "t" * 50) -> bytes:
    timestamp = str(int(time.time()))
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {"event": event, "recipient": "ann@example.com",
                       "timestamp": time.time(), "id": token[:10]},
    }).encode()  # fmt: skip


@pytest.fixture
def mailer() -> FailoverMailer:
    return FailoverMailer([
        MailgunDriver(name="mailgun", api_key="k", domain="mg.example.com",
                      webhook_signing_key=KEY, base_url="http://127.0.0.1:9"),
        PostmarkDriver(name="Postmark main", server_token="t", webhook_basic_auth=CREDENTIALS,
                       base_url="http://127.0.0.1:9"),
        PostmarkDriver(name="postmark-unconfigured", server_token="t"),
        MemoryDriver(name="memory"),
    ])  # fmt: skip


@pytest.fixture
def client(mailer: FailoverMailer) -> Any:
    http = HttpConfig(api_token="send-token", max_body_bytes=4096)
    return create_app(mailer, http=http).test_client()


def test_a_verified_webhook_is_200_without_the_api_token(client: Any, mailer: Any) -> None:
    body = mailgun_body()
    response = client.post("/webhooks/mailgun", data=body, content_type="application/json")
    assert response.status_code == 200
    assert response.get_json() == {"status": "handled", "events": 1}
    assert "ann@example.com" in mailer.suppressions
    again = client.post("/webhooks/mailgun", data=body, content_type="application/json")
    assert again.get_json() == {"status": "handled", "events": 0}


def test_a_driver_name_with_a_space_is_reachable(client: Any) -> None:
    delivery = {"RecordType": "Delivery", "MessageID": "x", "Recipient": "ann@example.com",
                "DeliveredAt": "2019-11-05T16:33:54Z"}  # fmt: skip
    auth = {"Authorization": "Basic cG06c2VjcmV0"}  # pm:secret
    response = client.post("/webhooks/Postmark%20main", json=delivery, headers=auth)
    assert response.status_code == 200


def test_a_bad_signature_is_401(client: Any, mailer: Any) -> None:
    response = client.post("/webhooks/mailgun", data=mailgun_body(key="wrong"),
                           content_type="application/json")  # fmt: skip
    assert response.status_code == 401
    assert response.get_json()["error"] == 7
    assert len(mailer.suppressions) == 0


def test_a_malformed_body_is_400(client: Any) -> None:
    response = client.post("/webhooks/mailgun", data=b"{not json", content_type="text/plain")
    assert response.status_code == 400


@pytest.mark.parametrize("name", ["nobody", "memory", "postmark-unconfigured"])
def test_unknown_or_unconfigured_drivers_are_404(client: Any, name: str) -> None:
    assert client.post(f"/webhooks/{name}", data=mailgun_body()).status_code == 404
    assert client.head(f"/webhooks/{name}").status_code == 404


def test_head_answers_for_a_configured_driver(client: Any) -> None:
    assert client.head("/webhooks/mailgun").status_code == 200


def test_other_methods_are_405(client: Any) -> None:
    assert client.get("/webhooks/mailgun").status_code == 405


def test_the_body_limit_applies(client: Any) -> None:
    response = client.post("/webhooks/mailgun", data=b"x" * 5000,
                           content_type="application/json")  # fmt: skip
    assert response.status_code == 413


HEADER_NAMES = st.sampled_from([
    "Authorization", "Content-Type", "X-Mandrill-Signature", "svix-id", "svix-timestamp",
    "svix-signature", "X-Twilio-Email-Event-Webhook-Signature", "x-amz-sns-rawdelivery",
    "X-Twilio-Email-Event-Webhook-Timestamp", "X-Anything",
])  # fmt: skip
HEADER_VALUES = st.text(
    st.characters(min_codepoint=32, max_codepoint=126), max_size=60
) | st.sampled_from(["Basic cG06c2VjcmV0x", "Basic " + "A" * 40, "Bearer x", "v1,AAAA", "true"])
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
BODIES = st.binary(max_size=300) | JSONISH.map(lambda v: json.dumps(v).encode()) | st.builds(
    lambda data: json.dumps({"signature": {"timestamp": "1", "token": "t", "signature": "s"},
                             "event-data": data}).encode(),
    JSONISH,
)  # fmt: skip


EVERY_PROVIDER = ["mailgun", "sendgrid", "postmark", "mandrill", "mailjet", "sparkpost",
                  "resend", "brevo", "ses"]  # fmt: skip


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[Any, FailoverMailer]]:
    """Every provider's driver with webhooks configured, behind the HTTP adapter."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = base64.b64encode(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()  # fmt: skip
    off = {"base_url": "http://127.0.0.1:9"}
    config = {"drivers": [
        {"name": "mailgun", "module": "mailgun", "settings": {
            "api_key": "k", "domain": "mg.example.com", "webhook_signing_key": KEY, **off}},
        {"name": "sendgrid", "module": "sendgrid", "settings": {
            "api_key": "k", "webhook_public_key": public, **off}},
        {"name": "postmark", "module": "postmark", "settings": {
            "server_token": "t", "webhook_basic_auth": CREDENTIALS, **off}},
        {"name": "Postmark main", "module": "postmark", "settings": {
            "server_token": "t", "webhook_basic_auth": CREDENTIALS, **off}},
        {"name": "mandrill", "module": "mandrill", "settings": {
            "api_key": "k", "webhook_key": "mandrill-key", **off}},
        {"name": "mailjet", "module": "mailjet", "settings": {
            "api_key": "k", "secret_key": "s", "webhook_basic_auth": CREDENTIALS, **off}},
        {"name": "sparkpost", "module": "sparkpost", "settings": {
            "api_key": "k", "webhook_basic_auth": CREDENTIALS, **off}},
        {"name": "resend", "module": "resend", "settings": {
            "api_key": "k", "webhook_secret": "whsec_c2VjcmV0", **off}},
        {"name": "brevo", "module": "brevo", "settings": {
            "api_key": "k", "webhook_basic_auth": CREDENTIALS, "webhook_token": "tok", **off}},
        {"name": "ses", "module": "ses", "settings": {
            "region": "us-east-1", "webhook_topic_arn": "arn:aws:sns:us-east-1:1:t",
            "webhook_confirm_subscriptions": True}},
        {"name": "memory", "module": "memory"},
    ]}  # fmt: skip
    mailer = FailoverMailer.from_config(config)
    try:
        yield create_app(mailer, http=HttpConfig(max_body_bytes=4096)).test_client(), mailer
    finally:
        mailer.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from([*EVERY_PROVIDER, "Postmark%20main", "memory", "nobody", "%00", "a/b"]),
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5),
    body=BODIES,
)
def test_hostile_requests_never_500_and_never_suppress(
    hostile: tuple[Any, FailoverMailer], name: str, headers: dict[str, str], body: bytes
) -> None:
    client, mailer = hostile
    with responses.RequestsMock(assert_all_requests_are_fired=False):  # no network, ever
        response = client.post(f"/webhooks/{name}", data=body, headers=headers)
    assert response.status_code in (400, 401, 404, 405, 413), response.get_data()
    assert response.get_json()["error"] in (2, 7, 9, 10)
    assert len(mailer.suppressions) == 0
