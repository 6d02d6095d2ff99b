"""The ``ses`` driver against moto's in-process SES, botocore's Stubber, and loopback sockets.

Sections: request mapping, success and message id (what moto stored), each error class,
timeouts and connection errors, settings and secrets, the contract suite.
"""

from __future__ import annotations

import email
import email.policy
import json
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from mailfailover.driver import Driver, deadline_scope
from mailfailover.drivers.ses import SESDriver
from mailfailover.errors import (
    ConfigError,
    MessageRejected,
    MissingDependency,
    ProviderUnavailable,
    UnsupportedFeature,
)
from mailfailover.testing import (
    PDF_BYTES,
    PNG_BYTES,
    DriverContractTests,
    full_message,
    simple_message,
)

REGION = "us-east-1"
ACCESS_KEY = "AKIAMAILFAILOVERTEST"
SECRET_KEY = "mailfailover/secret+key/For/Tests0123456789"


def sent_messages() -> list[Any]:
    """What moto's SES stored (sesv2 shares the SES v1 backend's outbox)."""
    return list(ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages)


def parsed(raw: str) -> EmailMessage:
    message = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture
def moto_ses(aws_env: None) -> Iterator[None]:
    """An in-process SES (moto) where sender@example.com is a verified identity."""
    with mock_aws():
        boto3.client("ses", region_name=REGION).verify_email_identity(
            EmailAddress="sender@example.com"
        )
        yield


@pytest.fixture
def driver(moto_ses: None) -> Iterator[SESDriver]:
    with SESDriver(name="ses", region=REGION) as d:
        yield d


# -- request mapping ------------------------------------------------------------------------


def test_request_maps_envelope_tags_metadata_and_configuration_set(aws_env: None) -> None:
    """Destination holds every recipient (Bcc too); tags become EmailTags; metadata a header."""
    driver = SESDriver(name="ses", region=REGION, configuration_set="transactional")
    request = driver.build_request(full_message())
    assert request["FromEmailAddress"] == "sender@example.com"
    assert request["Destination"] == {
        "ToAddresses": [
            "ann@example.com", "bob@example.com", "cc1@example.com", "cc2@example.com",
            "bcc1@example.com", "bcc2@example.com",
        ]
    }  # fmt: skip
    assert request["EmailTags"] == [
        {"Name": "receipts", "Value": "true"},
        {"Name": "billing", "Value": "true"},
    ]
    assert request["ConfigurationSetName"] == "transactional"
    mime = email.message_from_bytes(request["Content"]["Raw"]["Data"], policy=email.policy.default)
    assert "Bcc" not in mime
    assert json.loads(str(mime["X-Metadata"])) == {"order": "A-17", "user_id": "42"}
    driver.close()


def test_idn_addresses_are_sent_as_punycode(aws_env: None) -> None:
    """Internationalised domains go to SES in IDNA form (SES takes ASCII addresses)."""
    driver = SESDriver(name="ses", region=REGION)
    request = driver.build_request(
        simple_message(sender="ann@bücher.example", to="bob@münchen.example")
    )
    assert request["FromEmailAddress"] == "ann@xn--bcher-kva.example"
    assert request["Destination"]["ToAddresses"] == ["bob@xn--mnchen-3ya.example"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tags": ["has space"]}, "tags"),
        ({"tags": ["ümlaut"]}, "tags"),
        ({"to": "zoë@example.com"}, "to"),
        ({"to": [f"r{n}@example.com" for n in range(51)]}, "to"),
        ({"metadata": {"a": "1"}, "headers": {"X-Metadata": "taken"}}, "metadata"),
    ],
)
def test_what_ses_cannot_carry_is_unsupported_before_any_request(
    driver: SESDriver, overrides: dict[str, Any], field: str
) -> None:
    """Bad tag characters, non-ASCII local parts, >50 recipients: UnsupportedFeature, no call."""
    with pytest.raises(UnsupportedFeature) as caught:
        driver.send(simple_message(**overrides))
    assert caught.value.field == field
    assert caught.value.driver == "ses"
    assert sent_messages() == []


# -- success --------------------------------------------------------------------------------


