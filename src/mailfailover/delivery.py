"""Delivery records and one delivery try: the broker-free heart of queued delivery.

:mod:`mailfailover.celery` is a thin Celery task around :func:`deliver`; everything that
decides whether a message is sent, retried or given up lives here and runs without a broker.

A message's record lives in the state store under ``delivery:<Message-ID>`` (JSON)::

    {"message_id", "status", "created", "expires", "tries", "next_try", "driver",
     "provider_message_id", "attempts": [...], "error", "ambiguous", "inflight"}

``status`` is ``queued``, ``sent``, ``rejected``, ``suppressed`` or ``dead``. The rules that
make the mail exactly-once while the queue is only at-least-once:

* A record that is ``sent`` (or ``rejected``, ``suppressed``, ``dead``) is final: a task
  that finds it does nothing, however often the broker delivers the task again.
* Sending holds a lease, ``lease:<Message-ID>``, taken with the store's atomic ``add`` and
  expiring after ``queue.lease`` seconds: two workers never send one message at once.
* Just before the mailer is called the record gets an ``inflight`` mark, cleared with the
  outcome. A worker that finds the mark under a lease of its own knows the previous holder
  died in the middle of a send: the provider may or may not have the message. That, and a
  timeout after the request was written (``ProviderUnavailable.ambiguous``), is an
  *ambiguous* failure, handled by ``queue.on_ambiguous``: ``dead`` (the default: park it as a
  dead letter for the operator, who can check the provider's log and re-drive it) or
  ``retry`` (accept a possible duplicate; it carries the same Message-ID, which mail clients
  de-duplicate on, and providers with idempotency keys derived from it — Resend, Brevo —
  drop it themselves).
* ``AllProvidersFailed`` schedules the next try after an exponential backoff with jitter
  that never ends before the soonest driver's cooldown, until ``queue.max_age``; then the
  message is ``dead``, with every attempt kept, an error-level log line and the ``on_dead``
  hook. A dead letter keeps the message itself under ``dead:<Message-ID>`` for a re-drive.

* **Nothing is lost with the broker's task** (a transactional outbox). The message's
  content is kept in the store, under ``outbox:<Message-ID>`` with a small index entry
  ``pending:<Message-ID>``, from before its task is published until its record is final.
  :func:`redrive` (run by the workers, one at a time across the fleet) publishes a new
  task for a record still ``queued`` that nobody has touched for the broker's visibility
  timeout: its task was lost (a worker killed as it took it, an enqueuer that died
  between the store and the broker). A task that was only slow comes back twice, and the
  rules above make the second copy do nothing.

The store here must be the raw store, not one that falls back to memory when the server is
down: a :class:`~mailfailover.state.StoreError` stops the try before anything is sent, and the
task comes back later.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

from .errors import (
    AllProvidersFailed,
    InvalidMessage,
    MessageRejected,
    MessageSuppressed,
    ProviderUnavailable,
)
from .message import Message
from .state import StateStore, StoreError, Unchanged

__all__ = [
    "FINAL_STATUSES",
    "REDRIVE_LIMIT",
    "STATUSES",
    "DeliveryPolicy",
    "DeliveryRecords",
    "Outcome",
    "deliver",
    "redrive",
]

logger = logging.getLogger("mailfailover")

STATUSES = ("queued", "sent", "rejected", "suppressed", "dead")
FINAL_STATUSES = frozenset({"sent", "rejected", "suppressed", "dead"})
#: A task woken this much before its record's ``next_try`` still tries (timer slack).
EARLY_SLACK = 0.25
#: Share of the lease during which a try trusts that nobody else holds it (see _Held).
LEASE_TRUST = 0.9

#: At most this many lost tasks are published again by one :func:`redrive` sweep.
REDRIVE_LIMIT = 500

Record = dict[str, Any]
OnDead = Callable[[str, Record], object]
Publish = Callable[[Mapping[str, Any], float], None]


@attrs.frozen
class DeliveryPolicy:
    """How long and how often to try; built from the ``queue:`` section (seconds)."""

    max_age: float = 86400.0
    backoff: float = 30.0
    backoff_max: float = 1800.0
    lease: float = 300.0
    on_ambiguous: Literal["dead", "retry"] = "dead"
    keep: float = 7 * 86400.0

    @classmethod
    def from_queue_config(cls, queue: Any) -> DeliveryPolicy:
        return cls(
            max_age=queue.max_age,
            backoff=queue.backoff,
            backoff_max=queue.backoff_max,
            lease=queue.lease,
            on_ambiguous=queue.on_ambiguous,
            keep=queue.keep,
        )

    def delay(self, tries: int, rng: Callable[[], float] = random.random) -> float:
        """The wait after the ``tries``-th failed try: doubling from ``backoff`` up to
        ``backoff_max``, then jittered into its upper half (so waiting workers spread out
        but never come back at once)."""
        full = min(self.backoff_max, self.backoff * 2 ** max(tries - 1, 0))
        return float(full / 2 + rng() * full / 2)


@attrs.frozen
class Outcome:
    """What the task does next: ``done``, or ``retry`` after ``countdown`` seconds."""

    action: Literal["done", "retry"]
    status: str
    countdown: float = 0.0
    #: True when this call sent (or tried to send) the message.
    tried: bool = False


def _dumps(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()


def _loads(raw: bytes | None) -> Record | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise StoreError("a delivery record in the state store is not JSON") from None
    if not isinstance(value, dict):
        raise StoreError("a delivery record in the state store is not a JSON object")
    return value


class DeliveryRecords:
    """The delivery records (and dead letters) kept in one state store."""

    def __init__(self, store: StateStore, *, keep: float = 7 * 86400.0) -> None:
        self.store = store
        self.keep = keep

    @staticmethod
    def key(message_id: str) -> str:
        return f"delivery:{message_id}"

    @staticmethod
    def lease_key(message_id: str) -> str:
        return f"lease:{message_id}"

    @staticmethod
    def dead_key(message_id: str) -> str:
        return f"dead:{message_id}"

    @staticmethod
    def content_key(message_id: str) -> str:
        return f"outbox:{message_id}"

    @staticmethod
    def pending_key(message_id: str) -> str:
        return f"pending:{message_id}"

    def keep_content(
        self, message_id: str, message: Mapping[str, Any], *, at: float, ttl: float
    ) -> None:
        """Keep a message's content until its record is final (module doc): the content
        under ``outbox:``, and a small ``pending:`` entry that :func:`redrive` scans. Both
        expire with the record (``ttl``) if nothing removes them first."""
        self.store.set_many(
            {
                self.content_key(message_id): _dumps(dict(message)),
                self.pending_key(message_id): _dumps({"at": at}),
            },
            ttl=ttl,
        )

    def content(self, message_id: str) -> dict[str, Any] | None:
        """The content kept for a message not yet final, in :meth:`Message.to_dict` shape."""
        return _loads(self.store.get(self.content_key(message_id)))

    def forget_content(self, message_id: str) -> None:
        """Drop a message's kept content (its record is final, or it was never queued)."""
        self.store.delete_many([self.pending_key(message_id), self.content_key(message_id)])

    def pending(self) -> list[tuple[str, float]]:
        """Every message whose content is kept, as ``(message_id, kept_at)``."""
        found = []
        for key, raw in self.store.scan("pending:"):
            entry = _loads(raw) or {}
            found.append((key[len("pending:") :], float(entry.get("at", 0.0))))
        return found

    def get(self, message_id: str) -> Record | None:
        return _loads(self.store.get(self.key(message_id)))

    def status(
        self, message_id: str, *, events: Callable[[Record], list[Any]] | None = None
    ) -> dict[str, Any] | None:
        """The public view of a record (None when there is none): status, driver, attempts,
        tries, timing, how often the sweep published it again (``redrives``), and the
        delivery events ``events(record)`` finds for it."""
        record = self.get(message_id)
        if record is None:
            return None
        view = {
            "message_id": message_id,
            "status": record.get("status", "queued"),
            "driver": record.get("driver"),
            "provider_message_id": record.get("provider_message_id"),
            "tries": record.get("tries", 0),
            "attempts": record.get("attempts", []),
            "created": record.get("created"),
            "expires": record.get("expires"),
            "next_try": record.get("next_try"),
            "error": record.get("error"),
            "ambiguous": bool(record.get("ambiguous")),
            "sending": bool(record.get("inflight")),
            "redrives": int(record.get("redrives", 0)),
            "events": [],
        }
        if events is not None:
            try:
                view["events"] = list(events(record))
            except Exception:  # events are extra detail: never fail a status for them
                logger.exception("reading the delivery events of %s failed", message_id)
        return view

    def create(self, message_id: str, *, created: float, expires: float) -> bool:
        """Write a fresh ``queued`` record unless one exists; True when written."""
        record = {
            "message_id": message_id,
            "status": "queued",
            "created": created,
            "expires": expires,
            "tries": 0,
            "attempts": [],
        }
        ttl = max(expires - self.store.now(), 0.0) + self.keep
        return self.store.add(self.key(message_id), _dumps(record), ttl=ttl)

    def change(
        self, message_id: str, fn: Callable[[Record], Record | None], *, ttl: float | None
    ) -> Record | None:
        """Atomically apply ``fn`` to the record (None from ``fn``: leave it as it is)."""

        def step(raw: bytes | None) -> tuple[bytes | Unchanged | None, Record | None]:
            old = _loads(raw)
            if old is None:
                return Unchanged(), None
            new = fn(dict(old))
            if new is None:
                return Unchanged(), old
            return _dumps(new), new

        return self.store.update(self.key(message_id), step, ttl=ttl)

    def put(self, message_id: str, record: Record, *, ttl: float | None) -> None:
        """Write a record as it is (only under the message's lease: see :func:`deliver`)."""
        self.store.set(self.key(message_id), _dumps(record), ttl=ttl)

    def take_lease(self, message_id: str, token: str, ttl: float) -> bool:
        return self.store.add(self.lease_key(message_id), token.encode(), ttl=ttl)

    def release_lease(self, message_id: str, token: str) -> None:
        """Give the lease back, only if it is still ours (it may have expired and moved)."""
        mine = token.encode()

        def step(raw: bytes | None) -> tuple[bytes | Unchanged | None, None]:
            return (None if raw == mine else Unchanged()), None

        self.store.update(self.lease_key(message_id), step)

    def bury(self, message_id: str, message: Mapping[str, Any], at: float) -> None:
        """Keep a dead message's content for a re-drive (no expiry: an operator decides)."""
        self.store.set(self.dead_key(message_id), _dumps({"message": message, "dead_at": at}))

    def dead(self) -> list[tuple[str, Record]]:
        """Every dead letter as ``(message_id, record)``, oldest Message-ID first."""
        found = []
        for key, _ in self.store.scan("dead:"):
            message_id = key[len("dead:") :]
            record = self.get(message_id)
            if record is not None and record.get("status") == "dead":
                found.append((message_id, record))
        return found

    def dead_message(self, message_id: str) -> dict[str, Any] | None:
        """The content of a dead letter, in :meth:`Message.to_dict` shape."""
        found = _loads(self.store.get(self.dead_key(message_id)))
        return None if found is None else dict(found["message"])

    def revive(self, message_id: str, *, max_age: float) -> dict[str, Any] | None:
        """Put a dead letter back to ``queued`` with a fresh ``max_age``; its message, or
        None when it is not dead. The attempts so far are kept."""
        message = self.dead_message(message_id)
        if message is None:
            return None
        now = self.store.now()

        def fn(record: Record) -> Record | None:
            if record.get("status") != "dead":
                return None
            record.update(status="queued", expires=now + max_age, next_try=None, error=None,
                          inflight=None, ambiguous=False, revived=now)  # fmt: skip
            return record

        record = self.change(message_id, fn, ttl=max_age + self.keep)
        if record is None or record.get("status") != "queued":
            return None
        self.keep_content(message_id, message, at=now, ttl=max_age + self.keep)
        self.store.delete(self.dead_key(message_id))
        return message


