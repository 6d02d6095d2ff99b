"""The state store interface: a handful of atomic operations on namespaced keys.

Everything mailfailover shares between processes — driver health, the round-robin position,
suppressions, webhook de-duplication, delivery records, rate-limit buckets — is built on
these few operations, so a backend is small and the same contract tests run against each
(``tests/state/``). Values are bytes (callers encode JSON); keys are plain strings without
the namespace, which the store adds itself so several configurations can share one server.

A backend raises :class:`StoreError` for anything that keeps it from answering (unreachable,
timed out, garbage in a value it had to read). Callers on the sending path catch it and fall
back to in-process state: a failing store never stops mail.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Final, TypeVar

__all__ = ["UNCHANGED", "StateStore", "StoreError", "Unchanged"]

T = TypeVar("T")


class StoreError(Exception):
    """The state store could not answer (unreachable, too slow, or corrupt data).

    The text never holds a secret (no URL userinfo, no password).
    """


class Unchanged:
    """The type of :data:`UNCHANGED`."""

    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


#: Returned as the new value by an :meth:`StateStore.update` function to write nothing.
UNCHANGED: Final = Unchanged()

Updater = Callable[[bytes | None], tuple[bytes | Unchanged | None, T]]


class StateStore(abc.ABC):
    """A namespaced key/value store with expiry and atomic read-modify-write.

    Every method may raise :class:`StoreError`. ``ttl`` is in seconds; an expired key reads
    as absent. Times are wall-clock seconds from :meth:`now`, the one clock every user of the
    store agrees on (a backend shared across hosts may take it from the server).
    """

    #: Prefix of every key, followed by ``:``.
    namespace: str

    def __init__(self, *, namespace: str = "mailfailover") -> None:
        if not namespace or any(c in namespace for c in " \r\n\t"):
            raise ValueError("a state namespace is a non-empty word")
        self.namespace = namespace

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, *, namespace: str = "mailfailover") -> StateStore:
        """Build the store a URL names (``memory://``, ``sqlite:///path``, ``redis://...``)."""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The store's URL for display: never with a password."""

    @abc.abstractmethod
    def now(self) -> float:
        """Wall-clock seconds since the epoch, as every user of this store sees them."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes | None:
        """The value, or None when the key is absent or expired."""

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        """The values of several keys in one round trip where the backend can."""
        return [self.get(key) for key in keys]

    @abc.abstractmethod
    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Write ``value``, replacing any; ``ttl`` None keeps it until deleted."""

    def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        """Write several keys (each as :meth:`set`, the same ``ttl``) in one round trip
        where the backend can. Not atomic: after a failure some may be written."""
        for key, value in items.items():
            self.set(key, value, ttl=ttl)

    @abc.abstractmethod
    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Write ``value`` only if the key is absent (or expired); True when written.

        The building block for leases and de-duplication: of many concurrent callers
        exactly one gets True.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the key; True when it existed."""

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove several keys in one round trip where the backend can; how many existed."""
        return sum(1 for key in keys if self.delete(key))

    @abc.abstractmethod
    def update(self, key: str, fn: Updater[T], *, ttl: float | None = None) -> T:
        """Atomically read the key, let ``fn`` decide, write its answer, return its result.

        ``fn(old)`` gets the current value (None when absent) and returns ``(new, result)``:
        ``new`` is the bytes to store (with ``ttl``), None to delete the key, or
        :data:`UNCHANGED` to write nothing. ``fn`` may be called more than once (optimistic
        backends retry on a concurrent write), so it must not have side effects.
        """

    @abc.abstractmethod
    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add ``amount`` to an integer counter (absent counts as 0); the new value.

        ``ttl`` applies when the counter is created.
        """

    @abc.abstractmethod
    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        """Every live ``(key, value)`` whose key starts with ``prefix``, sorted by key."""

    def ping(self) -> None:
        """Raise :class:`StoreError` unless the store answers."""
        self.get("ping")

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release connections; safe to call twice."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} namespace={self.namespace!r}>"


_S = TypeVar("_S", bound=StateStore)
