"""``FailoverMailer``: sends each message through the first driver that can take it.

Ordering: with ``strategy="failover"`` the drivers are tried in configured order, so the
primary gets every message while it is healthy and again as soon as its cooldown probe
succeeds (fail-back). With ``strategy="round_robin"`` the starting driver rotates.

Per attempt: a driver that is cooling down (see :mod:`mailfailover.health`) is recorded as
``skipped``; :class:`~mailfailover.errors.UnsupportedFeature` is ``skipped`` without touching
its health; :class:`~mailfailover.errors.ProviderUnavailable` is ``unavailable`` and counts
against its health; :class:`~mailfailover.errors.MessageRejected` is ``rejected`` and stops at
once. Any other exception from a driver is a driver bug: logged with its traceback and
treated as unavailable. When every driver that was ready failed (or none was ready), the
cooling-down drivers are tried as a last resort, longest-cooled first: the mailer never
refuses to try. Those semantics live once, in :mod:`mailfailover._failover`; this module
drives them with blocking driver calls.

Health is shared through the mailer's state store (``state=``; see
:mod:`mailfailover.health`). One mailer serves many threads; no lock is held during I/O.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from ._batched import BatchedSends, carry
from ._failover import Steps, failover, run
from ._feedback import Feedback
from .driver import Driver
from .errors import (
    AllProvidersFailed,
    InvalidMessage,
    MailError,
    MessageRejected,
    MessageSuppressed,
    WebhookError,
)
from .events import DeliveryEvent
from .health import DriverHealth, HealthBoard
from .message import Message
from .policy import DriverPolicy
from .results import STRATEGIES, Attempt, SendResult, Strategy
from .state import MemoryStore, ResilientStore, StateStore, open_store
from .suppressions import SuppressionList

if TYPE_CHECKING:
    from .config import MailerConfig

__all__ = ["Attempt", "FailoverMailer", "SendResult"]

logger = logging.getLogger("mailfailover")


@attrs.frozen(eq=False)
class _Hooks:
    on_attempt: Callable[[Message, Attempt], object] | None
    on_result: Callable[[Message, SendResult | MailError], object] | None


@attrs.define(eq=False)
class _Slot:
    driver: Driver
    key: Any = None


@attrs.define(eq=False)
class _Chain:
    slots: tuple[_Slot, ...]
    users: int = 0
    retired: list[Driver] | None = None


@attrs.frozen(eq=False)
class _Send:
    """One send under way: the chain it holds, its failover steps, the message as sent
    (suppressed recipients dropped) and those dropped."""

    chain: _Chain
    steps: Steps
    message: Message
    suppressed: tuple[str, ...]


def _shared_store(
    state: str | Mapping[str, Any] | StateStore | None, clock: Callable[[], float]
) -> StateStore:
    """The store behind the mailer's health: a private one on ``clock`` by default; any
    other is wrapped so that a store that fails never stops mail."""
    if state is None:
        return MemoryStore(clock=clock)
    store = open_store(state)
    if isinstance(store, (MemoryStore, ResilientStore)):
        return store
    return ResilientStore(store)


def _digest(key: object) -> str:
    return hashlib.sha256(str(key).encode()).hexdigest()[:16]


class FailoverMailer:
    """Sends messages through an ordered list of drivers, failing over between them.

    ``state`` is where driver health is kept and shared: a store URL (``sqlite:///path``,
    ``redis://host:6379/0``), ``{"url": ..., "namespace": ...}``, or a
    :class:`~mailfailover.state.StateStore`. By default it is a private in-process store
    driven by ``clock``. Any store but a ``MemoryStore`` is wrapped in a
    :class:`~mailfailover.state.ResilientStore` (a failing store never stops mail). The
    mailer closes a store it opened from a URL, never one passed in.

    ``policies`` maps driver names to a :class:`~mailfailover.policy.DriverPolicy` (``rate``,
    ``rate_mode``, ``slow_after``; from a configuration, the keys of each driver's
    ``settings``); rate limits are counted in ``state``. ``sleep`` is how a send waits for a
    rate slot (``rate_mode="wait"``); tests give a fake clock's ``advance``.
    """

    def __init__(
        self,
        drivers: Sequence[Driver],
        *,
        strategy: Strategy = "failover",
        failure_threshold: int = 2,
        cooldown: float = 30.0,
        deadline: float | None = None,
        on_attempt: Callable[[Message, Attempt], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        state: str | Mapping[str, Any] | StateStore | None = None,
        suppression: bool = True,
        on_event: Callable[[DeliveryEvent], object] | None = None,
        policies: Mapping[str, DriverPolicy] | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        drivers = list(drivers)
        if not drivers:
            raise ValueError("a FailoverMailer needs at least one driver")
        names = [d.name for d in drivers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"driver names must be unique; {duplicates[0]!r} is used twice")
        self._check_policy(strategy, failure_threshold, cooldown, deadline)
        self.policies = self._check_policies(policies, names)
        self._sleep = sleep
        self.strategy = strategy
        self.failure_threshold = failure_threshold
        self.cooldown = float(cooldown)
        self.deadline = deadline
        self.on_attempt = on_attempt
        self._hooks: tuple[_Hooks, ...] = ()
        self._clock = clock
        self._lock = threading.Lock()
        self._owns_store = not isinstance(state, StateStore)
        self.store: StateStore = _shared_store(state, clock)
        self._board = HealthBoard(
            self.store, names, failure_threshold=failure_threshold, cooldown=self.cooldown,
            clock=clock,
        )  # fmt: skip
        self._chain = _Chain(tuple(_Slot(d) for d in drivers))
        self._source: Any = None
        self._overrides: dict[str, Any] = {}
        self._closed = False
        # The private default store runs on ``clock`` (monotonic): webhooks' signed times
        # and suppressions' dates need the wall clock. A shared store's now() is one.
        wall_clock = time.time if state is None else self.store.now
        self._feedback = Feedback(self.store, suppression=suppression, clock=wall_clock)
        if on_event is not None:
            self._feedback.add_hook(on_event)

    @staticmethod
    def _check_policy(
        strategy: str, failure_threshold: int, cooldown: float, deadline: float | None
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise ValueError("failure_threshold must be a whole number")
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown < 0:
            raise ValueError("cooldown may not be negative")
        if deadline is not None and deadline <= 0:
            raise ValueError("deadline must be positive")

    @staticmethod
    def _check_policies(
        policies: Mapping[str, DriverPolicy] | None, names: Sequence[str]
    ) -> dict[str, DriverPolicy]:
        policies = dict(policies or {})
        unknown = sorted(set(policies) - set(names))
        if unknown:
            raise ValueError(f"policies name a driver the mailer does not have: {unknown[0]!r}")
        if not all(isinstance(p, DriverPolicy) for p in policies.values()):
            raise ValueError("policies map driver names to mailfailover.DriverPolicy")
        return {name: policy for name, policy in policies.items() if policy.active}

    # -- construction from configuration ---------------------------------------------------

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> FailoverMailer:
        """Build a mailer from a YAML file, a folder of them, a dict, or the default lookup.

        ``options`` (``on_attempt``, ``clock``, ``deadline``...) are passed to the
        constructor and win over the file.
        """
        from .config import build_drivers, load_config

        config = load_config(source)
        drivers = build_drivers(config)
        try:
            defaults = {**config.mailer_options(), "policies": config.policies()}
            mailer = cls(drivers, **{**defaults, **options})
        except BaseException:
            for driver in drivers:
                driver.close()
            raise
        mailer._source = source
        mailer._overrides = dict(options)
        mailer.config = config
        for slot, spec in zip(mailer._chain.slots, config.drivers, strict=True):
            slot.key = spec.key
        return mailer

    config: MailerConfig | None = None

    def reload(self) -> None:
        """Re-read the configuration this mailer was built from, atomically.

        Drivers whose name, module and settings are unchanged keep their connections and
        health; new ones start healthy; removed ones are closed once no send uses them.
        If the new configuration is invalid, :class:`ConfigError` is raised and the mailer
        keeps the old one.
        """
        if self.config is None:
            raise RuntimeError("only a mailer built by from_config() can reload")
        from .config import build_driver, load_config

        config = load_config(self._source)
        options = {**config.mailer_options(), **self._overrides}
        options.pop("on_attempt", None)
        options.pop("clock", None)
        options.pop("state", None)  # the store is the process's: changing it needs a restart
        strategy = options.get("strategy", "failover")
        threshold = options.get("failure_threshold", 2)
        cooldown = float(options.get("cooldown", 30.0))
        self._check_policy(strategy, threshold, cooldown, options.get("deadline"))
        with self._lock:
            current = {slot.key: slot for slot in self._chain.slots}
        created: list[Driver] = []
        changed: list[tuple[str, str]] = []
        slots: list[_Slot] = []
        try:
            for spec in config.drivers:
                kept = current.get(spec.key)
                if kept is not None:
                    slots.append(kept)
                    continue
                driver = build_driver(spec)
                created.append(driver)
                slots.append(_Slot(driver, spec.key))
                if spec.name in {slot.driver.name for slot in current.values()}:
                    changed.append((spec.name, _digest(spec.key)))
        except BaseException:
            for driver in created:
                driver.close()
            raise
        kept_ids = {id(slot) for slot in slots}
        with self._lock:
            old = self._chain
            self.strategy, self.failure_threshold, self.cooldown = strategy, threshold, cooldown
            self.deadline = options.get("deadline")
            self._board.configure([s.driver.name for s in slots], threshold, cooldown)
            self._feedback.enabled = bool(options.get("suppression", True))
            if "policies" not in self._overrides:
                self.policies = config.policies()
            self._chain = _Chain(tuple(slots))
            old.retired = [s.driver for s in old.slots if id(s) not in kept_ids]
            close_now = old.retired if old.users == 0 else []
            self.config = config
        for name, digest in changed:
            self._board.reset_changed(name, digest)
        for driver in close_now:
            driver.close()
        logger.info("configuration reloaded: %s", ", ".join(s.driver.name for s in slots))

    # -- sending ---------------------------------------------------------------------------

    @property
    def drivers(self) -> tuple[Driver, ...]:
        """The drivers in configured order."""
        return tuple(slot.driver for slot in self._chain.slots)

    def send(self, message: Message) -> SendResult:
        """Deliver ``message`` through the first driver that can, or raise.

        Raises :class:`MessageRejected` (a provider refused the message; nothing else is
        tried) or :class:`AllProvidersFailed` (every driver was unavailable or skipped, or the
        deadline ran out), both carrying ``attempts``.
        """
        send = self._begin(message)
        try:
            result = run(send.steps, send.message, self._sleep)
        except (MessageRejected, AllProvidersFailed) as exc:
            self._notify(send.message, exc)
            raise
        finally:
            self._release_chain(send.chain)
        return self._finish(send, result)

    def _begin(self, message: Message) -> _Send:
        """What every send does first, whoever drives it (this class with blocking calls,
        :class:`~mailfailover.aio.AsyncFailoverMailer` with ``await``): check the message,
        drop suppressed recipients, hold the current driver chain (the caller gives it back
        with :meth:`_release_chain`), put its drivers in this send's order and make the
        failover steps (:mod:`._failover`) for them. Then :meth:`_finish` with the result."""
        if not isinstance(message, Message):
            raise InvalidMessage("send() takes a mailfailover.Message", field=None)
        if self._closed:
            raise RuntimeError("this mailer is closed")
        try:
            message, suppressed = self._feedback.filter(message)
        except MessageSuppressed as exc:
            self._notify(message, exc)
            raise
        with self._lock:
            chain = self._chain
            chain.users += 1
            slots = list(chain.slots)
            strategy, deadline = self.strategy, self.deadline
        try:
            if strategy == "round_robin":  # outside the lock: the position may be a store call
                start = self._board.next_position() % len(slots)
                slots = slots[start:] + slots[:start]
            steps = failover(
                message, [slot.driver for slot in slots], self._board, deadline=deadline,
                clock=self._clock, record=functools.partial(self._record, message),
                policies=self.policies,
            )  # fmt: skip
        except BaseException:
            self._release_chain(chain)
            raise
        return _Send(chain, steps, message, suppressed)

    def _finish(self, send: _Send, result: SendResult) -> SendResult:
        if send.suppressed:
            result = attrs.evolve(result, suppressed=send.suppressed)
        self._notify(send.message, result)
        return result

    # -- delivery events and suppressions ---------------------------------------------------

    @property
    def suppressions(self) -> SuppressionList:
        """The suppression list on this mailer's state store (shared by every driver)."""
        return self._feedback.suppressions

    def handle_webhook(
        self,
        driver_name: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        url: str,
    ) -> list[DeliveryEvent]:
        """Verify and normalise a provider's webhook request to ``driver_name``; its new events.

        Events already seen (by ``event_id``, in the state store) are dropped; a hard bounce,
        a complaint or an unsubscribe puts the recipient on the suppression list for every
        driver; every ``on_event`` hook gets each new event. Raises
        :class:`~mailfailover.errors.WebhookError` (401, 400, or 404 for an unknown driver
        or one without webhooks). Usable from any web framework.
        """
        driver = next((d for d in self.drivers if d.name == driver_name), None)
        if driver is None:
            raise WebhookError("no driver of that name", status=404)
        return self._feedback.handle(driver, headers, body, url)

    def events_for(self, driver_name: str, message_id: str) -> list[dict[str, Any]]:
        """The delivery events handled so far for a message ``driver_name`` sent, by the
        provider's id (``SendResult.message_id``), oldest first, as JSON-safe dicts."""
        return self._feedback.log.for_message(driver_name, message_id)

    def takes_webhooks(self, driver_name: str) -> bool:
        """True when ``driver_name`` is a driver of this mailer with webhooks configured."""
        driver = next((d for d in self.drivers if d.name == driver_name), None)
        spec = None if driver is None else driver.webhooks
        return spec is not None and driver is not None and spec.configured(driver.settings)

    def add_hooks(
        self,
        on_attempt: Callable[[Message, Attempt], object] | None = None,
        *,
        on_result: Callable[[Message, SendResult | MailError], object] | None = None,
        on_event: Callable[[DeliveryEvent], object] | None = None,
    ) -> Callable[[], None]:
        """Subscribe to every attempt and to every message's outcome, besides ``on_attempt``.

        ``on_attempt(message, attempt)`` is called as the constructor's ``on_attempt`` is;
        ``on_result(message, outcome)`` once per :meth:`send` with the :class:`SendResult`,
        or the :class:`MessageRejected` / :class:`AllProvidersFailed` about to be raised;
        ``on_event(event)`` for every new :class:`~mailfailover.events.DeliveryEvent`
        :meth:`handle_webhook` takes. An exception in any is logged and never breaks a send.
        Returns a function that unsubscribes them.
        """
        hooks = _Hooks(on_attempt, on_result)
        with self._lock:
            self._hooks = (*self._hooks, hooks)
        remove_event = self._feedback.add_hook(on_event) if on_event is not None else None

        def remove() -> None:
            with self._lock:
                self._hooks = tuple(h for h in self._hooks if h is not hooks)
            if remove_event is not None:
                remove_event()

        return remove

    def _notify(self, message: Message, outcome: SendResult | MailError) -> None:
        for hooks in self._hooks:
            if hooks.on_result is not None:
                try:
                    hooks.on_result(message, outcome)
                except Exception:
                    logger.exception("an on_result hook raised; the send goes on")

    def _record(self, message: Message, attempt: Attempt) -> None:
        if self.on_attempt is None and not self._hooks:
            return  # nobody listens (per attempt: spare building the list)
        hooks = [self.on_attempt, *(h.on_attempt for h in self._hooks)]
        for hook in hooks:
            if hook is None:
                continue
            try:
                hook(message, attempt)
            except Exception:
                logger.exception("the on_attempt hook raised; the send goes on")

    def send_many(
        self, messages: Iterable[Message], workers: int = 4
    ) -> list[SendResult | MailError]:
        """Send every message; return a :class:`SendResult` or the :class:`MailError` for
        each, in the order given. One failure never stops the others."""
        items = list(messages)
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if len(items) > 1 and any(d.batch_size > 1 for d in self._chain_drivers()):
            return self._send_batched(items, workers)
        if workers == 1 or len(items) <= 1:
            return [self._send_or_error(message) for message in items]
        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            return list(pool.map(self._send_or_error, items))

    def _send_batched(self, items: list[Any], workers: int) -> list[SendResult | MailError]:
        """``send_many`` through batch endpoints, with each message's own failover
        (:mod:`._batched`): each round's requests, up to ``workers`` at a time."""
        sends = BatchedSends(self, items)
        try:
            carrying = functools.partial(carry, sleep=self._sleep)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                while sends.pending:
                    jobs = sends.jobs()
                    for job, outcomes in zip(jobs, list(pool.map(carrying, jobs)), strict=True):
                        sends.answer(job, outcomes)
        finally:
            results = sends.finish()
        return results

    def _chain_drivers(self) -> list[Driver]:
        """The drivers of the current chain (a reload may replace it at any time)."""
        return [slot.driver for slot in self._chain.slots]

    def _send_or_error(self, message: Message) -> SendResult | MailError:
        try:
            return self.send(message)
        except MailError as exc:
            return exc

    # -- state and lifetime ----------------------------------------------------------------

    def health(self) -> list[DriverHealth]:
        """Each driver's state, in configured order."""
        return self._board.snapshot()

    def _release_chain(self, chain: _Chain) -> None:
        with self._lock:
            chain.users -= 1
            close_now = chain.retired if chain.retired and chain.users == 0 else []
            if close_now:
                chain.retired = []
        for driver in close_now:
            driver.close()

    def close(self) -> None:
        """Close every driver's connections; safe to call twice."""
        for driver in self._shut():
            try:
                driver.close()
            except Exception:
                logger.exception("closing %s failed", driver.name)
        self._close_store()

    def _shut(self) -> list[Driver]:
        """Refuse further sends; the drivers to close (none when already closed)."""
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            return [slot.driver for slot in self._chain.slots]

    def _close_store(self) -> None:
        if self._owns_store:
            self.store.close()  # closes connections; the shared state stays as it is

    def __enter__(self) -> FailoverMailer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        names = ", ".join(repr(d.name) for d in self.drivers)
        return f"<FailoverMailer strategy={self.strategy!r} drivers=[{names}]>"
