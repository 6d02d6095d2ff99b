"""What every provider's webhook module shares: the request, its spec, replay memory, dates."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ConfigError, WebhookError
from ._verify import check_basic_auth, check_header, split_header

if TYPE_CHECKING:
    from ..driver import Setting
    from ..events import DeliveryEvent
    from ..state import StateStore

__all__ = [
    "ReplayGuard",
    "WebhookRequest",
    "Webhooks",
    "basic_auth_setting",
    "check_basic_auth_and_header",
    "check_header_setting",
    "epoch",
    "header_setting",
    "iso_time",
    "malformed",
    "obj",
]

#: Exceptions that mean a verified body is not the payload the provider documents.
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


def basic_auth_setting(where: str) -> Setting:
    """The ``webhook_basic_auth`` setting of a provider whose webhooks carry basic auth."""
    from ..driver import Setting

    return Setting(
        None, list, secret=True,
        help=f"user:password the webhook URL carries ({where}); several while rotating",
    )  # fmt: skip


def header_setting(where: str) -> Setting:
    """The ``webhook_header`` setting of a provider that sends custom headers with its
    webhooks: ``"Name: value"`` pairs, any one of which the request must carry."""
    from ..driver import Setting

    return Setting(
        None, list, secret=True, split=False,
        help=f"'Name: value' of a custom header the webhook carries ({where}); a list of "
        "them while rotating",
    )  # fmt: skip


def check_header_setting(settings: Mapping[str, Any], driver: str) -> None:
    """A ``webhook_header`` that is not ``"Name: value"`` is a ConfigError at load time
    (the value is secret: never shown)."""
    for number, pair in enumerate(settings.get("webhook_header") or (), start=1):
        try:
            split_header(pair)
        except ValueError:
            raise ConfigError(
                f"driver {driver!r}: webhook_header #{number} is not 'Name: value' "
                "(a header name, a colon, a value)"
            ) from None


def check_basic_auth_and_header(request: WebhookRequest) -> None:
    """For a provider that authenticates its webhooks by basic auth, a custom header, or
    both: each of ``webhook_basic_auth`` and ``webhook_header`` that is set must hold."""
    if request.settings.get("webhook_basic_auth"):
        check_basic_auth(request.headers, request.secrets("webhook_basic_auth"))
    if request.settings.get("webhook_header"):
        check_header(request.headers, request.secrets("webhook_header"))


def obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (optional nested fields)."""
    return value if isinstance(value, dict) else {}


def malformed(reason: str) -> WebhookError:
    """The 400 :class:`WebhookError` for a body that is not the provider's payload."""
    return WebhookError(reason, status=400)


class ReplayGuard:
    """Remembers the one-time tokens of signed webhooks, in a state store.

    A token seen again with the same body fingerprint is a provider's retry and passes (its
    events are then de-duplicated); seen with another body it is a replay and is refused.
    """

    def __init__(self, store: StateStore | None = None) -> None:
        if store is None:
            from ..state import MemoryStore

            store = MemoryStore()
        self.store = store

    def first_use(self, key: str, fingerprint: bytes, *, ttl: float) -> bool:
        """True when ``key`` is new, or was seen with this same ``fingerprint``."""
        name = f"webhook-token:{key}"
        if self.store.add(name, fingerprint, ttl=ttl):
            return True
        return hmac.compare_digest(self.store.get(name) or b"", fingerprint)


def _headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in items:
        if isinstance(name, str) and isinstance(value, str):
            found.setdefault(name.strip().lower(), value)
    return found


@attrs.frozen
class WebhookRequest:
    """One request to a webhook URL, as a provider module sees it."""

    driver: str
    settings: Mapping[str, Any]
    headers: dict[str, str]
    body: bytes
    url: str
    now: float
    replay: ReplayGuard

    def header(self, name: str) -> str | None:
        """A header's value (names are case-insensitive), or None."""
        return self.headers.get(name.lower())

    def secrets(self, setting: str) -> tuple[str, ...]:
        """The configured values of a ``list`` setting (several while a secret rotates)."""
        return tuple(self.settings.get(setting) or ())

    def json(self) -> Any:
        """The body as JSON; 400 when it is not."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise malformed("the webhook body is not JSON") from None


@attrs.frozen
class Webhooks:
    """One provider's webhook support, declared on its driver as ``webhooks = ...``.

    ``settings`` are added to the driver's; webhooks count as configured when any setting
    in ``enabled_by`` is set; ``check`` validates them when the driver is built;
    ``parser`` verifies a :class:`WebhookRequest` and returns its
    events, raising :class:`WebhookError` (401 or 400).
    """

    settings: Mapping[str, Setting]
    enabled_by: tuple[str, ...]
    parser: Callable[[WebhookRequest], list[DeliveryEvent]]
    #: Called with the driver's settings and name when it is built: a bad key is a
    #: ConfigError at load time, not a refused webhook later.
    check: Callable[[Mapping[str, Any], str], None] | None = None

    def configured(self, settings: Mapping[str, Any]) -> bool:
        return any(settings.get(key) for key in self.enabled_by)

    def parse_request(
        self,
        driver: str,
        settings: Mapping[str, Any],
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        url: str,
        now: float | None,
        replay: ReplayGuard,
    ) -> list[DeliveryEvent]:
        """Verify and normalise; every refusal is a :class:`WebhookError` naming ``driver``."""
        if not self.configured(settings):
            needed = " or ".join(self.enabled_by)
            raise WebhookError(
                f"webhooks are not configured for this driver (set {needed})",
                status=404,
                driver=driver,
            )
        if not isinstance(body, (bytes, bytearray)):
            raise WebhookError("the webhook body must be bytes", status=400, driver=driver)
        request = WebhookRequest(
            driver=driver,
            settings=settings,
            headers=_headers(headers),
            body=bytes(body),
            url=str(url),
            now=time.time() if now is None else float(now),
            replay=replay,
        )
        try:
            return self.parser(request)
        except WebhookError as exc:
            raise WebhookError(str(exc), status=exc.status, driver=driver) from None
        except _MALFORMED:
            raise WebhookError(
                "the webhook body is not the provider's payload", status=400, driver=driver
            ) from None


def epoch(value: Any) -> dt.datetime:
    """An aware UTC datetime from epoch seconds (an int, float or numeric string)."""
    if isinstance(value, bool):
        raise ValueError("a timestamp is a number")
    return dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc)


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def iso_time(value: Any) -> dt.datetime:
    """An aware datetime from ISO 8601 text (``Z``, 7-digit fractions; naive means UTC)."""
    if not isinstance(value, str):
        raise ValueError("a timestamp is ISO 8601 text")
    text = _FRACTION.sub(r"\1", value.strip().replace(" ", "T", 1))
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = dt.datetime.fromisoformat(text)
    return when if when.utcoffset() is not None else when.replace(tzinfo=dt.timezone.utc)