def _attempt_dicts(attempts: Any, tries: int, at: float) -> list[dict[str, Any]]:
    return [{**attempt.to_dict(), "try": tries, "at": round(at, 3)} for attempt in attempts]


def _is_ambiguous(exc: AllProvidersFailed) -> bool:
    return any(isinstance(a.error, ProviderUnavailable) and a.error.ambiguous for a in exc.attempts)


def _soonest_cooldown(mailer: Any) -> float:
    """Seconds until the first driver's cooldown ends (0 when one is ready now)."""
    try:
        remaining = [float(h.cooldown_remaining) for h in mailer.health()]
    except Exception:  # health is advice for the wait, never a reason to lose the message
        logger.exception("reading the drivers' health failed; backing off without it")
        return 0.0
    return max(min(remaining, default=0.0), 0.0)


class _Held:
    """A message under this try's lease, with its record in memory.

    Only a lease holder writes a record that is not final (``enqueue`` only ever adds a
    missing one, and a re-drive only touches dead ones), so while the lease is surely still
    ours each write is one plain ``set`` and the release one ``delete``: five round trips
    for a delivery instead of a dozen. Past :data:`LEASE_TRUST` of the lease (a send that
    overran) every write is an atomic read-modify-write that never overwrites a final
    record, and the release deletes the lease only if it is still ours.
    """

    def __init__(self, records: DeliveryRecords, message_id: str, token: str, lease: float):
        self.records = records
        self.message_id = message_id
        self.token = token
        self.lease = lease
        self.taken = time.monotonic()
        self.record: Record = {}

    def fresh(self) -> bool:
        return time.monotonic() - self.taken < self.lease * LEASE_TRUST

    def change(self, fn: Callable[[Record], Record | None], *, ttl: float | None) -> Record:
        """Apply ``fn`` to the record and write it; the record as it now stands."""
        if self.fresh():
            new = fn(dict(self.record))
            if new is not None:
                self.records.put(self.message_id, new, ttl=ttl)
                self.record = new
            return self.record
        changed = self.records.change(self.message_id, fn, ttl=ttl)
        if changed is not None:
            self.record = changed
        return self.record

    def release(self) -> None:
        try:
            if self.fresh():
                self.records.store.delete(self.records.lease_key(self.message_id))
            else:
                self.records.release_lease(self.message_id, self.token)
        except StoreError:  # it expires on its own
            logger.warning("could not release the lease on %s; it expires by itself",
                           self.message_id)  # fmt: skip