def test_verified_sender_delivers_the_raw_message_moto_stores(driver: SESDriver) -> None:
    """The receipt carries SES's MessageId; moto holds the exact MIME message and envelope."""
    receipt = driver.send(full_message())

    [stored] = sent_messages()
    assert receipt.driver == "ses"
    assert receipt.message_id == stored.id
    assert receipt.response == {"MessageId": stored.id}
    assert stored.source == "sender@example.com"
    # moto appends the header addresses to the Destination it was given.
    assert stored.destinations[:6] == [
        "ann@example.com", "bob@example.com", "cc1@example.com", "cc2@example.com",
        "bcc1@example.com", "bcc2@example.com",
    ]  # fmt: skip
    mime = parsed(stored.raw_data)
    assert "Bcc" not in mime
    assert "bcc1@example.com" not in stored.raw_data
    assert str(mime["Subject"]) == "Grüße — your receipt"
    assert mime["Message-ID"] == "<full-message-1@example.com>"
    parts = {part.get_filename(): part for part in mime.walk() if part.get_filename()}
    assert parts["Rechnung-ä.pdf"].get_content() == PDF_BYTES
    assert parts["logo.png"].get_content() == PNG_BYTES


# -- errors ---------------------------------------------------------------------------------


def test_unverified_sender_is_an_account_problem(driver: SESDriver) -> None:
    """moto answers MessageRejected "Email address not verified" for a sender that is not a
    verified identity: by the shared account rule that fails over (another provider may
    have the domain verified), it is not a rejection of the message."""
    with pytest.raises(ProviderUnavailable) as caught:
        driver.send(simple_message(sender="stranger@example.org"))
    assert caught.value.provider_code == "MessageRejected"
    assert caught.value.reason == "account"
    assert "stranger@example.org" in caught.value.detail
    assert sent_messages() == []


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("MessageRejected", "Email address is not verified. The following identities failed "
         "the check in region US-EAST-1: sender@example.com", "account"),
        ("MessageRejected", "Illegal address", None),
        ("MessageRejected", "Message length is more than 10485760 bytes long", None),
        ("MailFromDomainNotVerifiedException", "nope", "account"),
        ("BadRequestException", "Account is in sandbox mode", "account"),
    ],
)  # fmt: skip
def test_message_rejected_follows_the_shared_account_rule(
    aws_env: None, code: str, message: str, reason: str | None
) -> None:
    """MessageRejected is a rejection unless its reason is an account problem."""
    driver = SESDriver(name="ses", region=REGION)
    with Stubber(driver.client) as stub:
        stub.add_client_error(
            "send_email", service_error_code=code, service_message=message, http_status_code=400
        )
        with pytest.raises((ProviderUnavailable, MessageRejected)) as caught:
            driver.send(simple_message())
    if reason is None:
        assert type(caught.value) is MessageRejected
    else:
        assert isinstance(caught.value, ProviderUnavailable)
        assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("code", "status", "error", "reason"),
    [
        ("TooManyRequestsException", 429, ProviderUnavailable, "rate_limited"),
        ("Throttling", 400, ProviderUnavailable, "rate_limited"),
        ("LimitExceededException", 400, ProviderUnavailable, "rate_limited"),
        ("SendingPausedException", 400, ProviderUnavailable, "account"),
        ("AccountSuspendedException", 400, ProviderUnavailable, "account"),
        ("NotFoundException", 404, ProviderUnavailable, "account"),
        ("UnrecognizedClientException", 403, ProviderUnavailable, "auth"),
        ("SignatureDoesNotMatch", 403, ProviderUnavailable, "auth"),
        ("ExpiredTokenException", 403, ProviderUnavailable, "auth"),
        ("InternalFailure", 500, ProviderUnavailable, "server_error"),
        ("ServiceUnavailable", 503, ProviderUnavailable, "server_error"),
        ("MessageRejected", 400, MessageRejected, None),
        ("MailFromDomainNotVerifiedException", 400, ProviderUnavailable, "account"),
        ("BadRequestException", 400, MessageRejected, None),
    ],
)
def test_botocore_error_codes_are_classified(
    aws_env: None, code: str, status: int, error: type[Exception], reason: str | None
) -> None:
    """Each SendEmail error code from botocore's sesv2 model maps to our error and reason."""
    driver = SESDriver(name="ses", region=REGION)
    with Stubber(driver.client) as stub:
        stub.add_client_error(
            "send_email", service_error_code=code, service_message="nope", http_status_code=status
        )
        with pytest.raises(error) as caught:
            driver.send(simple_message())
    assert type(caught.value) is error
    assert caught.value.provider_code == code  # type: ignore[attr-defined]
    assert caught.value.status == status  # type: ignore[attr-defined]
    if reason is not None:
        assert caught.value.reason == reason  # type: ignore[attr-defined]
        assert caught.value.ambiguous is False  # type: ignore[attr-defined]


