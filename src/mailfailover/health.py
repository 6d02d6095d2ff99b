"""Per-driver health: a circuit breaker whose state lives in the state store.

A driver is *healthy* until it fails ``failure_threshold`` times in a row with
:class:`~mailfailover.errors.ProviderUnavailable`; it is then *cooling down* for ``cooldown``
seconds, and skipped. A provider that says when to come back (``Retry-After``, a rate-limit
reset) is cooled down for at least that long at once, whatever the threshold, and so is a
provider that timed out: every further try would cost every message a whole timeout. When the
cooldown is over the next real message is the *probe*: one send at a time may try the
driver; success makes it healthy again (and, in the failover strategy, primary again),
failure starts a new cooldown.

**Where the state lives.** One :class:`HealthRecord` per driver, under the key
``health:<configured name>`` of the mailer's :class:`~mailfailover.state.StateStore`: every
process on the same store shares one breaker per driver. Each change is one atomic
:meth:`~mailfailover.state.StateStore.update` of a pure transition function below, so two
processes can never both believe they opened, closed or probe a driver:

- **The probe is a lease** ``{token, expires}``. Claiming it writes a fresh random token;
  only a :class:`Ticket` holding that token can give it back (success, failure, or "could
  not carry this message"), so no other send — in this thread, another thread or another
  process — can free a probe it does not hold. A prober that crashes never wedges the driver:
  its lease expires (:func:`probe_lease`: the send's time budget, or the driver's own
  timeouts, plus a margin), and the next send claims a new one.
- **Late writers never move the state backwards.** ``opened_at`` and ``until`` only move
  forward while the driver is open; a success from a send that started before the driver
  was opened does not close it, and a failure from a send that started before it last
  recovered does not count.
- **Starting, reloading or closing a process writes nothing.** Only failures, recoveries and
  probe claims/releases write. (A reload that *changes* a driver's settings starts that
  driver afresh, once fleet-wide: the record remembers a digest of the settings it was
  reset for.)

**The hot path.** :class:`HealthBoard` keeps a local copy of every driver's record,
refreshed with one ``get_many`` at most every :data:`REFRESH_INTERVAL` seconds, and updated
from the answer of each write; a send reads only that copy unless it has to claim a probe.
So a healthy fleet makes no store round trip per send, and a driver opened by another
process is skipped within :data:`REFRESH_INTERVAL` (well under a second).

Per-process counters (``sent``, ``failed``) stay local: ``DriverHealth.sent`` and ``.failed``
count this process's sends only. Everything else in :class:`DriverHealth` is the store's.

Times in the store are wall-clock seconds from :meth:`StateStore.now`; the board tracks the
store's clock against the mailer's own ``clock`` at every refresh, so a fake clock still
drives cooldowns in tests (the default store is a private ``MemoryStore`` on that clock).
"""

from __future__ import annotations

import enum
import json
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from .state import UNCHANGED, StateStore, StoreError, Unchanged

__all__ = [
    "REFRESH_INTERVAL",
    "DriverHealth",
    "HealthBoard",
    "HealthRecord",
    "Lease",
    "State",
    "Ticket",
    "probe_lease",
]

logger = logging.getLogger("mailfailover")

#: Seconds a process trusts its copy of the shared records before reading them again.
REFRESH_INTERVAL = 0.5
#: Added to a probe's expected duration to make its lease.
LEASE_MARGIN = 5.0
#: A probe's expected duration when neither a deadline nor the driver's timeouts say.
DEFAULT_PROBE_TIME = 60.0
#: How much of a provider's error text the store keeps.
MAX_ERROR_TEXT = 300
#: Longest a send waits for another thread's first read of the records.
FIRST_READ_WAIT = 2.0
#: How many round-robin positions a process takes from the shared counter at once.
ROTATION_BLOCK = 16

KEY_PREFIX = "health:"
ROTATION_KEY = "rotation"


class State(str, enum.Enum):
    HEALTHY = "healthy"
    COOLING_DOWN = "cooling_down"
    PROBING = "probing"


