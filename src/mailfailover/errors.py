"""The exceptions mailfailover raises.

Everything derives from :class:`MailError`, which carries a numeric ``code`` that keeps the
original email service's numbering (1 missing parameter, 2 invalid parameter, 3 invalid JSON,
4 unsupported media type, 5 no provider able to send; new codes start at 6)::

    MailError                      root; .code (int), .message
    ├── InvalidMessage             bad input before any send; .field; code 1 or 2
    ├── ConfigError                bad config, unknown driver, missing setting; never failed over
    │   └── MissingDependency      an extra is not installed; names the `pip install` line
    ├── DeliveryError              a driver could not deliver; .driver, .status, .detail
    │   ├── ProviderUnavailable    transient or provider-side → fail over to the next driver
    │   ├── UnsupportedFeature     the driver cannot express the message → skip it, no network
    │   └── MessageRejected        the provider says the message is invalid → no failover
    │       └── MessageSuppressed  every recipient is on the suppression list; code 12
    ├── AllProvidersFailed         every driver was unavailable or skipped; code 5; .attempts
    ├── QueueUnavailable           the queue's broker did not take a message; code 5
    └── WebhookError               a provider's webhook is refused; .status 401, 400 or 404

Error text never contains secrets, message bodies or attachments: it names the driver, the
provider's status and the provider's own reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:  # typing only: results.py imports this module, never the other way round
    from .results import Attempt

__all__ = [
    "REASONS",
    "AllProvidersFailed",
    "ConfigError",
    "DeliveryError",
    "InvalidMessage",
    "MailError",
    "MessageRejected",
    "MessageSuppressed",
    "MissingDependency",
    "ProviderUnavailable",
    "QueueUnavailable",
    "Reason",
    "UnsupportedFeature",
    "WebhookError",
]

#: Codes of the original service, kept for HTTP clients that switch on them.
MISSING_PARAMETER = 1
INVALID_PARAMETER = 2
INVALID_JSON = 3
UNSUPPORTED_MEDIA_TYPE = 4
NO_PROVIDER = 5
#: New in mailfailover.
CONFIGURATION = 6
#: Answers of the HTTP adapter (``mailfailover.flask``) beyond the original service's.
UNAUTHORIZED = 7
SENDER_NOT_ALLOWED = 8
TOO_LARGE = 9
NOT_FOUND = 10
INTERNAL_ERROR = 11
#: Every recipient of a message is on the suppression list.
MESSAGE_SUPPRESSED = 12

#: Why a provider was unavailable: the only values :class:`ProviderUnavailable` accepts.
#: ``docs/errors.md`` says what each means and when a driver raises it.
Reason = Literal[
    "connection",
    "timeout",
    "server_error",
    "rate_limited",
    "auth",
    "account",
    "bad_response",
    "bug",
]
REASONS: tuple[Reason, ...] = get_args(Reason)


class MailError(Exception):
    """Root of every error mailfailover raises."""

    code: int = NO_PROVIDER

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidMessage(MailError):
    """The message (or a request to build one) is missing a field or has an invalid one."""

    code = INVALID_PARAMETER

    def __init__(self, message: str, *, field: str | None = None, code: int | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class ConfigError(MailError):
    """The configuration is wrong: a typo, an unknown driver, a missing setting."""

    code = CONFIGURATION

    def __init__(self, message: str, *, source: str | None = None, driver: str | None = None):
        where = ", ".join(
            part
            for part in (f"driver {driver!r}" if driver else "", f"in {source}" if source else "")
            if part
        )
        super().__init__(f"{message} ({where})" if where else message)
        self.source = source
        self.driver = driver


class MissingDependency(ConfigError):
    """A driver needs an optional dependency that is not installed.

    The text names the missing package, the driver module that needs it, the configured
    driver and the configuration file when they are known, and the ``pip install`` line.
    """

    def __init__(
        self,
        package: str,
        extra: str,
        *,
        driver: str | None = None,
        module: str | None = None,
        source: str | None = None,
    ) -> None:
        needs = f"; the {module!r} driver needs it" if module else ""
        super().__init__(
            f"{package!r} is not installed{needs}; install it with: pip install "
            f'"mailfailover[{extra}]"',
            driver=driver,
            source=source,
        )
        self.package = package
        self.extra = extra
        self.module = module


class DeliveryError(MailError):
    """A driver could not deliver a message.

    ``status`` is the provider's HTTP status or SMTP reply code (``None`` when no answer
    came), ``detail`` the provider's own reason, ``provider_code`` the provider's error code
    when it has one (Postmark's ``ErrorCode``, Mandrill's ``name``, a botocore error code).
    """

    def __init__(
        self,
        detail: str,
        *,
        driver: str = "",
        status: int | None = None,
        provider_code: str | int | None = None,
        response: Any = None,
        code: int | None = None,
    ) -> None:
        self.driver = driver
        self.status = status
        self.detail = detail
        self.provider_code = provider_code
        #: The provider's parsed error body (never containing our credentials), for debugging.
        self.response = response
        super().__init__(self._compose(), code=code)

    def _compose(self) -> str:
        parts = [self.driver or "driver"]
        if self.status is not None:
            parts.append(str(self.status))
        if self.provider_code not in (None, ""):
            parts.append(f"[{self.provider_code}]")
        return f"{' '.join(parts)}: {self.detail}"

    def with_driver(self, driver: str) -> DeliveryError:
        """Name the driver on an error raised before the driver knew its own name."""
        if not self.driver:
            self.driver = driver
            self.message = self._compose()
            self.args = (self.message,)
        return self


class ProviderUnavailable(DeliveryError):
    """The provider could not take the message now: fail over to the next driver.

    ``reason`` is one of :data:`REASONS` (``connection``, ``timeout``, ``server_error``,
    ``rate_limited``, ``auth``, ``account``, ``bad_response`` or ``bug``); anything else is
    a ``ValueError``. ``retry_after`` is how many seconds
    the provider asked us to wait, when it said. ``ambiguous`` is true only when the request
    may have reached the provider and no answer came back (a read timeout, a connection
    dropped after the request was sent): a failover may then deliver the message twice, and
    recipients' clients de-duplicate on the stable ``Message-ID``.
    """

    code = NO_PROVIDER

    def __init__(
        self,
        detail: str,
        *,
        reason: Reason = "server_error",
        ambiguous: bool = False,
        retry_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        if reason not in REASONS:
            # A driver bug: a reason outside the vocabulary would reach logs and /health
            # that nobody can switch on. Refused here, once, for every driver.
            raise ValueError(f"reason must be one of {', '.join(REASONS)}, not {reason!r}")
        self.reason: Reason = reason
        self.ambiguous = ambiguous
        self.retry_after = retry_after
        super().__init__(detail, **kwargs)


class UnsupportedFeature(DeliveryError):
    """The driver cannot express something the message uses; raised before any network call."""

    code = NO_PROVIDER

    def __init__(self, detail: str, *, field: str | None = None, **kwargs: Any) -> None:
        self.field = field
        super().__init__(detail, **kwargs)


class MessageRejected(DeliveryError):
    """The provider says the message itself is invalid: no other provider is tried."""

    code = INVALID_PARAMETER

    def __init__(self, detail: str, **kwargs: Any) -> None:
        #: Every attempt made for the message, filled in by the mailer.
        self.attempts: Sequence[Attempt] = ()
        super().__init__(detail, **kwargs)


class AllProvidersFailed(MailError):
    """No driver delivered the message; ``attempts`` holds every attempt, in order."""

    code = NO_PROVIDER

    def __init__(self, attempts: Sequence[Attempt], *, reason: str | None = None) -> None:
        self.attempts = tuple(attempts)
        summary = "; ".join(
            f"{a.driver}: {a.outcome}" + (f" ({a.error.detail})" if a.error is not None else "")
            for a in self.attempts
        )
        head = reason or "no provider was able to send the message"
        super().__init__(f"{head}: {summary}" if summary else head)


class MessageSuppressed(MessageRejected):
    """Every recipient of the message is on the suppression list: no driver was called.

    ``suppressed`` lists the recipients that were removed (all of them).
    """

    code = MESSAGE_SUPPRESSED

    def __init__(self, suppressed: Sequence[str], *, detail: str | None = None) -> None:
        self.suppressed = tuple(suppressed)
        super().__init__(
            detail or f"every recipient is on the suppression list ({', '.join(self.suppressed)})"
        )

    def _compose(self) -> str:
        return self.detail


class WebhookError(MailError):
    """A provider's webhook request was refused; ``status`` is the HTTP answer it calls for.

    401: the signature or credentials are missing or wrong, the timestamp is stale, or a
    token was replayed. 400: the body is not the provider's payload. 404: the driver has
    no webhooks, or none are configured. The text never holds a secret or the body.
    """

    _CODES = {401: UNAUTHORIZED, 400: INVALID_PARAMETER, 404: NOT_FOUND}

    def __init__(self, message: str, *, status: int = 400, driver: str | None = None) -> None:
        if status not in self._CODES:
            raise ValueError(f"a webhook error's status is 400, 401 or 404, not {status}")
        self.status = status
        self.driver = driver
        super().__init__(f"{driver}: {message}" if driver else message, code=self._CODES[status])


class QueueUnavailable(MailError):
    """The queue's broker could not be reached to take a message: nothing was enqueued."""

    code = NO_PROVIDER
