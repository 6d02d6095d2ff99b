"""Every driver follows the one shared rule for account problems (docs/errors.md).

For each HTTP provider: its own documented "this account may not send as this sender"
answer, and a refusal outside its error table whose reason is an account problem by the
shared pattern, both fail over as ``ProviderUnavailable(reason="account")``; a refusal of
the message itself stays ``MessageRejected``. (SES and SMTP are tested in their own modules
against moto and aiosmtpd: ``test_message_rejected_follows_the_shared_account_rule`` and
``test_refused_sender_follows_the_shared_account_rule``.)
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import responses

from mailfailover import MessageRejected, ProviderUnavailable
from mailfailover.driver import ACCOUNT_PROBLEM, is_account_problem
from mailfailover.registry import load_driver
from mailfailover.testing import simple_message

SETTINGS: dict[str, dict[str, Any]] = {
    "brevo": {"api_key": "k-123456"},
    "mailgun": {"api_key": "k-123456", "domain": "mg.example.com"},
    "mailjet": {"api_key": "k-123456", "secret_key": "s-123456"},
    "mandrill": {"api_key": "k-123456"},
    "postmark": {"server_token": "k-123456"},
    "resend": {"api_key": "k-123456"},
    "sendgrid": {"api_key": "k-123456"},
    "sparkpost": {"api_key": "k-123456"},
}


def _mailjet(status: int, code: str, text: str) -> dict[str, Any]:
    error = {"ErrorCode": code, "StatusCode": status, "ErrorMessage": text}
    return {"Messages": [{"Status": "error", "Errors": [error]}]}


#: (provider, status, JSON body, expected reason or None for a rejection)
CASES: list[tuple[str, str, int, Any, str | None]] = [
    # each provider's own documented answer for an unverified / unauthorised sender
    ("brevo", "own", 400, {"code": "invalid_parameter", "message": "The sender you used to "
     "send this email is not valid. Validate your sender or authenticate your domain"},
     "account"),
    ("mailgun", "own", 403, {"message": "Domain mg.example.com is not allowed to send: Free "
     "accounts are for test purposes only."}, "account"),
    ("mailjet", "own", 403, _mailjet(403, "send-0008", 'sender@example.com is not an '
     "authorized sender."), "account"),
    ("mandrill", "own", 500, {"status": "error", "code": -1, "name": "Unknown_Sender",
     "message": "No such sender"}, "account"),
    ("postmark", "own", 422, {"ErrorCode": 400, "Message": "The 'From' address you supplied "
     "(sender@example.com) is not a Sender Signature on your account."}, "account"),
    ("resend", "own", 403, {"statusCode": 403, "name": "validation_error", "message": "The "
     "example.com domain is not verified. Please, add and verify your domain."}, "account"),
    ("sendgrid", "own", 403, {"errors": [{"message": "The from address does not match a "
     "verified Sender Identity.", "field": "from"}]}, "account"),
    ("sparkpost", "own", 400, {"errors": [{"message": "Invalid domain", "description":
     "Unconfigured or unverified sending domain.", "code": "7001"}]}, "account"),
    # a refusal outside the provider's table: the shared pattern decides
    ("brevo", "rule", 400, {"code": "permission_denied", "message": "Your account is "
     "suspended"}, "account"),
    ("mailgun", "rule", 400, {"message": "Sender identity is not verified"}, "account"),
    ("mailjet", "rule", 400, _mailjet(400, "send-0099", "Your account is under review"),
     "account"),
    ("mandrill", "rule", 400, {"status": "error", "code": 99, "name": "Some_New_Error",
     "message": "Your account has been suspended"}, "account"),
    ("postmark", "rule", 422, {"ErrorCode": 999, "Message": "Your account has run out of "
     "credits"}, "account"),
    ("resend", "rule", 422, {"statusCode": 422, "name": "validation_error", "message":
     "You can only send testing emails to your own email address"}, "account"),
    ("sendgrid", "rule", 400, {"errors": [{"message": "The from address does not match a "
     "verified Sender Identity.", "field": "from"}]}, "account"),
    ("sparkpost", "rule", 400, {"errors": [{"message": "Account suspended", "code": "9999"}]},
     "account"),
    # a refusal of the message itself is still a rejection
    ("brevo", "message", 400, {"code": "invalid_parameter", "message": "email is not valid in "
     "to"}, None),
    ("mailgun", "message", 400, {"message": "to parameter is not a valid address"}, None),
    ("mailjet", "message", 400, _mailjet(400, "send-0003", "At least one recipient is "
     "required"), None),
    ("mandrill", "message", 500, {"status": "error", "code": -2, "name": "ValidationError",
     "message": "Validation error: to is invalid"}, None),
    ("postmark", "message", 422, {"ErrorCode": 300, "Message": "Invalid 'To' address"}, None),
    ("resend", "message", 422, {"statusCode": 422, "name": "validation_error", "message":
     "Invalid `to` field"}, None),
    ("sendgrid", "message", 400, {"errors": [{"message": "Does not contain a valid address.",
     "field": "personalizations.0.to.0.email"}]}, None),
    ("sparkpost", "message", 422, {"errors": [{"message": "invalid data format/type",
     "code": "1300"}]}, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("module", "status", "body", "reason"),
    [case[:1] + case[2:] for case in CASES],
    ids=[f"{case[0]}-{case[1]}" for case in CASES],
)
def test_every_http_driver_follows_the_account_rule(
    module: str, status: int, body: Any, reason: str | None
) -> None:
    driver = load_driver(module)(name="d", base_url="http://provider.test", **SETTINGS[module])
    with responses.RequestsMock() as mock, driver:
        mock.add(responses.POST, re.compile(r"http://provider\.test/.*"), status=status,
                 json=body)  # fmt: skip
        with pytest.raises((ProviderUnavailable, MessageRejected)) as caught:
            driver.send(simple_message())
    if reason is None:
        assert type(caught.value) is MessageRejected, caught.value
    else:
        assert isinstance(caught.value, ProviderUnavailable), caught.value
        assert caught.value.reason == reason
    assert caught.value.driver == "d"


@pytest.mark.parametrize(
    "text",
    [
        "Email address is not verified. The following identities failed the check",
        "The from address does not match a verified Sender Identity",
        "Your account has been suspended", "Account disabled", "sending paused",
        "Not enough credits", "Payment required", "Please upgrade your plan",
        "Sandbox subdomains are for test purposes only", "not allowed to send",
        "Sender address rejected: not owned by user", "account under review",
    ],
)  # fmt: skip
def test_the_shared_pattern_recognises_account_problems(text: str) -> None:
    assert is_account_problem(text)


@pytest.mark.parametrize(
    "text",
    [
        "Invalid 'To' address", "to parameter is not a valid address", "Message too big",
        "Recipient address rejected: User unknown", "subject is required", "Bad Request",
        "Attachment type not allowed",
        "mail_settings.sandbox_mode.enable: must be a boolean",  # a field, not the account
    ],
)  # fmt: skip
def test_the_shared_pattern_leaves_message_problems_alone(text: str) -> None:
    assert not is_account_problem(text)


def test_the_rule_is_declared_once() -> None:
    """No provider module keeps a phrase list of its own."""
    import importlib

    for module in [*SETTINGS, "ses", "smtp"]:
        source = importlib.import_module(f"mailfailover.drivers.{module}").__file__
        assert source is not None
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
        assert "_ACCOUNT_PROBLEMS" not in text, module
    assert ACCOUNT_PROBLEM.pattern
