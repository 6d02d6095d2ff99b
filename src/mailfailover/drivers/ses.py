"""``ses``: Amazon SES v2 ``SendEmail`` with the raw MIME message (extra ``ses``: boto3).

The message is built by :meth:`Message.to_mime` like every other transport and sent as
``Content.Raw.Data``; the envelope goes in ``Destination`` (so Bcc stays out of the
headers). Tags become SES ``EmailTags`` (``{"Name": tag, "Value": "true"}``) when they meet
SES's rules; metadata travels as one ``X-Metadata`` header holding a JSON object.

boto3 retries are turned off (one attempt): retrying is the mailer's job, and a silent
retry after a read timeout could send the message twice.

Error codes are botocore's, read from its ``sesv2`` service model (``SendEmail``'s error
shapes): ``TooManyRequestsException`` (429), ``LimitExceededException``,
``AccountSuspendedException``, ``SendingPausedException``, ``MessageRejected``,
``MailFromDomainNotVerifiedException``, ``NotFoundException`` (404),
``BadRequestException`` (all 400 unless noted).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from .._version import __version__
from ..driver import (
    Driver,
    Receipt,
    Setting,
    is_account_problem,
    remaining_time,
    require,
    timeout_setting,
    tracking_headers,
)
from ..errors import ConfigError, DeliveryError, MessageRejected, ProviderUnavailable
from ..message import Message, parse_mailbox
from ..webhooks.ses import WEBHOOKS

__all__ = ["SESDriver"]

#: SES message tag names and values: ASCII letters, digits, underscore, dash; at most 256.

# The message itself is at fault: no other provider is tried, unless the reason is an
# account problem by the shared rule (MessageRejected "Email address is not verified").
_REJECTED = frozenset({"MessageRejected", "BadRequestException"})
_RATE_LIMITED = frozenset({
    "TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException",
    "RequestThrottled", "RequestLimitExceeded", "SlowDown",
})  # fmt: skip
# This account cannot send it; another provider may (docs/errors.md#account-problems).
_ACCOUNT = frozenset({
    "SendingPausedException", "AccountSuspendedException", "NotFoundException",
    "MailFromDomainNotVerifiedException",
})  # fmt: skip
_AUTH = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch",
    "IncompleteSignature", "InvalidSignatureException", "MissingAuthenticationToken",
    "AccessDenied", "AccessDeniedException", "ExpiredToken", "ExpiredTokenException",
    "RequestExpired", "AuthFailure", "NotAuthorized", "OptInRequired",
})  # fmt: skip
_SERVER = frozenset(
    {"InternalFailure", "InternalError", "ServiceUnavailable", "InternalServerError"}
)


class SESDriver(Driver):
    """Sends through Amazon SES (API v2) with boto3; credentials default to AWS's chain."""

    webhooks = WEBHOOKS

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        "region": Setting(help="AWS region of the SES account, e.g. us-east-1"),
        "access_key_id": Setting(None, secret=True, help="default: the AWS credential chain"),
        "secret_access_key": Setting(None, secret=True, help="with access_key_id"),
        "session_token": Setting(None, secret=True, help="for temporary credentials"),
        "profile": Setting(None, help="a named profile from ~/.aws/config"),
        "endpoint_url": Setting(None, help="replaces the SES endpoint (VPC endpoints, tests)"),
        "configuration_set": Setting(None, help="SES configuration set for event publishing"),
        "timeout": timeout_setting(10.0, help="seconds to wait for SES's answer"),
        "connect_timeout": timeout_setting(5.0, help="seconds to wait for a connection"),
    }
    max_recipients: ClassVar[int | None] = 50
    max_message_bytes: ClassVar[int | None] = 40 * 1024 * 1024
    #: SES message tag names and values: ASCII letters, digits, underscore, dash; <= 256.
    tag_pattern: ClassVar[str | None] = r"[A-Za-z0-9_-]{1,256}"
    tag_rule: ClassVar[str] = "SES tags are ASCII letters, digits, _ and -, at most 256"
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("boto3", "ses"),)

    def __init__(self, *, name: str, **settings: Any) -> None:
        super().__init__(name=name, **settings)
        s = self.settings
        if (s["access_key_id"] is None) != (s["secret_access_key"] is None):
            raise ConfigError(
                "'access_key_id' and 'secret_access_key' go together: set both or neither",
                driver=name,
            )
        boto3 = require("boto3", "ses", driver=name)
        self._exceptions = require("botocore.exceptions", "ses", driver=name)
        config = require("botocore.config", "ses", driver=name)
        self._config_module = config
        self._lock = threading.Lock()
        self._short_clients: dict[int, Any] = {}
        try:
            self._session = session = boto3.session.Session(
                aws_access_key_id=s["access_key_id"],
                aws_secret_access_key=s["secret_access_key"],
                aws_session_token=s["session_token"],
                profile_name=s["profile"],
                region_name=s["region"],
            )
            self._client_config = config.Config(
                connect_timeout=float(s["connect_timeout"]),
                read_timeout=float(s["timeout"]),
                retries={"total_max_attempts": 1},
                user_agent_extra=f"mailfailover/{__version__}",
            )
            self.client: Any = session.client(
                "sesv2", endpoint_url=s["endpoint_url"], config=self._client_config
            )
        except self._exceptions.BotoCoreError as exc:  # ProfileNotFound, bad endpoint URL...
            raise ConfigError(f"cannot set up the SES client: {self.scrub(str(exc))}",
                              driver=name) from None  # fmt: skip

    # -- the send path ---------------------------------------------------------------------

    def send(self, message: Message) -> Receipt:
        request = self.build_request(message)
        answer = self._call(request)
        message_id = answer.get("MessageId") if isinstance(answer, Mapping) else None
        if not isinstance(message_id, str) or not message_id:
            raise ProviderUnavailable(
                "SES answered without a MessageId", reason="bad_response", driver=self.name
            )
        return Receipt(driver=self.name, message_id=message_id, response={"MessageId": message_id})

    def build_request(self, message: Message) -> dict[str, Any]:
        """The ``SendEmail`` arguments; raises UnsupportedFeature for what SES cannot carry."""
        self.check_limits(message)
        if message.needs_smtputf8:
            self.unsupported(
                "SES does not accept addresses with a non-ASCII local part", field="to"
            )
        self.check_tracking_headers(message, tags=False)  # tags are EmailTags
        mime = message.to_mime()
        for name, value in tracking_headers(message, tags=False).items():
            mime[name] = value
        request: dict[str, Any] = {
            "FromEmailAddress": message.sender_mailbox.ascii_email,
            "Destination": {
                "ToAddresses": [parse_mailbox(r).ascii_email for r in message.recipients()]
            },
            "Content": {"Raw": {"Data": mime.as_bytes()}},
        }
        if message.tags:
            request["EmailTags"] = [{"Name": tag, "Value": "true"} for tag in message.tags]
        if self.settings["configuration_set"]:
            request["ConfigurationSetName"] = self.settings["configuration_set"]
        return request

    def _client_for_deadline(self) -> Any:
        """The client, or one whose timeouts fit the mailer's remaining deadline.

        botocore fixes timeouts per client, so shorter ones need another client; they are
        cached per whole second (at most ``timeout`` + 1 of them).
        """
        left = remaining_time()
        if left is None or left >= float(self.settings["timeout"]):
            return self.client
        seconds = max(1, math.ceil(left))
        with self._lock:
            client = self._short_clients.get(seconds)
            if client is None:
                config = self._client_config.merge(
                    self._config_module.Config(
                        connect_timeout=min(float(self.settings["connect_timeout"]), seconds),
                        read_timeout=seconds,
                    )
                )
                client = self._session.client(
                    "sesv2", endpoint_url=self.settings["endpoint_url"], config=config
                )
                self._short_clients[seconds] = client
        return client

    # -- the one error boundary ------------------------------------------------------------

    def _call(self, request: Mapping[str, Any]) -> Any:
        """``SendEmail``, with botocore's exceptions translated into ours (the one boundary).

        The translation happens outside the ``except`` block, and the original is chained
        only when its traceback shows no credential: botocore's errors can quote a signed
        header (``Credential=<access key id>``) verbatim.
        """
        exceptions = self._exceptions
        failure: BaseException
        try:
            return self._client_for_deadline().send_email(**request)
        except exceptions.ClientError as exc:
            failure, error = exc, self._client_error(exc)
        except exceptions.BotoCoreError as exc:
            failure, error = exc, self._transport_error(exc)
        if self.shows_secret(failure):
            raise error from None
        raise error from failure

    def _client_error(self, exc: Any) -> DeliveryError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        detail = self.scrub(str(error.get("Message") or code or "SES error"))[:500]
        kwargs: dict[str, Any] = {
            "driver": self.name, "status": status, "provider_code": code or None,
            "response": {"Code": code, "Message": detail},
        }  # fmt: skip
        if code in _REJECTED:
            if is_account_problem(detail):  # an unverified sender or a sandbox account
                return ProviderUnavailable(detail, reason="account", **kwargs)
            return MessageRejected(detail, **kwargs)
        if code in _RATE_LIMITED or status == 429:
            return ProviderUnavailable(detail, reason="rate_limited", **kwargs)
        if code in _ACCOUNT:
            return ProviderUnavailable(detail, reason="account", **kwargs)
        if code in _AUTH or status in (401, 403):
            return ProviderUnavailable(detail, reason="auth", **kwargs)
        if code in _SERVER or (isinstance(status, int) and status >= 500):
            return ProviderUnavailable(detail, reason="server_error", **kwargs)
        if isinstance(status, int) and 400 <= status < 500:
            if is_account_problem(detail):
                return ProviderUnavailable(detail, reason="account", **kwargs)
            return MessageRejected(detail, **kwargs)  # an unlisted 4xx about the request
        return ProviderUnavailable(detail, reason="bad_response", **kwargs)

    def _transport_error(self, exc: Any) -> ProviderUnavailable:
        e = self._exceptions
        detail = f"{type(exc).__name__}: {self.scrub(str(exc))}"[:500]
        if isinstance(exc, e.ConnectTimeoutError):
            return ProviderUnavailable(detail, reason="timeout", driver=self.name)
        if isinstance(exc, e.ReadTimeoutError):
            return ProviderUnavailable(detail, reason="timeout", ambiguous=True, driver=self.name)
        if isinstance(exc, e.ConnectionError):  # refused, DNS, TLS, proxy: nothing was sent
            return ProviderUnavailable(detail, reason="connection", driver=self.name)
        if isinstance(exc, e.HTTPClientError):  # closed or reset after the request was sent
            return ProviderUnavailable(
                detail, reason="connection", ambiguous=True, driver=self.name
            )
        credential_errors = (
            e.NoCredentialsError, e.PartialCredentialsError, e.CredentialRetrievalError,
            e.NoAuthTokenError, e.TokenRetrievalError,
        )  # fmt: skip
        if isinstance(exc, credential_errors):
            return ProviderUnavailable(detail, reason="auth", driver=self.name)
        return ProviderUnavailable(detail, reason="bug", driver=self.name)

    def close(self) -> None:
        with self._lock:
            clients = [self.client, *self._short_clients.values()]
            self._short_clients.clear()
        for client in clients:
            with contextlib.suppress(Exception):  # closing is best effort; nothing to report
                client.close()
