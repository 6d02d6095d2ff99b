"""What the status page shows beside ``mailer.health()``: recent attempts, last successes.

:class:`Activity` subscribes to the mailer's attempt hook and keeps the last 100 attempts
(driver, outcome, bounded reason, elapsed time and the recipients' domains — never an
address, subject, body or provider message) and each driver's last success and last
failure (wall-clock times).

Where it keeps them: in this process by default, so under ``mailfailover serve`` each worker
has its own. Given a shared state store (the mailer's own, when its ``state:`` is sqlite or
redis), it also writes them there, so every worker shows every worker's attempts. The
sending thread never waits for that: attempts are queued and a background thread writes
them in batches (every half second); the page reads the store and falls back to this
process's own record when the store does not answer.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .._labels import attempt_outcome, attempt_reason
from ..mailer import Attempt, FailoverMailer
from ..message import Message

__all__ = ["FLUSH_SECONDS", "RECENT", "Activity", "shared_store"]

logger = logging.getLogger("mailfailover.flask")

#: How many attempts are kept.
RECENT = 100
#: How often queued attempts are written to a shared store.
FLUSH_SECONDS = 0.5
_MAX_DOMAINS = 3
_RECENT_KEY = "status:recent"
_TIMES_KEY = "status:times"

Entry = dict[str, Any]
Times = dict[str, dict[str, float]]


def _domains(message: Message) -> list[str]:
    domains: list[str] = []
    for address in message.to:
        # A Message holds only valid single mailboxes, "addr" or "Name <addr>": the domain
        # follows the last "@" (a display name's "@" is always before the address).
        domain = address.rpartition("@")[2].rstrip("> \t").lower()
        if domain not in domains:
            domains.append(domain)
            if len(domains) == _MAX_DOMAINS:
                break
    return domains


def _load(raw: bytes | None, default: Any) -> Any:
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


_TIME_FIELDS = {"sent": "last_success", "unavailable": "last_failure", "rejected": "last_failure"}


def _merge_times(into: Times, entries: Iterable[Entry]) -> Times:
    for entry in entries:
        field = _TIME_FIELDS.get(entry["outcome"])
        if field is not None:
            times = into.setdefault(entry["driver"], {})
            times[field] = max(times.get(field, 0.0), entry["time"])
    return into


def shared_store(mailer: FailoverMailer) -> Any:
    """The mailer's state store when other processes share it (sqlite, redis), else None."""
    store = getattr(mailer, "store", None)
    if store is None:
        return None
    from ..state import MemoryStore, ResilientStore

    inner = store.primary if isinstance(store, ResilientStore) else store
    return None if isinstance(inner, MemoryStore) else store


class Activity:
    """A mailer's recent attempts and each driver's last success and failure."""

    def __init__(
        self,
        size: int = RECENT,
        *,
        store: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.size = size
        #: A :class:`~mailfailover.state.StateStore` every process shares, or None.
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: collections.deque[Entry] = collections.deque(maxlen=size)
        self._times: Times = {}
        self._pending: list[Entry] = []
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._store_failed = False
        self._closed = False

    def follow(self, mailer: FailoverMailer) -> Callable[[], None]:
        """Record ``mailer``'s attempts from now on; returns a function that stops it."""
        return mailer.add_hooks(self.record)

    def record(self, message: Message, attempt: Attempt) -> None:
        entry: Entry = {
            "time": round(self._clock(), 3),
            "driver": attempt.driver,
            "outcome": attempt_outcome(attempt),
            "reason": attempt_reason(attempt),
            "elapsed": round(max(attempt.elapsed, 0.0), 4),
            "domains": _domains(message),
        }
        with self._lock:
            self._recent.append(entry)
            _merge_times(self._times, [entry])
            if self.store is not None:
                self._pending.append(entry)
                if self._flusher is None and not self._closed:
                    self._flusher = threading.Thread(
                        target=self._flush_forever, name="mailfailover-activity", daemon=True
                    )
                    self._flusher.start()

    # -- reading ----------------------------------------------------------------------------

    def recent(self) -> list[Entry]:
        """The kept attempts, newest first (every process's, with a shared store)."""
        shared = self._read(_RECENT_KEY)
        if isinstance(shared, list):
            return list(reversed(shared))
        with self._lock:
            return [dict(entry) for entry in reversed(self._recent)]

    def times(self) -> Times:
        """``{driver: {"last_success": t, "last_failure": t}}`` (Unix times; absent: never)."""
        shared = self._read(_TIMES_KEY)
        if isinstance(shared, dict):
            return shared
        with self._lock:
            return {driver: dict(times) for driver, times in self._times.items()}

    def _read(self, key: str) -> Any:
        if self.store is None:
            return None
        try:
            return _load(self.store.get(key), None)
        except Exception as exc:
            self._store_trouble(exc)
            return None

    # -- writing to a shared store ----------------------------------------------------------

    def flush(self) -> None:
        """Write the queued attempts to the shared store now."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending or self.store is None:
            return
        size = self.size

        def add_recent(raw: bytes | None) -> tuple[bytes, None]:
            kept = _load(raw, [])
            kept = kept if isinstance(kept, list) else []
            merged = sorted(kept + pending, key=lambda e: e.get("time", 0.0))[-size:]
            return _dump(merged), None

        def add_times(raw: bytes | None) -> tuple[bytes, None]:
            kept = _load(raw, {})
            return _dump(_merge_times(kept if isinstance(kept, dict) else {}, pending)), None

        try:
            self.store.update(_RECENT_KEY, add_recent)
            self.store.update(_TIMES_KEY, add_times)
        except Exception as exc:
            self._store_trouble(exc)
        else:
            self._store_failed = False

    def _flush_forever(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Write what is queued and stop the background thread; safe to call twice."""
        with self._lock:
            self._closed = True
            flusher = self._flusher
        self._wake.set()
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(FLUSH_SECONDS * 10)
        self.flush()

    def _store_trouble(self, exc: Exception) -> None:
        if not self._store_failed:
            self._store_failed = True
            logger.warning(
                "the status page's shared record is unavailable (%s); showing this process's",
                type(exc).__name__,
            )
