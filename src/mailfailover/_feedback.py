"""What the mailer does with providers' feedback: suppressing recipients and taking webhooks.

Kept apart from the failover loop: :class:`Feedback` removes suppressed recipients from a
message before any driver is tried, and turns a verified webhook into de-duplicated events
that update the suppression list and reach every ``on_event`` hook.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping

from .driver import Driver
from .errors import MessageSuppressed
from .events import DeliveryEvent, EventLog
from .message import Message, parse_mailbox
from .state import StateStore, StoreError
from .suppressions import SuppressionList
from .webhooks import ReplayGuard

__all__ = ["EVENT_TTL", "Feedback"]

logger = logging.getLogger("mailfailover")

#: How long an event id is remembered: providers retry a webhook for hours, SNS and
#: SparkPost for up to days.
EVENT_TTL = 7 * 24 * 3600.0

EventHook = Callable[[DeliveryEvent], object]


class Feedback:
    """The suppression list and webhook handling of one mailer, on its state store."""

    def __init__(
        self,
        store: StateStore,
        *,
        suppression: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.enabled = suppression
        #: Wall-clock seconds (signed webhook timestamps are epoch times): the store's clock
        #: unless given.
        self.clock = store.now if clock is None else clock
        self.suppressions = SuppressionList(store, clock=self.clock, cached=True)
        self.log = EventLog(store)
        self._hooks: tuple[EventHook, ...] = ()
        self._lock = threading.Lock()

    # -- before sending ---------------------------------------------------------------

    def filter(self, message: Message) -> tuple[Message, tuple[str, ...]]:
        """``message`` without its suppressed recipients, and the bare addresses removed.

        Raises :class:`MessageSuppressed` when none is left. A store that cannot answer
        never stops mail: the message goes as it is, and the failure is logged.
        """
        if not self.enabled:
            return message, ()
        try:
            found = self.suppressions.suppressed((*message.to, *message.cc, *message.bcc))
        except StoreError as exc:
            logger.warning("suppression list unavailable, sending without it: %s", exc)
            return message, ()
        if not found:
            return message, ()
        fields = {"to": message.to, "cc": message.cc, "bcc": message.bcc}
        kept = {name: tuple(a for a in values if a not in found) for name, values in fields.items()}
        removed = tuple(
            parse_mailbox(a).email for values in fields.values() for a in values if a in found
        )
        if not kept["to"]:
            # A message needs a To: the Cc recipients saw each other anyway. Lone Bcc
            # recipients cannot be promoted without showing them to each other.
            if kept["cc"]:
                kept["to"], kept["cc"] = kept["cc"], ()
            elif len(kept["bcc"]) == 1:
                kept["to"], kept["bcc"] = kept["bcc"], ()
            elif kept["bcc"]:
                raise MessageSuppressed(
                    removed,
                    detail="every To and Cc recipient is suppressed; the Bcc recipients left "
                    "cannot be sent to without showing them to each other",
                )
            else:
                raise MessageSuppressed(removed)
        logger.info("suppressed recipients removed: %s", ", ".join(removed))
        # The same message to fewer people: it keeps its Message-ID (delivery records,
        # idempotency keys and recipients' de-duplication all hang on it).
        return message.replace(**kept, message_id=message.message_id), removed

    # -- webhooks ---------------------------------------------------------------------

    def add_hook(self, hook: EventHook) -> Callable[[], None]:
        """Call ``hook(event)`` for every new event; returns a function that removes it."""
        with self._lock:
            self._hooks = (*self._hooks, hook)

        def remove() -> None:
            with self._lock:
                self._hooks = tuple(h for h in self._hooks if h is not hook)

        return remove

    def handle(
        self,
        driver: Driver,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        url: str,
    ) -> list[DeliveryEvent]:
        """Verify and normalise; keep only events not seen before; suppress; notify.

        Raises :class:`~mailfailover.errors.WebhookError` as ``parse_webhook`` does, and
        :class:`~mailfailover.state.StoreError` when the store cannot record the events
        (the provider should retry: nothing was marked as seen).
        """
        events = driver.parse_webhook(
            headers, body, url, now=self.clock(), replay=ReplayGuard(self.store)
        )
        fresh = []
        for event in events:
            key = f"webhook-event:{event.driver}:{event.event_id}"
            if not self.store.add(key, b"1", ttl=EVENT_TTL):
                continue  # the provider sent it again
            try:
                self._suppress(event)
                self.log.record(event)
            except BaseException:
                self.store.delete(key)  # so the provider's retry records it
                raise
            fresh.append(event)
        for event in fresh:
            self._notify(event)
        return fresh

    def _suppress(self, event: DeliveryEvent) -> None:
        reason = event.suppression_reason
        if reason is None or event.recipient is None:
            return
        try:
            self.suppressions.add(event.recipient, reason, driver=event.driver)
        except ValueError:
            logger.warning(
                "%s reported %s for %r, which is not an address: not suppressed",
                event.driver, event.type, event.recipient,
            )  # fmt: skip
            return
        logger.info("suppressed %s (%s, reported by %s)", event.recipient, reason, event.driver)

    def _notify(self, event: DeliveryEvent) -> None:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                logger.exception("an on_event hook raised; the other hooks still run")
