"""``Outbox``: put messages on the queue and ask what became of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..delivery import DeliveryRecords, Record, redrive
from ..errors import InvalidMessage, QueueUnavailable
from ..events import EventLog
from ..message import Message
from ..state import StateStore, StoreError, open_store
from ._task import TASK_NAME, ConfigSource, install, load_queue_config, publish

__all__ = ["Outbox", "make_app"]

logger = logging.getLogger("mailfailover")


def make_app(config: ConfigSource = None, **install_options: Any) -> Any:
    """A Celery application of mailfailover's own for ``queue.broker``, with the task."""
    from celery import Celery

    loaded, queue = load_queue_config(config)
    app = Celery("mailfailover", broker=queue.broker, set_as_current=False)
    install(app, loaded, _own=True, **install_options)
    return app


class Outbox:
    """Enqueue messages for durable delivery, and read their delivery records.

    ``Outbox(config)`` builds its own Celery application for ``queue.broker``;
    ``Outbox(config, app=celery_app)`` sends through an application that already has the
    task (:func:`~mailfailover.celery.install`). ``events(record)`` returns the delivery
    events to show with a status (the webhook side fills them in).
    """

    def __init__(
        self,
        config: ConfigSource = None,
        *,
        app: Any = None,
        store: StateStore | None = None,
        events: Callable[[Record], list[Any]] | None = None,
    ) -> None:
        self.config, self.queue = load_queue_config(config)
        self.app = app if app is not None else make_app(self.config, store=store)
        if TASK_NAME not in self.app.tasks:
            raise RuntimeError(
                f"the Celery app has no task {TASK_NAME!r}: call mailfailover.celery.install()"
            )
        self.task = self.app.tasks[TASK_NAME]
        self.records = DeliveryRecords(store or open_store(self.config.state), keep=self.queue.keep)
        # By default the events handle_webhook logged in the same store (mailfailover.events).
        self.events = events if events is not None else EventLog(self.records.store).for_record

    def enqueue(self, message: Message) -> str:
        """Hand ``message`` to the broker; its Message-ID once the broker has it.

        Raises :class:`~mailfailover.errors.QueueUnavailable` (and records nothing) when the
        broker cannot be reached within ``queue.connect_timeout``. The delivery record is
        written after the broker took the message; if the store is down then, the worker
        writes it.
        """
        if not isinstance(message, Message):
            raise InvalidMessage("enqueue() takes a mailfailover.Message", field=None)
        data = message.to_dict()
        enqueued_at = time.time()
        created = self._keep(message.message_id, data, enqueued_at)
        try:
            self._publish(data, enqueued_at)
        except QueueUnavailable:
            if created:  # nothing is queued: nothing is recorded
                self._forget(message.message_id)
            raise
        return message.message_id

    def _keep(self, message_id: str, data: dict[str, Any], enqueued_at: float) -> bool:
        """The record and the kept content, before the broker has the task (so a task lost
        later is re-driven: docs/queue.md); True when this call created the record. With
        the store down the message still goes, and the worker writes both."""
        try:
            created = self.records.create(
                message_id, created=enqueued_at, expires=enqueued_at + self.queue.max_age
            )
            self.records.keep_content(message_id, data, at=enqueued_at,
                                      ttl=self.queue.max_age + self.queue.keep)  # fmt: skip
        except StoreError as exc:
            logger.warning("%s: the state store failed (%s); the worker writes its record",
                           message_id, exc)  # fmt: skip
            return False
        return created

    def _forget(self, message_id: str) -> None:
        try:
            self.records.store.delete(self.records.key(message_id))
            self.records.forget_content(message_id)
        except StoreError:
            logger.warning("%s was not queued, and its record could not be removed", message_id)

    def status(self, message_id: str) -> dict[str, Any] | None:
        """What became of a message: ``status`` (queued, sent, rejected, suppressed, dead),
        ``driver``, ``attempts``, ``tries``, ``events`` and timing; None when unknown.

        Raises :class:`~mailfailover.state.StoreError` when the store cannot answer.
        """
        return self.records.status(message_id, events=self.events)

    def dead(self) -> list[dict[str, Any]]:
        """Every dead letter's status."""
        found = []
        for message_id, _ in self.records.dead():
            view = self.records.status(message_id, events=self.events)
            if view is not None:
                found.append(view)
        return found

    def retry_dead(self, message_id: str) -> bool:
        """Put a dead letter back on the queue with a fresh ``max_age``; False when the
        message is not dead. Its attempts so far are kept."""
        data = self.records.revive(message_id, max_age=self.queue.max_age)
        if data is None:
            return False
        try:
            self._publish(data, time.time())
        except QueueUnavailable:
            # Back to dead, with its content, so nothing is lost.
            self.records.bury(message_id, data, self.records.store.now())
            self.records.change(message_id, lambda r: {**r, "status": "dead"}, ttl=None)
            self.records.forget_content(message_id)
            raise
        return True

    def redrive_lost(self, *, older_than: float | None = None) -> int:
        """Publish again the tasks of queued messages nobody has touched for ``older_than``
        seconds (default: the broker's visibility timeout); how many. Workers do this by
        themselves (:func:`mailfailover.delivery.redrive`); this is the operator's lever."""
        stale = self.queue.broker_visibility_timeout if older_than is None else older_than
        return redrive(self.records, publish=self._publish, stale_after=stale,
                       max_age=self.queue.max_age)  # fmt: skip

    def _publish(self, data: Mapping[str, Any], enqueued_at: float) -> None:
        publish(self.task, self.queue, data, enqueued_at)

    def close(self) -> None:
        self.records.store.close()