def deliver(
    data: Mapping[str, Any],
    *,
    mailer: Any,
    records: DeliveryRecords,
    policy: DeliveryPolicy,
    token: str,
    enqueued_at: float | None = None,
    on_dead: OnDead | None = None,
    rng: Callable[[], float] = random.random,
) -> Outcome:
    """Make one delivery try for the message ``data`` (:meth:`Message.to_dict` shape).

    ``mailer`` is a :class:`~mailfailover.FailoverMailer`; ``token`` names this try's lease
    (unique per try). Raises :class:`~mailfailover.state.StoreError` when the store cannot be
    read or written before the send (nothing was sent: try again later).
    """
    try:
        message = Message.from_dict(data)
    except (InvalidMessage, TypeError, ValueError) as exc:
        # Enqueue validated it; only a hand-made or corrupted task gets here. Retrying
        # cannot help, so it is refused with a log line rather than looping.
        logger.error("a queued message could not be read and is dropped: %s", exc)
        return Outcome("done", "rejected")
    message_id = message.message_id
    if not records.take_lease(message_id, token, policy.lease):
        found = records.get(message_id)
        if found is not None and found.get("status") in FINAL_STATUSES:
            return Outcome("done", found["status"])
        # Another worker is sending it; if that worker dies, its lease runs out and this
        # copy finds the inflight mark then.
        return Outcome("retry", "queued", policy.lease)
    held = _Held(records, message_id, token, policy.lease)
    try:
        now = records.store.now()
        record = records.get(message_id)
        if record is None:  # the worker was faster than enqueue, or enqueue's write failed
            created = now if enqueued_at is None else float(enqueued_at)
            record = {"message_id": message_id, "status": "queued", "created": created,
                      "expires": created + policy.max_age, "tries": 0, "attempts": []}  # fmt: skip
            live = max(created + policy.max_age - now, 0.0) + policy.keep
            records.keep_content(message_id, data, at=created, ttl=live)
        held.record = record
        if record["status"] in FINAL_STATUSES:
            logger.debug("%s is already %s; nothing to do", message_id, record["status"])
            return Outcome("done", record["status"])
        next_try = record.get("next_try")
        if next_try is not None and now < next_try - EARLY_SLACK:
            # An early copy (a broker redelivery, or a wait longer than one countdown may be).
            return Outcome("retry", "queued", min(next_try - now, policy.backoff_max))
        return _try_under_lease(message, data, held, mailer=mailer, policy=policy,
                                token=token, on_dead=on_dead, rng=rng)  # fmt: skip
    finally:
        held.release()


