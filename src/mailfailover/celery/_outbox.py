"""``Outbox``: put messages on the queue and ask what became of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..delivery import DeliveryRecords, Record
from ..errors import InvalidMessage, QueueUnavailable
from ..events import EventLog
from ..message import Message
from ..state import StateStore, StoreError, open_store
from ._task import TASK_NAME, ConfigSource, install, load_queue_config

__all__ = ["Outbox", "make_app"]

logger = logging.getLogger("mailfailover")

#: How often a publish is tried when the broker refuses the connection.
PUBLISH_TRIES = 2


def _redacted(url: str) -> str:
    from ..config import _redact_url

    return _redact_url(url)


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
        self._publish(data, enqueued_at)
        try:
            self.records.create(
                message.message_id, created=enqueued_at, expires=enqueued_at + self.queue.max_age
            )
        except StoreError as exc:
            logger.warning("%s is queued; its record waits for the worker (%s)",
                           message.message_id, exc)  # fmt: skip
        return message.message_id

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
            raise
        return True

    def _publish(self, data: dict[str, Any], enqueued_at: float) -> None:
        from kombu.exceptions import OperationalError

        try:
            self.task.apply_async(
                args=(data,),
                kwargs={"enqueued_at": enqueued_at},
                serializer="json",
                queue=self.queue.name,
                retry=True,
                retry_policy={
                    "max_retries": PUBLISH_TRIES - 1,
                    "interval_start": 0.1,
                    "interval_step": 0.2,
                    "interval_max": 0.2,
                },
            )
        except (OperationalError, OSError) as exc:  # refused, reset, timed out
            raise QueueUnavailable(
                f"the queue's broker ({_redacted(self.queue.broker)}) did not take the "
                f"message: {type(exc).__name__}"
            ) from None

    def close(self) -> None:
        self.records.store.close()