def test_provider_text_never_shows_the_configured_keys(aws_env: None) -> None:
    """A signature error echoing the access key is scrubbed from the error text."""
    driver = SESDriver(
        name="ses", region=REGION, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY
    )
    with Stubber(driver.client) as stub:
        stub.add_client_error(
            "send_email",
            service_error_code="SignatureDoesNotMatch",
            service_message=f"Credential={ACCESS_KEY}/20260101/us-east-1/ses; key {SECRET_KEY}",
            http_status_code=403,
        )
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
    for text in (str(caught.value), repr(caught.value.response), repr(driver)):
        assert ACCESS_KEY not in text
        assert SECRET_KEY not in text


def test_answer_without_message_id_is_a_bad_response(aws_env: None) -> None:
    """A success without a MessageId is not trusted as a delivery."""
    driver = SESDriver(name="ses", region=REGION)
    with Stubber(driver.client) as stub:
        stub.add_response("send_email", {})
        with pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
    assert caught.value.reason == "bad_response"


def test_no_credentials_anywhere_is_unavailable_auth(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without any credentials in the chain the send fails over with reason 'auth'."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with (
        SESDriver(name="ses", region=REGION) as driver,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        driver.send(simple_message())
    assert caught.value.reason == "auth"


# -- timeouts and connection errors (real sockets on loopback) -------------------------------


def test_endpoint_not_listening_is_unavailable_not_ambiguous(
    aws_env: None, closed_port: int
) -> None:
    """Connection refused at the endpoint: fail over, nothing was sent."""
    with (
        SESDriver(
            name="ses", region=REGION, endpoint_url=f"http://127.0.0.1:{closed_port}"
        ) as driver,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        driver.send(simple_message())
    assert caught.value.reason == "connection"
    assert caught.value.ambiguous is False


def test_read_timeout_is_ambiguous(aws_env: None, silent_server: tuple[str, int]) -> None:
    """The request went out and no answer came back in time: ambiguous."""
    host, port = silent_server
    with (
        SESDriver(
            name="ses", region=REGION, endpoint_url=f"http://{host}:{port}", timeout=0.5
        ) as driver,
        pytest.raises(ProviderUnavailable) as caught,
    ):
        driver.send(simple_message())
    assert caught.value.reason == "timeout"
    assert caught.value.ambiguous is True


def test_deadline_shortens_the_read_timeout(aws_env: None, silent_server: tuple[str, int]) -> None:
    """Inside a mailer deadline the client's timeouts are cut to what is left of it."""
    host, port = silent_server
    with SESDriver(
        name="ses", region=REGION, endpoint_url=f"http://{host}:{port}", timeout=60
    ) as driver:
        with deadline_scope(0.5), pytest.raises(ProviderUnavailable) as caught:
            driver.send(simple_message())
        [short] = driver._short_clients.values()
        assert short.meta.config.read_timeout == 1
    assert caught.value.reason == "timeout"


# -- settings and packaging -----------------------------------------------------------------


def test_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without boto3 the driver says exactly what to install."""
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingDependency) as caught:
        SESDriver(name="ses", region=REGION)
    assert 'pip install "mailfailover[ses]"' in str(caught.value)


def test_half_a_key_pair_is_a_config_error(aws_env: None) -> None:
    """access_key_id without secret_access_key is caught at construction, without the key."""
    with pytest.raises(ConfigError) as caught:
        SESDriver(name="ses", region=REGION, access_key_id=ACCESS_KEY)
    assert ACCESS_KEY not in str(caught.value)


def test_unknown_profile_is_a_config_error(aws_env: None) -> None:
    """A profile that does not exist is a ConfigError at construction."""
    with pytest.raises(ConfigError) as caught:
        SESDriver(name="ses", region=REGION, profile="no-such-profile")
    assert "no-such-profile" in str(caught.value)


def test_region_is_required() -> None:
    """region has no default."""
    with pytest.raises(ConfigError) as caught:
        SESDriver(name="ses")
    assert "region" in str(caught.value)


def test_repr_hides_every_key(aws_env: None) -> None:
    """repr() shows the region, never the access key id, secret or session token."""
    driver = SESDriver(
        name="ses", region=REGION, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
        session_token="tok-SECRET-123",
    )  # fmt: skip
    text = repr(driver)
    assert REGION in text
    for secret in (ACCESS_KEY, SECRET_KEY, "tok-SECRET-123"):
        assert secret not in text


# -- the contract ---------------------------------------------------------------------------


class TestSESContract(DriverContractTests):
    """The shared driver contract against moto (and a Stubber for the transient failure);
    also through asend (SES then runs in a thread)."""

    colours = ("sync", "async")
    secrets = (ACCESS_KEY, SECRET_KEY)

    @pytest.fixture(autouse=True)
    def _moto(self, aws_env: None) -> Iterator[None]:
        with mock_aws():
            self.stubber: Stubber | None = None
            yield
            if self.stubber is not None:
                self.stubber.deactivate()

    def make_driver(self) -> Driver:
        self.driver = SESDriver(
            name="contract-ses", region=REGION, access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
        )  # fmt: skip
        return self.driver

    def arrange_success(self) -> None:
        boto3.client("ses", region_name=REGION).verify_email_identity(
            EmailAddress="sender@example.com"
        )

    def arrange_unavailable(self) -> None:
        self.stubber = Stubber(self.driver.client)
        self.stubber.add_client_error(
            "send_email", service_error_code="TooManyRequestsException", http_status_code=429
        )
        self.stubber.activate()

    def arrange_rejection(self) -> None:
        """SES refusing the message itself (an unverified sender is an account problem,
        which fails over, so it is no rejection)."""
        self.stubber = Stubber(self.driver.client)
        self.stubber.add_client_error(
            "send_email", service_error_code="MessageRejected",
            service_message="Illegal address", http_status_code=400,
        )  # fmt: skip
        self.stubber.activate()

    def requests_made(self) -> int:
        return len(sent_messages())


# -- failover end to end: SMTP in front of SES ------------------------------------------------


def test_smtp_going_down_mid_batch_fails_over_to_ses_exactly_once(
    moto_ses: None, smtp_server_factory: Any
) -> None:
    """An SMTP server that crashes after 20 of 60 messages: the rest go through SES, and
    every message is delivered exactly once across the two (counted on both servers)."""
    from mailfailover.drivers.smtp import SMTPDriver
    from mailfailover.mailer import FailoverMailer, SendResult
    from mailfailover.testing import FakeClock

    server = smtp_server_factory()
    server.handler.down_after = 20
    smtp = SMTPDriver(name="smtp", host="127.0.0.1", port=server.port, security="none", timeout=5)
    ses = SESDriver(name="ses", region=REGION)
    messages = [
        simple_message(subject=f"batch {n}", message_id=f"<batch-{n}@example.com>")
        for n in range(60)
    ]
    with FailoverMailer([smtp, ses], failure_threshold=2, cooldown=30.0, clock=FakeClock()) as m:
        results = m.send_many(messages, workers=4)

    assert all(isinstance(r, SendResult) for r in results), results
    via_smtp = [parsed(r.content.decode())["Message-ID"] for r in server.handler.messages]
    via_ses = [parsed(stored.raw_data)["Message-ID"] for stored in sent_messages()]
    assert len(via_smtp) == 20
    assert sorted(via_smtp + via_ses) == sorted(m.message_id for m in messages)
    drivers = {r.message_id: r.driver for r in results if isinstance(r, SendResult)}
    assert sum(1 for r in results if isinstance(r, SendResult) and r.driver == "smtp") == 20
    assert len(drivers) == 60


def test_missing_boto3_names_the_driver_and_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """From a configuration, the error names the configured driver, its module and the file,
    not only the package (issue 9, item 16)."""
    from mailfailover import load_config
    from mailfailover.config import build_driver

    path = tmp_path / "mail.yml"
    path.write_text(
        "drivers:\n  - name: Primary SES\n    module: ses\n    settings: {region: us-east-1}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingDependency) as caught:
        build_driver(config.drivers[0])
    text = str(caught.value)
    assert "'boto3' is not installed; the 'ses' driver needs it" in text
    assert 'pip install "mailfailover[ses]"' in text
    assert "driver 'Primary SES'" in text
    assert str(path) in text
    assert (caught.value.driver, caught.value.source) == ("Primary SES", str(path))
