"""The workers' sweep for lost tasks: :func:`mailfailover.delivery.redrive`, now and then.

Every worker (its main process) runs a :class:`Sweeper` thread from ``worker_ready`` to
``worker_shutdown``. Each tick it tries to take the fleet-wide ``sweep`` key in the state
store (an atomic ``add`` that expires with the tick), so however many workers run, one
sweep happens per interval. The interval is a tenth of the broker's visibility timeout,
between half a second and a minute: a lost task is published again at most that long
after the visibility timeout tells it apart from a slow one.
"""

from __future__ import annotations

import logging
import threading
import uuid

from ..config import MailerConfig, QueueConfig
from ..delivery import DeliveryRecords, Publish, redrive
from ..errors import QueueUnavailable
from ..state import StateStore, StoreError, open_store

__all__ = ["SWEEP_KEY", "Sweeper", "sweep_interval"]

logger = logging.getLogger("mailfailover")

SWEEP_KEY = "sweep"


def sweep_interval(queue: QueueConfig) -> float:
    """Seconds between two sweeps: a tenth of the visibility timeout, within [0.5, 60]."""
    return max(min(queue.broker_visibility_timeout / 10, 60.0), 0.5)


class Sweeper:
    """A daemon thread that re-drives lost tasks while a worker runs (module doc)."""

    def __init__(
        self,
        config: MailerConfig,
        queue: QueueConfig,
        publish: Publish,
        *,
        store: StateStore | None = None,
    ) -> None:
        self.config = config
        self.queue = queue
        self.publish = publish
        self.interval = sweep_interval(queue)
        self._given_store = store
        self._records: DeliveryRecords | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mailfailover-sweep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if self._records is not None and self._given_store is None:
            self._records.store.close()
        self._records = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):  # bounded by stop()
            self.sweep()

    def sweep(self) -> int:
        """One tick: the sweep, if this worker holds the fleet's sweep key; how many tasks
        were published again. Never raises: a failing store or broker waits for a tick."""
        try:
            if self._records is None:
                store = self._given_store or open_store(self.config.state)
                self._records = DeliveryRecords(store, keep=self.queue.keep)
            records = self._records
            token = uuid.uuid4().hex.encode()
            if not records.store.add(SWEEP_KEY, token, ttl=self.interval * 0.9):
                return 0  # another worker sweeps this time
            return redrive(records, publish=self.publish,
                           stale_after=self.queue.broker_visibility_timeout,
                           max_age=self.queue.max_age)  # fmt: skip
        except (StoreError, QueueUnavailable) as exc:
            logger.warning("the sweep for lost tasks failed (%s); the next one tries again", exc)
        except Exception:
            logger.exception("the sweep for lost tasks failed; the next one tries again")
        return 0
