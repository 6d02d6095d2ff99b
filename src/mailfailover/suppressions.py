"""The suppression list: addresses no driver may mail, shared by every provider.

A hard bounce, a complaint or an unsubscribe reported by *any* provider's webhook puts the
address here, and from then on the mailer removes it from every message before any driver
is tried — so after a failover, provider B does not mail the address provider A learned
was dead. Entries live in the state store (``suppression:<address>`` keys), so every
process sharing the store shares the list. Addresses are compared case-insensitively on
their ASCII form (the domain in IDNA): ``Ann@Bücher.example`` and ``ann@xn--bcher-kva.example``
are one entry.

The mailer's check before each send costs no store round trip in the steady state: it
keeps the list in memory and asks the store only for a generation counter, at most every
:data:`REFRESH_INTERVAL` seconds, re-reading the list when another process changed it. An
address suppressed by another process is honoured within that interval; one suppressed
by this process, at once. A list larger than :data:`MAX_SNAPSHOT` is not held in memory:
each send then asks the store for its recipients.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final

import attrs

from .message import parse_mailbox
from .state import StateStore

__all__ = ["REASONS", "Suppression", "SuppressionList", "normalise_address"]

#: Why an address is suppressed.
REASONS: Final = ("bounced", "complained", "unsubscribed", "manual")
PREFIX: Final = "suppression:"
#: Bumped on every change, so processes holding the list in memory know to re-read it.
GENERATION_KEY: Final = "suppression-generation"
#: Seconds a process trusts its copy of the list before asking whether it changed.
REFRESH_INTERVAL: Final = 0.5
#: Entries above which the list is not copied into each process's memory.
MAX_SNAPSHOT: Final = 100_000


def normalise_address(address: str) -> str:
    """The list's key for ``address``: the bare address, lower-cased, domain in IDNA.

    A display name is dropped (``"Ann <Ann@Example.COM>"`` is ``ann@example.com``); an
    invalid address raises ``ValueError``.
    """
    mailbox = parse_mailbox(address)
    return f"{mailbox.local.lower()}@{mailbox.ascii_domain.lower()}"


def _check_reason(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}, not {value!r}")


@attrs.frozen
class Suppression:
    """One entry: the (normalised) address, why, which driver reported it, and when."""

    address: str
    reason: str = attrs.field(validator=_check_reason)
    driver: str | None
    created: dt.datetime

    def to_dict(self) -> dict[str, str | None]:
        return {
            "address": self.address,
            "reason": self.reason,
            "driver": self.driver,
            "created": self.created.isoformat(),
        }

    def _encode(self) -> bytes:
        data = {**self.to_dict(), "created": self.created.timestamp()}
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def _decode(cls, address: str, value: bytes) -> Suppression:
        try:
            data = json.loads(value)
            created = dt.datetime.fromtimestamp(float(data["created"]), tz=dt.timezone.utc)
            return cls(address, data["reason"], data.get("driver"), created)
        except (ValueError, KeyError, TypeError):
            # A value this version cannot read still suppresses: fail closed.
            return cls(address, "manual", None, dt.datetime.fromtimestamp(0, dt.timezone.utc))


class SuppressionList:
    """The suppression list on a state store; ``in``, ``iter`` and ``len`` work on it."""

    def __init__(
        self,
        store: StateStore,
        *,
        clock: Callable[[], float] | None = None,
        cached: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        #: Wall-clock seconds for ``created``: the store's own clock unless given.
        self.clock = store.now if clock is None else clock
        #: Hold the list in memory for :meth:`suppressed` (the mailer's check before sends).
        self.cached = cached
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._snapshot: set[str] | None = None  # None: not read yet, or too large to hold
        self._generation: bytes | None = None
        self._checked_at = float("-inf")

    def add(
        self, address: str, reason: str = "manual", *, driver: str | None = None
    ) -> Suppression:
        """Suppress ``address``; an address already listed keeps its first entry.

        ``reason`` is ``bounced``, ``complained``, ``unsubscribed`` or ``manual``; ``driver``
        the driver whose provider reported it. Returns the entry now on the list.
        """
        key = normalise_address(address)
        now = dt.datetime.fromtimestamp(self.clock(), tz=dt.timezone.utc)
        entry = Suppression(key, reason, driver, now)
        if self.store.add(PREFIX + key, entry._encode()):
            self._changed(add=key)
            return entry
        return self.get(key) or entry

    def remove(self, address: str) -> bool:
        """Take ``address`` off the list; True when it was on it."""
        try:
            key = normalise_address(address)
        except ValueError:
            return False
        if not self.store.delete(PREFIX + key):
            return False
        self._changed(remove=key)
        return True

    def _changed(self, *, add: str | None = None, remove: str | None = None) -> None:
        """Tell every process's copy that the list changed; update this one at once."""
        self.store.incr(GENERATION_KEY)
        with self._lock:
            if self._snapshot is not None:
                if add is not None:
                    self._snapshot.add(add)
                if remove is not None:
                    self._snapshot.discard(remove)

    def _keys(self) -> set[str] | None:
        """The listed keys as this process knows them (refreshed when the list changed), or
        None when the list is too large to hold."""
        now = self._monotonic()
        with self._lock:
            if now - self._checked_at < REFRESH_INTERVAL:
                return self._snapshot
            held, generation = self._snapshot, self._generation
            loaded = self._checked_at != float("-inf")
        current = self.store.get(GENERATION_KEY)
        if loaded and current == generation:
            with self._lock:
                self._checked_at = now
            return held
        # Read the counter first: a change during the scan bumps it again, so the next
        # refresh reads the list again. Erring that way only ever suppresses more.
        entries = self.store.scan(PREFIX)
        keys = {k[len(PREFIX) :] for k, _ in entries} if len(entries) <= MAX_SNAPSHOT else None
        with self._lock:
            self._snapshot, self._generation, self._checked_at = keys, current, now
        return keys

    def get(self, address: str) -> Suppression | None:
        """The entry for ``address``, or None."""
        try:
            key = normalise_address(address)
        except ValueError:
            return None
        value = self.store.get(PREFIX + key)
        return None if value is None else Suppression._decode(key, value)

    def suppressed(self, addresses: Iterable[str]) -> set[str]:
        """Which of ``addresses`` (as given) are on the list: from this process's copy when
        ``cached``, else in one store round trip."""
        given = list(addresses)
        if not given:
            return set()
        held = self._keys() if self.cached else None
        if held is not None and not held:
            return set()  # nobody is listed (the usual case): no address needs normalising
        keys: dict[str, str] = {}
        for address in given:
            try:
                keys[address] = normalise_address(address)
            except ValueError:
                continue
        if not keys:
            return set()
        if held is not None:
            return {address for address, key in keys.items() if key in held}
        values = self.store.get_many([PREFIX + key for key in keys.values()])
        return {address for address, value in zip(keys, values, strict=True) if value is not None}

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and self.get(address) is not None

    def __iter__(self) -> Iterator[Suppression]:
        """Every entry, sorted by address."""
        for key, value in self.store.scan(PREFIX):
            yield Suppression._decode(key[len(PREFIX) :], value)

    def __len__(self) -> int:
        return len(self.store.scan(PREFIX))

    def __repr__(self) -> str:
        return f"<SuppressionList on {self.store!r}>"
