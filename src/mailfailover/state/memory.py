"""``memory://``: state kept in this process only (the default; today's behaviour)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ._base import StateStore, T, Unchanged, Updater

__all__ = ["MemoryStore"]


class MemoryStore(StateStore):
    """A dict under a lock. ``clock`` (wall seconds) is injectable for tests."""

    def __init__(
        self, *, namespace: str = "mailfailover", clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(namespace=namespace)
        self._clock = clock
        self._lock = threading.Lock()
        self._data: dict[str, tuple[bytes, float | None]] = {}

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "mailfailover") -> MemoryStore:
        if url.rstrip("/") not in ("memory:", "memory:/"):
            raise ValueError("a memory store's URL is just memory://")
        return cls(namespace=namespace)

    @property
    def url(self) -> str:
        return "memory://"

    def now(self) -> float:
        return self._clock()

    def _live(self, key: str, now: float) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and now >= expires:
            del self._data[key]
            return None
        return value

    def _put(self, key: str, value: bytes, ttl: float | None, now: float) -> None:
        self._data[key] = (bytes(value), None if ttl is None else now + ttl)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._live(key, self._clock())

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        with self._lock:
            self._put(key, value, ttl, self._clock())

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        with self._lock:
            now = self._clock()
            if self._live(key, now) is not None:
                return False
            self._put(key, value, ttl, now)
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            if self._live(key, self._clock()) is None:
                return False
            del self._data[key]
            return True

    def update(self, key: str, fn: Updater[T], *, ttl: float | None = None) -> T:
        with self._lock:
            now = self._clock()
            new, result = fn(self._live(key, now))
            if new is None:
                self._data.pop(key, None)
            elif not isinstance(new, Unchanged):
                self._put(key, new, ttl, now)
            return result

    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        with self._lock:
            now = self._clock()
            old = self._live(key, now)
            value = (int(old) if old is not None else 0) + amount
            if old is None:
                self._put(key, str(value).encode(), ttl, now)
            else:
                self._data[key] = (str(value).encode(), self._data[key][1])
            return value

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        with self._lock:
            now = self._clock()
            keys = sorted(k for k in self._data if k.startswith(prefix))
            found = [(k, self._live(k, now)) for k in keys]
        return [(k, v) for k, v in found if v is not None]