def _try_under_lease(
    message: Message,
    data: Mapping[str, Any],
    held: _Held,
    *,
    mailer: Any,
    policy: DeliveryPolicy,
    token: str,
    on_dead: OnDead | None,
    rng: Callable[[], float],
) -> Outcome:
    record = held.record
    now = held.records.store.now()
    tries = int(record.get("tries", 0)) + 1
    live = max(float(record["expires"]) - now, 0.0) + policy.keep
    noted: list[dict[str, Any]] = []
    if record.get("inflight"):
        why = "a worker stopped in the middle of sending; the provider may have it"
        interrupted: dict[str, Any] = {
            "driver": None,
            "outcome": "interrupted",
            "error": why,
            "ambiguous": True,
            "try": int(record["inflight"].get("try", tries - 1)),
            "at": round(now, 3),
        }
        if policy.on_ambiguous == "dead":
            return _bury(held, data, [interrupted], tries - 1, now, f"ambiguous: {why}",
                         on_dead, ambiguous=True)  # fmt: skip
        noted.append(interrupted)

    def mark(r: Record) -> Record | None:
        if r.get("status") in FINAL_STATUSES:
            return None
        r["attempts"] = [*r.get("attempts", []), *noted]
        r["ambiguous"] = bool(r.get("ambiguous")) or bool(noted)
        r["inflight"] = {"since": now, "try": tries, "token": token}
        return r

    if held.change(mark, ttl=live).get("status") in FINAL_STATUSES:
        return Outcome("done", held.record["status"])
    try:
        result = mailer.send(message)
    except MessageRejected as exc:
        status = "suppressed" if isinstance(exc, MessageSuppressed) else "rejected"
        _settle(held, status, tries, held.records.store.now(), policy.keep,
                attempts=exc.attempts, error=str(exc))  # fmt: skip
        return Outcome("done", status, tried=True)
    except AllProvidersFailed as exc:
        return _failed(held, data, exc, tries, mailer=mailer, policy=policy, on_dead=on_dead,
                       rng=rng)  # fmt: skip
    except BaseException:
        # Not a delivery outcome (a bug, the mailer closed, an interrupt): nothing is known
        # to have been sent by this try, so it is unmarked and the task comes back later.
        try:
            held.change(lambda r: {**r, "inflight": None}, ttl=live)
        except StoreError:
            logger.warning("could not clear the in-flight mark on %s", held.message_id)
        raise
    _settle(held, "sent", tries, held.records.store.now(), policy.keep,
            attempts=result.attempts, driver=result.driver,
            provider_message_id=result.message_id)  # fmt: skip
    return Outcome("done", "sent", tried=True)


