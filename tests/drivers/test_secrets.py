"""Secrets never reach error text or a traceback (issue 9, item 3).

A key with a stray CR/LF or surrounding space (copied from a CRLF ``.env`` file) is refused
when the configuration loads, naming the setting and never the value. And should one get
past that (defence in depth: the check is switched off here), no driver chains an
exception whose text shows it: the whole formatted traceback of what ``send`` raises,
causes and contexts included, is free of every fragment of the secret.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from socket_servers import replying_server

from mailfailover import ConfigError, DeliveryError, load_config
from mailfailover.config import build_driver
from mailfailover.driver import Driver, Setting
from mailfailover.registry import load_driver
from mailfailover.testing import simple_message

ServerFactory = Any

SECRET = "sk-live-7f3Q9zSECRET"
CRLF_SECRET = SECRET + "\r\n"

#: Every bundled driver with a secret setting, and the other settings it needs.
HTTP_DRIVERS: dict[str, dict[str, Any]] = {
    "brevo": {"api_key": CRLF_SECRET},
    "mailgun": {"api_key": CRLF_SECRET, "domain": "mg.example.com"},
    "mailjet": {"api_key": CRLF_SECRET, "secret_key": CRLF_SECRET},
    "mandrill": {"api_key": CRLF_SECRET},
    "postmark": {"server_token": CRLF_SECRET},
    "resend": {"api_key": CRLF_SECRET},
    "sendgrid": {"api_key": CRLF_SECRET},
    "sparkpost": {"api_key": CRLF_SECRET},
}


def _assert_secret_free(exc: BaseException) -> None:
    """No fragment of the secret in the formatted traceback, nor in any exception of the
    chain (walked whether or not it is shown), nor in the error's text and response."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(getattr(current, "response", None))]
        current = current.__cause__ or current.__context__
    for text in texts:
        assert SECRET not in text
        assert "7f3Q9z" not in text


@pytest.mark.parametrize(
    "value",
    [CRLF_SECRET, SECRET + "\r", SECRET + "\n", " " + SECRET, SECRET + " ", "sk-\x00live",
     "sk-live\x7f", "a\tb"],
)  # fmt: skip
@pytest.mark.parametrize("module", [*HTTP_DRIVERS, "ses", "smtp"])
def test_a_secret_with_control_characters_or_padding_is_refused_at_load(
    module: str, value: str
) -> None:
    """ConfigError names the setting and the driver, never the value."""
    settings: dict[str, Any] = {
        "ses": {"region": "us-east-1", "access_key_id": value, "secret_access_key": "x" * 20},
        "smtp": {"host": "127.0.0.1", "username": "u", "password": value},
    }.get(module) or {**HTTP_DRIVERS[module]}
    key = next(k for k, v in settings.items() if v is CRLF_SECRET or v == value)
    settings = {k: (value if k == key else v) for k, v in settings.items()}
    config = load_config({"drivers": [{"name": "d", "module": module, "settings": settings}]})
    with pytest.raises(ConfigError) as caught:
        build_driver(config.drivers[0])
    assert repr(key) in str(caught.value)
    assert "'d'" in str(caught.value)
    printable = re.sub(r"[\x00-\x1f\x7f]", "", value).strip()
    assert printable not in str(caught.value)


def test_every_secret_setting_of_every_driver_is_checked() -> None:
    """The check lives in Setting, so it covers every secret setting of every driver."""
    for module in [*HTTP_DRIVERS, "ses", "smtp"]:
        secrets = [k for k, s in load_driver(module).settings_spec.items() if s.secret]
        assert secrets, module
    with pytest.raises(ConfigError):
        Setting(secret=True).convert("token", "abc\r\n")
    assert Setting().convert("name", " padded ") == " padded "  # only secrets are strict


@pytest.fixture
def unchecked_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a secret that got past the load-time check."""
    monkeypatch.setattr("mailfailover.driver._check_secret", lambda key, value: None)


@pytest.mark.usefixtures("unchecked_secrets")
@pytest.mark.parametrize("module", list(HTTP_DRIVERS))
def test_no_http_driver_chains_a_secret_into_the_traceback(module: str) -> None:
    """requests refuses a header value with CR/LF with an InvalidHeader quoting the value:
    the driver reports it (reason 'bug', nothing sent) without the secret anywhere."""
    cls = load_driver(module)
    driver: Driver = cls(name="d", base_url="http://provider.test", **HTTP_DRIVERS[module])
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, re.compile(r"http://provider\.test/.*"), status=503,
                 body="down")  # fmt: skip
        with driver, pytest.raises(DeliveryError) as caught:
            driver.send(simple_message())
    _assert_secret_free(caught.value)


@pytest.fixture
def http_500_server() -> Iterator[int]:
    """A loopback server answering every HTTP request with a 500 (for botocore)."""
    with replying_server(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n") as port:
        yield port


@pytest.mark.usefixtures("unchecked_secrets", "aws_env")
def test_ses_never_chains_a_credential_into_the_traceback(http_500_server: int) -> None:
    """botocore quotes the signed Authorization header (``Credential=<access key id>``)
    when http.client refuses it: the driver scrubs it and does not chain it."""
    load_driver("ses")
    from mailfailover.drivers.ses import SESDriver

    driver = SESDriver(
        name="ses", region="us-east-1", access_key_id=CRLF_SECRET,
        secret_access_key=CRLF_SECRET, endpoint_url=f"http://127.0.0.1:{http_500_server}",
    )  # fmt: skip
    with driver, pytest.raises(DeliveryError) as caught:
        driver.send(simple_message())
    _assert_secret_free(caught.value)


@pytest.mark.usefixtures("unchecked_secrets")
def test_smtp_never_chains_a_password_into_the_traceback(
    smtp_server_factory: ServerFactory,
) -> None:
    """A password with CR/LF is refused by the server (535); nothing shows it."""
    from mailfailover.drivers.smtp import SMTPDriver

    server = smtp_server_factory(credentials=("mailer", SECRET), auth_require_tls=False)
    driver = SMTPDriver(
        name="smtp", host="127.0.0.1", port=server.port, security="none",
        allow_insecure_auth=True, username="mailer", password=CRLF_SECRET,
    )  # fmt: skip
    with driver, pytest.raises(DeliveryError) as caught:
        driver.send(simple_message())
    _assert_secret_free(caught.value)
