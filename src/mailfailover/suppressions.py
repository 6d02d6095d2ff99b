"""The suppression list: addresses no driver may mail, shared by every provider.

A hard bounce, a complaint or an unsubscribe reported by *any* provider's webhook puts the
address here, and from then on the mailer removes it from every message before any driver
is tried — so after a failover, provider B does not mail the address provider A learned
was dead. Entries live in the state store (``suppression:<address>`` keys), so every
process sharing the store shares the list. Addresses are compared case-insensitively on
their ASCII form (the domain in IDNA): ``Ann@Bücher.example`` and ``ann@xn--bcher-kva.example``
are one entry.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Final

import attrs

from .message import parse_mailbox
from .state import StateStore

__all__ = ["REASONS", "Suppression", "SuppressionList", "normalise_address"]

#: Why an address is suppressed.
REASONS: Final = ("bounced", "complained", "unsubscribed", "manual")
PREFIX: Final = "suppression:"


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

    def __init__(self, store: StateStore, *, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        #: Wall-clock seconds for ``created``: the store's own clock unless given.
        self.clock = store.now if clock is None else clock

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
            return entry
        return self.get(key) or entry

    def remove(self, address: str) -> bool:
        """Take ``address`` off the list; True when it was on it."""
        try:
            key = normalise_address(address)
        except ValueError:
            return False
        return self.store.delete(PREFIX + key)

    def get(self, address: str) -> Suppression | None:
        """The entry for ``address``, or None."""
        try:
            key = normalise_address(address)
        except ValueError:
            return None
        value = self.store.get(PREFIX + key)
        return None if value is None else Suppression._decode(key, value)

    def suppressed(self, addresses: Iterable[str]) -> set[str]:
        """Which of ``addresses`` (as given) are on the list, in one store round trip."""
        given = list(addresses)
        keys: dict[str, str] = {}
        for address in given:
            try:
                keys[address] = PREFIX + normalise_address(address)
            except ValueError:
                continue
        values = self.store.get_many(list(keys.values())) if keys else []
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