def _write_final(held: _Held, fn: Callable[[Record], Record | None], ttl: float | None) -> Record:
    """Write an outcome, trying three times: losing it would make a sent message ambiguous."""
    for attempt in range(3):
        try:
            return held.change(fn, ttl=ttl)
        except StoreError:
            if attempt == 2:
                logger.error("could not record the outcome for %s in the state store; "
                             "its next try will find it in flight", held.message_id)  # fmt: skip
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _settle(
    held: _Held,
    status: str,
    tries: int,
    now: float,
    keep: float,
    *,
    attempts: Any,
    driver: str | None = None,
    provider_message_id: str | None = None,
    error: str | None = None,
) -> None:
    new_attempts = _attempt_dicts(attempts, tries, now)

    def fn(record: Record) -> Record | None:
        if record.get("status") == "sent":
            return None  # a sent record is final, whatever a slower writer says
        record.update(status=status, tries=tries, next_try=None, inflight=None, error=error,
                      driver=driver, provider_message_id=provider_message_id, finished=now,
                      attempts=[*record.get("attempts", []), *new_attempts])  # fmt: skip
        return record

    _write_final(held, fn, keep)
    _forget_content(held.records, held.message_id)
    if status == "sent":
        logger.info("%s sent through %s on try %d", held.message_id, driver, tries)


