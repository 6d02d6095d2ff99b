"""A store that never stops mail: on failure, this process's own state; back when it answers.

:class:`ResilientStore` wraps the configured store for the sending path (driver health, the
round-robin position, suppression look-ups). When the store raises :class:`StoreError` —
unreachable, slower than its short timeout, or refusing — the wrapper logs one warning and
answers from a private :class:`MemoryStore` instead; every ``retry_interval`` seconds it tries
the real store again, and on the first answer logs that it rejoined and drops the private
state (the shared state is the truth). Delivery records must not use it: a queue task must
wait for the real store rather than risk a double send on a guess.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._base import StateStore, StoreError, T, Updater
from .memory import MemoryStore

__all__ = ["ResilientStore"]

logger = logging.getLogger("mailfailover")


class ResilientStore(StateStore):
    """``primary`` while it answers; a private in-process store while it does not."""

    def __init__(
        self,
        primary: StateStore,
        *,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(namespace=primary.namespace)
        self.primary = primary
        self.retry_interval = retry_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._fallback: MemoryStore | None = None
        self._retry_at = 0.0

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "mailfailover") -> ResilientStore:
        from . import open_store

        return cls(open_store(url, namespace=namespace))

    @property
    def url(self) -> str:
        return self.primary.url

    @property
    def degraded(self) -> bool:
        """True while answers come from this process's own state."""
        return self._fallback is not None

    def _run(self, op: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            fallback = self._fallback
            skip_primary = fallback is not None and self._clock() < self._retry_at
        if fallback is not None and skip_primary:
            return getattr(fallback, op)(*args, **kwargs)
        try:
            result = getattr(self.primary, op)(*args, **kwargs)
        except StoreError as exc:
            with self._lock:
                self._retry_at = self._clock() + self.retry_interval
                if self._fallback is None:
                    self._fallback = MemoryStore(namespace=self.namespace)
                    logger.warning(
                        "state store %s unavailable (%s): using this process's own state "
                        "until it answers",
                        self.primary.url,
                        exc,
                    )
                fallback = self._fallback
            return getattr(fallback, op)(*args, **kwargs)
        if fallback is not None:
            with self._lock:
                if self._fallback is not None:
                    self._fallback = None
                    logger.info("state store %s answers again: shared state rejoined",
                                self.primary.url)  # fmt: skip
        return result

    def now(self) -> float:
        return float(self._run("now"))

    def get(self, key: str) -> bytes | None:
        result: bytes | None = self._run("get", key)
        return result

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        result: list[bytes | None] = self._run("get_many", list(keys))
        return result

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._run("set", key, value, ttl=ttl)

    def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        self._run("set_many", dict(items), ttl=ttl)

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        return bool(self._run("add", key, value, ttl=ttl))

    def delete(self, key: str) -> bool:
        return bool(self._run("delete", key))

    def delete_many(self, keys: Iterable[str]) -> int:
        return int(self._run("delete_many", list(keys)))

    def update(self, key: str, fn: Updater[T], *, ttl: float | None = None) -> T:
        result: T = self._run("update", key, fn, ttl=ttl)
        return result

    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        return int(self._run("incr", key, amount, ttl=ttl))

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        result: list[tuple[str, bytes]] = self._run("scan", prefix)
        return result

    def ping(self) -> None:
        self.primary.ping()

    def close(self) -> None:
        self.primary.close()