@attrs.frozen
class DriverHealth:
    """A snapshot of one driver's state, as :meth:`FailoverMailer.health` reports it.

    ``sent`` and ``failed`` count this process's sends; the rest is the shared record.
    """

    name: str
    state: State
    consecutive_failures: int
    cooldown_remaining: float
    sent: int
    failed: int
    last_error: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "cooldown_remaining": round(self.cooldown_remaining, 3),
            "sent": self.sent,
            "failed": self.failed,
            "last_error": self.last_error,
        }


# -- the shared record and its transitions (pure functions) -----------------------------------


@attrs.frozen
class Lease:
    """The probe: held by whoever wrote ``token``, until ``expires`` (store time)."""

    token: str
    expires: float


@attrs.frozen
class HealthRecord:
    """One driver's breaker as the store holds it. Times are store (wall-clock) seconds."""

    failures: int = 0
    #: Skipped until then; None when healthy.
    until: float | None = None
    #: When the current cooldown started (only ever moves forward while open).
    opened_at: float | None = None
    #: When it last recovered: failures from sends that started earlier do not count.
    closed_at: float | None = None
    last_error: str | None = None
    retry_after: float | None = None
    probe: Lease | None = None
    #: Digest of the settings the record was last reset for by a reload (None: never).
    config: str | None = None

    def probe_held(self, now: float) -> bool:
        return self.probe is not None and self.probe.expires > now

    def state(self, now: float) -> State:
        if self.until is None:
            return State.HEALTHY
        return State.PROBING if self.probe_held(now) else State.COOLING_DOWN

    def to_bytes(self) -> bytes:
        data = attrs.asdict(self, recurse=True)
        return json.dumps({k: v for k, v in data.items() if v is not None}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> HealthRecord:
        """Decode a stored record; absent is a fresh (healthy) one. Garbage is ValueError."""
        if raw is None:
            return cls()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise TypeError("not an object")
            probe = data.pop("probe", None)
            lease = None if probe is None else Lease(str(probe["token"]), _number(probe["expires"]))
            record = cls(
                failures=int(data.pop("failures", 0)),
                until=_optional_number(data.pop("until", None)),
                opened_at=_optional_number(data.pop("opened_at", None)),
                closed_at=_optional_number(data.pop("closed_at", None)),
                last_error=_optional_text(data.pop("last_error", None)),
                retry_after=_optional_number(data.pop("retry_after", None)),
                probe=lease,
                config=_optional_text(data.pop("config", None)),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not a health record ({type(exc).__name__})") from None
        return record


_HEALTHY = HealthRecord()


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError("not a finite number")
    return float(value)


def _optional_number(value: object) -> float | None:
    return None if value is None else _number(value)


def _optional_text(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError("not a string")
    return value


Transition = Literal["opened", "reopened", "recovered"]
ClaimResult = Literal["won", "healthy", "cooling", "held"]


def claim_probe(
    record: HealthRecord, now: float, token: str, lease: float
) -> tuple[HealthRecord | None, ClaimResult]:
    """Take the probe if the cooldown is over and nobody holds a live lease."""
    if record.until is None:
        return None, "healthy"
    if now < record.until:
        return None, "cooling"
    if record.probe_held(now):
        return None, "held"
    return attrs.evolve(record, probe=Lease(token, now + lease)), "won"


def release_probe(record: HealthRecord, token: str) -> HealthRecord | None:
    """Give the probe back — only if ``token`` holds it."""
    if record.probe is None or record.probe.token != token:
        return None
    return attrs.evolve(record, probe=None)


def record_success(
    record: HealthRecord, now: float, started: float, token: str | None
) -> tuple[HealthRecord | None, Transition | None]:
    """The provider answered: healthy again, unless this send predates the cooldown."""
    holds_probe = token is not None and record.probe is not None and record.probe.token == token
    if not holds_probe and record.opened_at is not None and started < record.opened_at:
        return None, None  # a late writer: the driver was opened after this send began
    if record.until is None and record.failures == 0 and record.probe is None:
        return None, None
    recovered = record.until is not None
    fresh = HealthRecord(
        closed_at=now if recovered else record.closed_at,
        last_error=record.last_error,
        config=record.config,
    )
    return fresh, "recovered" if recovered else None


def record_failure(
    record: HealthRecord,
    now: float,
    started: float,
    token: str | None,
    *,
    forced: bool,
    error: str,
    retry_after: float | None,
    trip: bool,
    threshold: int,
    cooldown: float,
) -> tuple[HealthRecord | None, Transition | None]:
    """Count a failure; the probe's holder, or a send that used a cooling driver as a last
    resort, starts a new cooldown; ``trip`` (a timeout) opens the breaker at once."""
    holds_probe = token is not None and record.probe is not None and record.probe.token == token
    if record.closed_at is not None and started < record.closed_at and not holds_probe:
        return None, None  # a late writer: the driver recovered after this send began
    failures = record.failures + 1
    was_probe = holds_probe or (forced and record.until is not None)
    tripped = trip or was_probe or failures >= threshold
    wait = max(cooldown if tripped else 0.0, retry_after or 0.0)
    until, opened_at = record.until, record.opened_at
    transition: Transition | None = None
    if wait > 0:
        target = now + wait
        until = target if until is None else max(until, target)
        if opened_at is None:
            opened_at, transition = now, "opened"
        elif was_probe:
            opened_at, transition = max(opened_at, now), "reopened"
    return attrs.evolve(
        record,
        failures=failures,
        until=until,
        opened_at=opened_at,
        last_error=error[:MAX_ERROR_TEXT],
        retry_after=retry_after if retry_after is not None else record.retry_after,
        probe=None if holds_probe else record.probe,
    ), transition


def reset_for(record: HealthRecord, digest: str) -> HealthRecord | None:
    """A reload changed the driver's settings: start afresh, once per change fleet-wide."""
    if record.config == digest:
        return None
    return HealthRecord(config=digest)


# -- the board: one process's view of the shared records --------------------------------------


@attrs.frozen
class Ticket:
    """One send's right to use a driver; ``token`` is set when it holds the probe."""

    name: str
    started: float
    token: str | None = None
    forced: bool = False


@attrs.define
class _Entry:
    record: HealthRecord
    seq: int


def probe_lease(budget: float | None, settings: Mapping[str, Any] | None) -> float:
    """How long a probe may hold its lease: its time budget, else the driver's timeouts
    (``connect_timeout`` + ``timeout`` when it has them), plus :data:`LEASE_MARGIN`."""
    if budget is not None:
        return budget + LEASE_MARGIN
    settings = settings or {}
    total = 0.0
    for key in ("connect_timeout", "timeout"):
        value = settings.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            total += float(value)
    return (total or DEFAULT_PROBE_TIME) + LEASE_MARGIN


class HealthBoard:
    """This process's view of every driver's shared health record, and its only writer.

    Thread-safe; its lock guards only the local copy and counters, never a store call.
    """

    def __init__(
        self,
        store: StateStore,
        names: Sequence[str],
        *,
        failure_threshold: int,
        cooldown: float,
        clock: Callable[[], float],
        refresh_interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.store = store
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._names: tuple[str, ...] = tuple(names)
        self._cache: dict[str, _Entry] = {}
        self._seq = 0
        self._fetched: float | None = None
        self._refreshing = False
        # Set once the first read has come back (or failed): until then a send waits for
        # it rather than take an empty copy for "every driver is healthy".
        self._loaded = threading.Event()
        self._offset = 0.0  # store time minus the mailer's clock, as of the last refresh
        self._synced = False
        self._counts: dict[str, list[int]] = {}
        self._rotation: list[int] = []
        self._garbage_logged = False

    # -- time and the local copy ----------------------------------------------------------

    def now(self) -> float:
        """Store time, estimated from the mailer's clock between refreshes."""
        if self._synced:
            return self._clock() + self._offset
        self._sync_clock()
        return self._clock() + self._offset

    def _sync_clock(self) -> None:
        try:
            self._offset = self.store.now() - self._clock()
            self._synced = True
        except StoreError:
            pass

    def configure(self, names: Iterable[str], failure_threshold: int, cooldown: float) -> None:
        """Take a reloaded configuration's driver names and policy (writes nothing)."""
        with self._lock:
            self._names = tuple(names)
            self.failure_threshold, self.cooldown = failure_threshold, cooldown
            self._fetched = None

    def _next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _keep(self, name: str, record: HealthRecord, seq: int) -> None:
        """Cache ``record`` unless an answer to a later request is already there."""
        with self._lock:
            entry = self._cache.get(name)
            if entry is None or entry.seq <= seq:
                self._cache[name] = _Entry(record, seq)

    def _decode(self, raw: bytes | None) -> HealthRecord:
        try:
            return HealthRecord.from_bytes(raw)
        except ValueError as exc:
            if not self._garbage_logged:
                self._garbage_logged = True
                logger.warning("health state store holds an unreadable record (%s); "
                               "treating it as healthy", exc)  # fmt: skip
            return HealthRecord()

    def refresh(self) -> None:
        """Read every driver's record in one round trip."""
        with self._lock:
            names = self._names
            self._seq += 1
            seq = self._seq
        try:
            values = self.store.get_many([KEY_PREFIX + name for name in names])
            self._offset = self.store.now() - self._clock()
            self._synced = True
        except StoreError:
            return
        for name, raw in zip(names, values, strict=True):
            self._keep(name, self._decode(raw), seq)

    def view(self, name: str) -> HealthRecord:
        """The local copy of ``name``'s record, refreshed if it is older than the interval."""
        now = self._clock()
        with self._lock:
            fetched = self._fetched
            if fetched is not None and now - fetched < self.refresh_interval:
                entry = self._cache.get(name)  # the hot path: one lock, no store call
                return _HEALTHY if entry is None else entry.record
            go = not self._refreshing
            if go:
                self._refreshing = True
        if go:
            try:
                self.refresh()
            finally:
                with self._lock:
                    self._fetched = self._clock()
                    self._refreshing = False
                self._loaded.set()
        elif not self._loaded.is_set():
            self._loaded.wait(FIRST_READ_WAIT)
        with self._lock:
            entry = self._cache.get(name)
        return _HEALTHY if entry is None else entry.record

    def _update(
        self, name: str, fn: Callable[[HealthRecord], tuple[HealthRecord | None, Any]]
    ) -> Any:
        """Apply a transition atomically in the store; cache what it left there."""
        seq = self._next_seq()

        def apply(raw: bytes | None) -> tuple[bytes | Unchanged, tuple[HealthRecord, Any]]:
            old = self._decode(raw)
            new, result = fn(old)
            if new is None:
                return UNCHANGED, (old, result)
            return new.to_bytes(), (new, result)

        try:
            record, result = self.store.update(KEY_PREFIX + name, apply)
        except StoreError:
            return None
        self._keep(name, record, seq)
        return result

    # -- what a send asks ---------------------------------------------------------------

    def ready(self, name: str) -> bool:
        """Would a send use this driver now, going by the local copy (no round trip)?"""
        record, now = self.view(name), self.now()
        return record.until is None or (now >= record.until and not record.probe_held(now))

    def opened_at(self, name: str) -> float:
        return self.view(name).opened_at or 0.0

    def acquire(self, name: str, lease: float | Callable[[], float]) -> Ticket | str:
        """A ticket to use the driver now, or why not: claims the probe after a cooldown.

        ``lease`` (seconds, or a function giving them) is how long a claimed probe is held.
        """
        record, now = self.view(name), self.now()
        if record.until is None:
            return Ticket(name, now)
        if now < record.until:
            return f"cooling down ({record.until - now:.1f} s left)"
        if record.probe_held(now):
            return "probe in progress"
        token = uuid.uuid4().hex
        seconds = lease() if callable(lease) else lease
        result = self._update(name, lambda r: claim_probe(r, now, token, seconds))
        if result == "won":
            return Ticket(name, now, token)
        if result == "healthy" or result is None:  # None: the store did not answer
            return Ticket(name, now)
        if result == "held":
            return "probe in progress"
        record = self.view(name)
        left = 0.0 if record.until is None else record.until - now
        return f"cooling down ({left:.1f} s left)"

    def force(self, name: str, lease: float | Callable[[], float]) -> Ticket:
        """Use a cooling driver as a last resort; takes the probe if it is free."""
        now = self.now()
        token = uuid.uuid4().hex
        seconds = lease() if callable(lease) else lease
        result = self._update(name, lambda r: claim_probe(r, now, token, seconds))
        return Ticket(name, now, token if result == "won" else None, forced=True)

    # -- what a send reports --------------------------------------------------------------

    def succeeded(self, ticket: Ticket, *, delivered: bool = True) -> None:
        """The provider answered (delivered, or rejected the message: it is up either way)."""
        if delivered:
            self._count(ticket.name, 0)
        if ticket.token is None:
            record = self.view(ticket.name)
            if record.until is None and record.failures == 0:
                return  # nothing to change: no write on the healthy path
        now = self.now()
        transition = self._update(
            ticket.name, lambda r: record_success(r, now, ticket.started, ticket.token)
        )
        if transition == "recovered":
            logger.info("%s recovered: back in rotation", ticket.name)

    def failed(self, ticket: Ticket, error: str, retry_after: float | None, *, trip: bool) -> None:
        """Count a failure against the driver (and give back its probe, if held)."""
        self._count(ticket.name, 1)
        now = self.now()
        threshold, cooldown = self.failure_threshold, self.cooldown
        transition = self._update(ticket.name, lambda r: record_failure(
            r, now, ticket.started, ticket.token, forced=ticket.forced, error=error,
            retry_after=retry_after, trip=trip, threshold=threshold, cooldown=cooldown,
        ))  # fmt: skip
        if transition in ("opened", "reopened"):
            record = self.view(ticket.name)
            left = 0.0 if record.until is None else record.until - now
            logger.warning(
                "%s is cooling down for %.0f s%s: %s", ticket.name, left,
                " (its probe failed)" if transition == "reopened" else "", error,
            )  # fmt: skip

    def release(self, ticket: Ticket) -> None:
        """The ticket was not used to reach the provider: give back its probe, if held."""
        token = ticket.token
        if token is not None:
            self._update(ticket.name, lambda r: (release_probe(r, token), None))

    def reset_changed(self, name: str, digest: str) -> None:
        """A reload changed ``name``'s settings: start it afresh (once per change)."""
        self._update(name, lambda r: (reset_for(r, digest), None))
        with self._lock:
            self._counts.pop(name, None)

    # -- the shared round-robin position ------------------------------------------------

    def next_position(self) -> int:
        """The next round-robin position; taken from the store in blocks."""
        with self._lock:
            if self._rotation:
                return self._rotation.pop()
        try:
            end = self.store.incr(ROTATION_KEY, ROTATION_BLOCK)
        except StoreError:
            end = None
        with self._lock:
            if end is None:
                self._seq += 1
                return self._seq
            block = list(range(end - ROTATION_BLOCK, end))
            block.reverse()
            position = block.pop()
            self._rotation = block
            return position

    # -- reporting ------------------------------------------------------------------------

    def _count(self, name: str, index: int) -> None:
        with self._lock:
            self._counts.setdefault(name, [0, 0])[index] += 1

    def snapshot(self) -> list[DriverHealth]:
        """Each driver's state, read fresh from the store, in configured order."""
        self.refresh()
        now = self.now()
        with self._lock:
            names = self._names
            entries = {n: self._cache.get(n) for n in names}
            counts = {n: tuple(self._counts.get(n, (0, 0))) for n in names}
        found = []
        for name in names:
            entry = entries[name]
            record = HealthRecord() if entry is None else entry.record
            found.append(_describe(name, record, now, counts[name]))
        return found


def _describe(name: str, record: HealthRecord, now: float, counts: Sequence[int]) -> DriverHealth:
    state = record.state(now)
    remaining = 0.0
    if state is State.COOLING_DOWN and record.until is not None:
        remaining = max(record.until - now, 0.0)
    return DriverHealth(
        name=name, state=state, consecutive_failures=record.failures,
        cooldown_remaining=remaining, sent=counts[0], failed=counts[1],
        last_error=record.last_error,
    )  # fmt: skip


def read_health(store: StateStore, names: Sequence[str]) -> list[DriverHealth]:
    """Each named driver's state as ``store`` holds it, for ``mailfailover health``.

    One read; raises :class:`StoreError` when the store does not answer. ``sent`` and
    ``failed`` are 0: they are per-process counters that no store holds.
    """
    values = store.get_many([KEY_PREFIX + name for name in names])
    now = store.now()
    found = []
    for name, raw in zip(names, values, strict=True):
        try:
            record = HealthRecord.from_bytes(raw)
        except ValueError:
            record = HealthRecord(last_error="(the stored record is unreadable)")
        found.append(_describe(name, record, now, (0, 0)))
    return found