def _failed(
    held: _Held,
    data: Mapping[str, Any],
    exc: AllProvidersFailed,
    tries: int,
    *,
    mailer: Any,
    policy: DeliveryPolicy,
    on_dead: OnDead | None,
    rng: Callable[[], float],
) -> Outcome:
    now = held.records.store.now()
    attempts = _attempt_dicts(exc.attempts, tries, now)
    ambiguous = _is_ambiguous(exc)
    if ambiguous and policy.on_ambiguous == "dead":
        return _bury(held, data, attempts, tries, now, f"ambiguous: {exc}", on_dead,
                     ambiguous=True)  # fmt: skip
    delay = max(policy.delay(tries, rng), _soonest_cooldown(mailer))
    expires = float(held.record.get("expires", now))
    if now + delay > expires:
        return _bury(held, data, attempts, tries, now, str(exc), on_dead, ambiguous=ambiguous)
    next_try = now + delay

    def fn(r: Record) -> Record | None:
        if r.get("status") in FINAL_STATUSES:
            return None
        r.update(tries=tries, next_try=next_try, inflight=None, error=str(exc),
                 ambiguous=bool(r.get("ambiguous")) or ambiguous,
                 attempts=[*r.get("attempts", []), *attempts])  # fmt: skip
        return r

    _write_final(held, fn, max(expires - now, 0.0) + policy.keep)
    logger.warning("%s: every provider failed on try %d; next try in %.1f s",
                   held.message_id, tries, delay)  # fmt: skip
    return Outcome("retry", "queued", min(delay, policy.backoff_max), tried=True)


def _bury(
    held: _Held,
    data: Mapping[str, Any],
    attempts: list[dict[str, Any]],
    tries: int,
    now: float,
    error: str,
    on_dead: OnDead | None,
    *,
    ambiguous: bool,
) -> Outcome:
    message_id = held.message_id
    held.records.bury(message_id, dict(data), now)

    def fn(r: Record) -> Record | None:
        if r.get("status") in FINAL_STATUSES:
            return None
        r.update(status="dead", tries=tries, next_try=None, inflight=None, error=error,
                 ambiguous=bool(r.get("ambiguous")) or ambiguous, finished=now,
                 attempts=[*r.get("attempts", []), *attempts])  # fmt: skip
        return r

    # A dead letter has no expiry: it waits for an operator.
    record = _write_final(held, fn, None)
    _forget_content(held.records, message_id)  # kept under dead: for a re-drive
    if record.get("status") != "dead":
        return Outcome("done", str(record.get("status", "dead")), tried=True)
    logger.error("%s is dead after %d tries: %s", message_id, tries, error)
    if on_dead is not None:
        try:
            on_dead(message_id, record)
        except Exception:
            logger.exception("the on_dead hook raised")
    return Outcome("done", "dead", tried=True)


