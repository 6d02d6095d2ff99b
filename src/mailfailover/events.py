"""Delivery events: what providers report after a message left mailfailover.

Each provider's tracking webhook is verified and normalised (see :mod:`mailfailover.webhooks`)
into :class:`DeliveryEvent` s, one per recipient and per event, whatever the provider batches.
``type`` is one of :data:`EVENT_TYPES`; a kind of event a provider adds later becomes
``unknown``, never an error. ``bounce`` is the provider's own classification of a bounce,
``"hard"`` (the address does not work: suppress it) or ``"soft"`` (try again later), and
``None`` for anything that is not a bounce. ``raw`` is the provider's payload for this one
event, kept for whatever the normalised fields leave out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from .state import StateStore

__all__ = [
    "BOUNCE_KINDS",
    "EVENT_TYPES",
    "SUPPRESSING_TYPES",
    "DeliveryEvent",
    "EventLog",
    "event_digest",
]

#: Every value :attr:`DeliveryEvent.type` can take.
EVENT_TYPES: Final = (
    "queued",
    "delivered",
    "deferred",
    "bounced",
    "rejected",
    "complained",
    "unsubscribed",
    "opened",
    "clicked",
    "failed",
    "unknown",
)
#: Every value :attr:`DeliveryEvent.bounce` can take besides ``None``.
BOUNCE_KINDS: Final = ("hard", "soft")
#: The event types that put the recipient on the suppression list, with the list's reason.
SUPPRESSING_TYPES: Final = {
    "bounced": "bounced",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
}


def _check_type(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in EVENT_TYPES:
        raise ValueError(f"event type must be one of {', '.join(EVENT_TYPES)}, not {value!r}")


def _check_bounce(instance: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and value not in BOUNCE_KINDS:
        raise ValueError(f"bounce must be 'hard', 'soft' or None, not {value!r}")


def _check_aware(instance: Any, attribute: attrs.Attribute[Any], value: dt.datetime) -> None:
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise ValueError("an event's timestamp must be an aware datetime")


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, Mapping):  # Resend sends tags as {name: value}
        return tuple(f"{k}:{v}" if v not in (None, "") else str(k) for k, v in value.items())
    if isinstance(value, Iterable):
        return tuple(str(tag) for tag in value if tag not in (None, ""))
    return (str(value),)


def _metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


@attrs.frozen
class DeliveryEvent:
    """One thing that happened to one message for one recipient, as a provider reported it.

    ``driver`` is the configured driver's name (so after a failover you know which provider
    is speaking); ``message_id`` the provider's id as in ``SendResult.message_id``;
    ``event_id`` the provider's id for the event, or a digest of the event when it has none
    (events are de-duplicated on it, providers re-send); ``reason`` the provider's
    explanation, ``mta_response`` the receiving server's answer, ``url`` the link clicked.
    """

    type: str = attrs.field(validator=_check_type)
    driver: str
    recipient: str | None = attrs.field(converter=_optional_text)
    timestamp: dt.datetime = attrs.field(validator=_check_aware)
    message_id: str | None = attrs.field(default=None, converter=_optional_text)
    event_id: str = ""
    bounce: str | None = attrs.field(default=None, validator=_check_bounce)
    reason: str | None = attrs.field(default=None, converter=_optional_text)
    mta_response: str | None = attrs.field(default=None, converter=_optional_text)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tags)
    metadata: dict[str, str] = attrs.field(factory=dict, converter=_metadata)
    url: str | None = attrs.field(default=None, converter=_optional_text)
    raw: Any = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(
                self, "event_id", event_digest(self.driver, self.type, self.recipient, self.raw)
            )

    @property
    def suppression_reason(self) -> str | None:
        """The suppression list's reason this event calls for, or None.

        A hard bounce, a complaint or an unsubscribe suppresses the recipient; a soft bounce,
        a bounce the provider did not classify and every other event never do.
        """
        if self.recipient is None:
            return None
        if self.type == "bounced" and self.bounce != "hard":
            return None
        return SUPPRESSING_TYPES.get(self.type)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the timestamp in ISO 8601, ``raw`` as the provider sent it)."""
        return {
            "type": self.type,
            "driver": self.driver,
            "recipient": self.recipient,
            "timestamp": self.timestamp.isoformat(),
            "message_id": self.message_id,
            "event_id": self.event_id,
            "bounce": self.bounce,
            "reason": self.reason,
            "mta_response": self.mta_response,
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "url": self.url,
            "raw": self.raw,
        }


def event_digest(*parts: Any) -> str:
    """A stable id for an event a provider gives no id to: a digest of its canonical JSON."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


class EventLog:
    """The events handled for each message, in the state store, for status views.

    ``handle_webhook`` records every new event under its driver and the provider's
    ``message_id`` (the id ``SendResult.message_id`` and a delivery record's
    ``provider_message_id`` hold); :meth:`for_message` reads them back, oldest first, as
    :meth:`DeliveryEvent.to_dict` dicts without ``raw``. At most ``limit`` events are kept
    per message, for ``ttl`` seconds after the last one.
    """

    PREFIX: Final = "webhook-log:"

    def __init__(self, store: StateStore, *, limit: int = 50, ttl: float = 30 * 86400) -> None:
        self.store = store
        self.limit = limit
        self.ttl = ttl

    def record(self, event: DeliveryEvent) -> None:
        """Append ``event`` to its message's log (nothing for an event without a message)."""
        if event.message_id is None:
            return
        entry = {k: v for k, v in event.to_dict().items() if k != "raw"}

        def append(old: bytes | None) -> tuple[bytes, None]:
            try:
                entries = json.loads(old) if old else []
            except ValueError:
                entries = []
            if not isinstance(entries, list):
                entries = []
            entries = [*entries, entry][-self.limit :]
            return json.dumps(entries, separators=(",", ":")).encode(), None

        self.store.update(self._key(event.driver, event.message_id), append, ttl=self.ttl)

    def for_message(self, driver: str | None, message_id: str | None) -> list[dict[str, Any]]:
        """The recorded events of a message sent by ``driver`` with the provider's id."""
        if not driver or not message_id:
            return []
        value = self.store.get(self._key(driver, message_id))
        try:
            entries = json.loads(value) if value else []
        except ValueError:
            return []
        return entries if isinstance(entries, list) else []

    def for_record(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """:meth:`for_message` for a delivery record (``driver``, ``provider_message_id``)."""
        return self.for_message(record.get("driver"), record.get("provider_message_id"))

    def _key(self, driver: str, message_id: str) -> str:
        return f"{self.PREFIX}{driver}:{message_id}"
