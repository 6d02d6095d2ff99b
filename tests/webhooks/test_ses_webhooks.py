"""SES notifications through SNS: signature versions 1 and 2 checked against a certificate
from a throwaway CA, served (once) at an sns.<region>.amazonaws.com URL through `responses`.

Notification payloads follow AWS's own examples:
https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html (identity notifications)
https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html
(configuration-set events); the SNS envelope and its signature:
https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from webhook_support import NOW, basic, refused, utc

from mailfailover.drivers.ses import SESDriver
from mailfailover.webhooks.ses import clear_certificate_cache, is_sns_url

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000.pem"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
    + TOPIC
    + "&Token=2336412f37"
)
URL = "https://hooks.example.com/webhooks/ses"

CA = trustme.CA(key_type=trustme.KeyType.RSA)
LEAF = CA.issue_cert("sns.amazonaws.com", key_type=trustme.KeyType.RSA)
KEY = serialization.load_pem_private_key(LEAF.private_key_pem.bytes(), password=None)
CERT_PEM = LEAF.cert_chain_pems[0].bytes()

MAIL = {
    "timestamp": "2016-01-27T14:05:45.000Z",
    "messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
    "source": "john@example.com",
    "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
    "sendingAccountId": "123456789012",
    "destination": ["jane@example.com", "mary@example.com", "richard@example.com"],
    "headersTruncated": False,
    "tags": {"ses:configuration-set": ["ConfigSet"], "campaign": ["welcome"]},
}
BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent", "reportingMTA": "dns; email.example.com",
        "bouncedRecipients": [{"emailAddress": "jane@example.com", "status": "5.1.1",
                               "action": "failed",
                               "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User"}],
        "bounceSubType": "General", "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
        "remoteMtaIp": "127.0.2.0",
    },
    "mail": MAIL,
}  # fmt: skip
TRANSIENT = {**BOUNCE, "bounce": {**BOUNCE["bounce"], "bounceType": "Transient",
                                  "bounceSubType": "MailboxFull"}}  # fmt: skip
COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {"userAgent": "AnyCompany Feedback Loop (V0.01)",
                  "complainedRecipients": [{"emailAddress": "richard@example.com"}],
                  "complaintFeedbackType": "abuse", "arrivalDate": "2016-01-27T14:59:38.237Z",
                  "timestamp": "2016-01-27T14:59:38.237Z",
                  "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"},
    "mail": MAIL,
}  # fmt: skip
DELIVERY = {
    "notificationType": "Delivery",
    "delivery": {"timestamp": "2016-01-27T14:59:38.237Z", "processingTimeMillis": 546,
                 "recipients": ["jane@example.com", "mary@example.com"],
                 "smtpResponse": "250 ok:  Message 64111812 accepted",
                 "reportingMTA": "a8-70.smtp-out.amazonses.com", "remoteMtaIp": "127.0.2.0"},
    "mail": MAIL,
}  # fmt: skip
EVENTS = {  # configuration-set event publishing ("eventType")
    "Send": ({"eventType": "Send", "mail": MAIL, "send": {}}, "queued"),
    "Reject": ({"eventType": "Reject", "mail": MAIL, "reject": {"reason": "Bad content"}},
               "rejected"),
    "Open": ({"eventType": "Open", "mail": MAIL, "open": {
        "ipAddress": "192.0.2.1", "timestamp": "2017-08-09T22:00:19.652Z",
        "userAgent": "Mozilla/5.0"}}, "opened"),
    "Click": ({"eventType": "Click", "mail": MAIL, "click": {
        "ipAddress": "192.0.2.1", "link": "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/",
        "linkTags": {"samplekey0": ["samplevalue0"]},
        "timestamp": "2017-08-09T23:51:25.570Z", "userAgent": "Mozilla/5.0"}}, "clicked"),
    "Rendering Failure": ({"eventType": "Rendering Failure", "mail": MAIL, "failure": {
        "errorMessage": "Attribute 'attributeName' is not present in the rendering data.",
        "templateName": "MyTemplate"}}, "failed"),
    "DeliveryDelay": ({"eventType": "DeliveryDelay", "mail": MAIL, "deliveryDelay": {
        "timestamp": "2020-06-16T00:15:40.641Z", "delayType": "InternalFailure",
        "expirationTime": "2020-06-16T00:25:40.914Z",
        "delayedRecipients": [{"emailAddress": "recipient@example.com", "status": "4.0.0",
                               "diagnosticCode": "smtp; 421 4.4.0 Unable to lookup DNS"}]}},
        "deferred"),
    "Subscription": ({"eventType": "Subscription", "mail": MAIL, "subscription": {
        "contactList": "SystemMonitor-Canary", "timestamp": "2022-01-12T01:00:14.340Z"}},
        "unknown"),
}  # fmt: skip
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}  # fmt: skip


@pytest.fixture(autouse=True)
def sns() -> Iterator[responses.RequestsMock]:
    clear_certificate_cache()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(CERT_URL, body=CERT_PEM)
        yield mock
    clear_certificate_cache()


def driver(**settings: Any) -> SESDriver:
    settings.setdefault("webhook_topic_arn", TOPIC)
    return SESDriver(name="ses", region="us-east-1", **settings)


@functools.cache
def default_driver() -> SESDriver:
    """Building an SES driver builds a boto3 client (slow): the plain one is shared."""
    return driver()


def envelope(
    message: Any, *, kind: str = "Notification", version: str = "1", **extra: Any
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "Type": kind,
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2016-01-27T14:59:38.237Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        **extra,
    }
    if kind != "Notification":
        env.pop("Subject")
        env.setdefault("Token", "2336412f37")
        env.setdefault("SubscribeURL", SUBSCRIBE_URL)
    return sign(env)


def sign(env: dict[str, Any]) -> dict[str, Any]:
    text = "".join(f"{k}\n{env[k]}\n" for k in SIGNED[env["Type"]] if k in env)
    algorithm = hashes.SHA1() if env["SignatureVersion"] == "1" else hashes.SHA256()
    signature = KEY.sign(text.encode(), padding.PKCS1v15(), algorithm)  # type: ignore[union-attr, call-arg]
    return {**env, "Signature": base64.b64encode(signature).decode()}


def parse(env: Any, headers: dict[str, str] | None = None, ses: Any = None) -> list[Any]:
    body = env if isinstance(env, bytes) else json.dumps(env).encode()
    headers = {"x-amz-sns-message-type": "Notification"} if headers is None else headers
    return list((ses or default_driver()).parse_webhook(headers, body, URL, now=NOW))


# -- events -------------------------------------------------------------------------------


def test_permanent_bounce_is_hard() -> None:
    [event] = parse(envelope(BOUNCE))
    assert (event.type, event.bounce) == ("bounced", "hard")
    assert event.driver == "ses"
    assert event.recipient == "jane@example.com"
    assert event.timestamp == utc(2016, 1, 27, 14, 59, 38, 237000)
    assert event.message_id == MAIL["messageId"]
    assert event.reason == "Permanent/General"
    assert event.mta_response == "smtp; 550 5.1.1 <jane@example.com>... User"
    assert event.tags == ("campaign:welcome",)
    assert event.suppression_reason == "bounced"


def test_transient_bounce_is_soft() -> None:
    [event] = parse(envelope(TRANSIENT))
    assert (event.type, event.bounce) == ("bounced", "soft")
    assert event.suppression_reason is None


def test_complaint() -> None:
    [event] = parse(envelope(COMPLAINT))
    assert (event.type, event.recipient, event.reason) == (
        "complained",
        "richard@example.com",
        "abuse",
    )


def test_delivery_gives_one_event_per_recipient() -> None:
    events = parse(envelope(DELIVERY))
    assert [(e.type, e.recipient) for e in events] == [
        ("delivered", "jane@example.com"), ("delivered", "mary@example.com")
    ]  # fmt: skip
    assert events[0].mta_response == "250 ok:  Message 64111812 accepted"
    assert len({e.event_id for e in events}) == 2


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_configuration_set_events(name: str) -> None:
    data, kind = EVENTS[name]
    events = parse(envelope(data))
    assert {e.type for e in events} == {kind}
    if kind == "clicked":
        assert events[0].url == "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/"


def test_configuration_set_bounce() -> None:
    data = {**BOUNCE, "eventType": "Bounce"}
    del data["notificationType"]
    [event] = parse(envelope(data))
    assert (event.type, event.bounce) == ("bounced", "hard")


def test_an_unknown_notification_is_unknown() -> None:
    [event] = parse(envelope({"notificationType": "AmazonSnsSubscriptionSucceeded",
                              "message": "You have successfully subscribed"}))  # fmt: skip
    assert event.type == "unknown"
    assert event.timestamp == utc(2016, 1, 27, 14, 59, 38, 237000)


# -- signature ----------------------------------------------------------------------------


def test_signature_version_2(sns: responses.RequestsMock) -> None:
    assert parse(envelope(BOUNCE, version="2"))[0].bounce == "hard"


def test_the_certificate_is_fetched_once(sns: responses.RequestsMock) -> None:
    ses = driver()
    for _ in range(3):
        parse(envelope(BOUNCE), ses=ses)
    assert [c.request.url for c in sns.calls] == [CERT_URL]


def test_a_tampered_message_is_refused() -> None:
    env = envelope(BOUNCE)
    env["Message"] = env["Message"].replace("jane@", "victim@")
    refused(lambda: parse(env))


@pytest.mark.parametrize("field", ["Timestamp", "MessageId", "Subject", "Type"])
def test_a_tampered_signed_field_is_refused(field: str) -> None:
    env = envelope(BOUNCE)
    env[field] = "SubscriptionConfirmation" if field == "Type" else env[field] + "x"
    with pytest.raises(Exception) as info:
        parse(env)
    assert getattr(info.value, "status", None) in (400, 401)


def test_a_tampered_signature_is_refused() -> None:
    env = envelope(BOUNCE)
    raw = bytearray(base64.b64decode(env["Signature"]))
    raw[10] ^= 1
    env["Signature"] = base64.b64encode(bytes(raw)).decode()
    refused(lambda: parse(env))


def test_a_version_mismatch_is_refused() -> None:
    env = envelope(BOUNCE, version="1")
    env["SignatureVersion"] = "2"
    refused(lambda: parse(env))


def test_another_key_with_a_valid_looking_certificate_is_refused(
    sns: responses.RequestsMock,
) -> None:
    other = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert(
        "sns.amazonaws.com", key_type=trustme.KeyType.RSA
    )
    other_url = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1111.pem"
    sns.get(other_url, body=other.cert_chain_pems[0].bytes())
    env = envelope(BOUNCE)
    env["SigningCertURL"] = other_url
    refused(lambda: parse(env))


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://user@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sqs.us-east-1.amazonaws.com/cert.pem",
        "https://snsXus-east-1.amazonaws.com/cert.pem",
        "https://sns.amazonaws.com/cert.pem",
        "",
    ],
)
def test_a_certificate_url_off_the_sns_hosts_is_refused_unfetched(
    url: str, sns: responses.RequestsMock
) -> None:
    assert not is_sns_url(url)
    env = envelope(BOUNCE)
    env["SigningCertURL"] = url
    refused(lambda: parse(env))
    assert len(sns.calls) == 0


def test_regional_hosts_are_accepted() -> None:
    for region in ("us-east-1", "eu-central-2", "ap-southeast-4", "us-gov-west-1"):
        assert is_sns_url(f"https://sns.{region}.amazonaws.com/SimpleNotificationService-x.pem")


def test_a_topic_not_configured_is_refused_before_any_fetch(sns: responses.RequestsMock) -> None:
    env = envelope(BOUNCE)
    env["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:attacker"
    refused(lambda: parse(sign(env)))
    assert len(sns.calls) == 0


def test_a_certificate_that_cannot_be_fetched_is_refused(sns: responses.RequestsMock) -> None:
    url = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-2222.pem"
    sns.get(url, status=404)
    env = envelope(BOUNCE)
    env["SigningCertURL"] = url
    refused(lambda: parse(sign(env)))


def test_unsigned_is_refused() -> None:
    env = envelope(BOUNCE)
    del env["Signature"]
    refused(lambda: parse(env))


# -- subscription confirmation ------------------------------------------------------------


def test_a_subscription_is_not_confirmed_unless_configured(
    sns: responses.RequestsMock, mf_logs: pytest.LogCaptureFixture
) -> None:
    sns.get(SUBSCRIBE_URL, body="<ConfirmSubscriptionResponse/>")
    assert parse(envelope("You have chosen to subscribe", kind="SubscriptionConfirmation")) == []
    assert [c.request.url for c in sns.calls] == [CERT_URL]
    assert "not confirmed" in mf_logs.text


def test_a_subscription_is_confirmed_when_configured(sns: responses.RequestsMock) -> None:
    sns.get(SUBSCRIBE_URL, body="<ConfirmSubscriptionResponse/>")
    ses = driver(webhook_confirm_subscriptions=True)
    env = envelope("You have chosen to subscribe", kind="SubscriptionConfirmation")
    assert parse(env, ses=ses) == []
    assert [c.request.url for c in sns.calls] == [CERT_URL, SUBSCRIBE_URL]


def test_a_confirmation_pointing_elsewhere_is_not_followed(sns: responses.RequestsMock) -> None:
    ses = driver(webhook_confirm_subscriptions=True)
    env = envelope("x", kind="SubscriptionConfirmation", SubscribeURL="https://evil.example/x")
    refused(lambda: parse(env, ses=ses))
    assert [c.request.url for c in sns.calls] == [CERT_URL]


def test_a_forged_confirmation_is_not_followed(sns: responses.RequestsMock) -> None:
    ses = driver(webhook_confirm_subscriptions=True)
    env = envelope("x", kind="SubscriptionConfirmation")
    env["Token"] = "tampered"
    refused(lambda: parse(env, ses=ses))
    assert [c.request.url for c in sns.calls] == [CERT_URL]


# -- raw message delivery and basic auth --------------------------------------------------

RAW_HEADERS = {
    "x-amz-sns-message-type": "Notification",
    "x-amz-sns-message-id": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
    "x-amz-sns-topic-arn": TOPIC,
    "x-amz-sns-rawdelivery": "true",
}


def test_raw_delivery_needs_basic_auth_configured() -> None:
    refused(lambda: parse(BOUNCE, RAW_HEADERS))


def test_raw_delivery_with_basic_auth() -> None:
    ses = driver(webhook_basic_auth="sns:pass")
    [event] = parse(BOUNCE, {**RAW_HEADERS, **basic("sns:pass")}, ses=ses)
    assert (event.type, event.bounce, event.recipient) == ("bounced", "hard", "jane@example.com")
    refused(lambda: parse(BOUNCE, {**RAW_HEADERS, **basic("sns:nope")}, ses=ses))
    refused(lambda: parse(BOUNCE, RAW_HEADERS, ses=ses))
    other_topic = {**RAW_HEADERS, **basic("sns:pass"), "x-amz-sns-topic-arn": "arn:x"}
    refused(lambda: parse(BOUNCE, other_topic, ses=ses))


def test_basic_auth_when_set_is_also_required_on_signed_messages() -> None:
    ses = driver(webhook_basic_auth="sns:pass")
    refused(lambda: parse(envelope(BOUNCE), ses=ses))
    assert parse(envelope(BOUNCE), basic("sns:pass"), ses=ses)


def test_signed_garbage_is_malformed() -> None:
    refused(lambda: parse(envelope("not json")), 400)
    refused(lambda: parse(envelope({"notificationType": "Bounce", "mail": MAIL})), 400)


def test_without_cryptography_loading_the_config_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from mailfailover.errors import MissingDependency

    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(MissingDependency, match=r"mailfailover\[webhooks\]"):
        driver()