def _forget_content(records: DeliveryRecords, message_id: str) -> None:
    """Drop a final message's kept content; on a store error :func:`redrive` does it later."""
    try:
        records.forget_content(message_id)
    except StoreError:
        logger.warning("could not drop the kept content of %s; a later sweep does", message_id)


def _last_touched(record: Record | None, kept_at: float) -> float:
    """When anything last happened to a message: kept, created, tried, scheduled, revived
    or published again. Its task is lost when this is older than the visibility timeout."""
    moments = [kept_at]
    if record is not None:
        for field in ("created", "next_try", "redriven", "revived"):
            value = record.get(field)
            if isinstance(value, (int, float)):
                moments.append(float(value))
        inflight = record.get("inflight")
        if isinstance(inflight, dict) and isinstance(inflight.get("since"), (int, float)):
            moments.append(float(inflight["since"]))
        attempts = record.get("attempts") or []
        if attempts and isinstance(attempts[-1], dict):
            at = attempts[-1].get("at")
            if isinstance(at, (int, float)):
                moments.append(float(at))
    return max(moments)


def redrive(
    records: DeliveryRecords,
    *,
    publish: Publish,
    stale_after: float,
    max_age: float,
    limit: int = REDRIVE_LIMIT,
) -> int:
    """Publish a new task for each message whose record is still ``queued`` and untouched
    for ``stale_after`` seconds (the broker's visibility timeout: by then the broker has
    handed out again every task it still holds, so one that has not come back is lost).
    Returns how many were published, at most ``limit``.

    ``publish(data, enqueued_at)`` puts a task on the queue. The record is marked
    (``redriven``, ``redrives``) before the publish, atomically and only if it has not
    changed since it was read: two sweepers never both publish it, and a publish that
    fails is tried again one ``stale_after`` later. A message being sent (its lease is
    held) is left alone. Kept content of a message already final is dropped on the way.
    Raises :class:`~mailfailover.state.StoreError` when the store fails (nothing more is
    published in this sweep).
    """
    now = records.store.now()
    # A message kept for less than stale_after was surely touched less long ago: only the
    # old ones' records are read (one round trip), so a healthy queue costs one scan.
    old = [(m, at) for m, at in records.pending() if now - at >= stale_after]
    found = records.store.get_many([records.key(m) for m, _ in old]) if old else []
    published = 0
    for (message_id, kept_at), raw in zip(old, found, strict=True):
        if published >= limit:
            break
        record = _loads(raw)
        if record is not None and record.get("status") in FINAL_STATUSES:
            records.forget_content(message_id)
            continue
        last = _last_touched(record, kept_at)
        if now - last < stale_after:
            continue
        if records.store.get(records.lease_key(message_id)) is not None:
            continue  # a worker is sending it right now
        data = records.content(message_id)
        if data is None:  # the index outlived its content: nothing can be sent
            records.store.delete(records.pending_key(message_id))
            continue
        if record is None:  # the enqueue stopped between keeping the content and the record
            records.create(message_id, created=kept_at, expires=kept_at + max_age)

        def mark(r: Record, last: float = last, kept_at: float = kept_at) -> Record | None:
            if r.get("status") in FINAL_STATUSES or _last_touched(r, kept_at) != last:
                return None  # it moved since it was read: not lost after all
            r["redriven"] = now
            r["redrives"] = int(r.get("redrives", 0)) + 1
            return r

        expires = float((record or {}).get("expires", kept_at + max_age))
        marked = records.change(message_id, mark, ttl=max(expires - now, 0.0) + records.keep)
        if marked is None or marked.get("redriven") != now:
            continue
        publish(data, kept_at)
        published += 1
        logger.warning("%s: untouched for %.0f s, so its task was lost; published again "
                       "(re-drive %d)", message_id, now - last, marked["redrives"])  # fmt: skip
    return published
