"""Durable delivery on Celery: a message that every provider failed is retried, never lost.

Extra ``celery`` (``pip install "mailfailover[celery]"``). With a ``queue:`` section and a
shared ``state:`` store in the configuration::

    outbox = Outbox("config/mail.yml")          # its own Celery app for queue.broker
    message_id = outbox.enqueue(message)         # once the broker has it
    outbox.status(message_id)                    # {"status": "sent", "driver": ..., ...}

or, on an application that already runs Celery, ``install(celery_app, config)`` registers
the task ``mailfailover.deliver`` and ``Outbox(config, app=celery_app)`` enqueues through it.
``mailfailover worker`` runs a worker for the queue. The task is idempotent by Message-ID;
the rules live in :mod:`mailfailover.delivery`, and docs/queue.md tells the whole story.
"""

from __future__ import annotations

from ..driver import require

require("celery", "celery")

from ._outbox import Outbox, make_app  # noqa: E402 - after the dependency check
from ._task import TASK_NAME, broker_options, install  # noqa: E402
from ._worker import worker_argv  # noqa: E402

__all__ = ["TASK_NAME", "Outbox", "broker_options", "install", "make_app", "worker_argv"]
