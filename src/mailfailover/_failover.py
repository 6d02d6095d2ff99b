"""The failover semantics, once, without I/O: which driver to try next and what each answer
means. Every mailer (the threaded :class:`~mailfailover.FailoverMailer`, an asyncio one)
drives the same generator, so there is no copy of the loop that can drift.

:func:`failover` is a generator for one message. It yields a :class:`Try` — "call this
driver, within this many seconds" — and is sent back the :class:`Answer`: what the driver
did, as :func:`answer_from` / :func:`delivered` classify it. When it is done it returns the
:class:`~mailfailover.results.SendResult` (``StopIteration.value``) or raises
:class:`~mailfailover.errors.MessageRejected` / :class:`~mailfailover.errors.AllProvidersFailed`.
Closing it early (``KeyboardInterrupt`` in a driver, a cancelled task) gives back any probe
the send held. The threaded mailer drives it with :func:`run` (blocking ``driver.send``,
``time.sleep`` for a rate limit's wait), :class:`~mailfailover.aio.AsyncFailoverMailer`
with :func:`arun` (``await driver.asend``, ``await asyncio.sleep``): the same loop, one
with ``await``.

Health bookkeeping goes through :class:`~mailfailover.health.HealthBoard`, which touches
the state store only on transitions (failure, recovery, probe claim/release) and at most
one batched read per :data:`~mailfailover.health.REFRESH_INTERVAL`: short calls, made from
the generator, that an async mailer accepts as it accepts a log call.

What each kind of answer does is one row of :data:`EFFECTS` — the attempt's outcome, its
effect on health, whether the message was delivered and whether failover stops — so a new
kind (say ``slow``: delivered but counted against health; ``rate_limited``: spill to the
next driver without counting against health) is one row, not a new branch in every loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Literal

import attrs

from ._labels import RATE_LIMITED
from .driver import Driver, Receipt, deadline_scope
from .errors import (
    AllProvidersFailed,
    DeliveryError,
    MessageRejected,
    ProviderUnavailable,
    UnsupportedFeature,
)
from .health import HealthBoard, Ticket, probe_lease
from .message import Message
from .policy import DriverPolicy
from .ratelimit import RateLimiter
from .results import Attempt, Outcome, SendResult
from .state import StoreError

__all__ = [
    "EFFECTS",
    "RATE_LIMITED",
    "Answer",
    "AnswerKind",
    "Effect",
    "Steps",
    "Try",
    "answer_from",
    "arun",
    "delivered",
    "failover",
    "run",
]

logger = logging.getLogger("mailfailover")


_LOUD_REASONS = frozenset({"auth", "account", "bug"})

AnswerKind = Literal["sent", "slow", "unavailable", "rejected", "unsupported"]


@attrs.frozen
class Try:
    """Wait ``delay`` seconds (the driver's rate limit), then call ``driver.send(message)``
    within ``budget`` seconds (None: no deadline)."""

    driver: Driver
    budget: float | None
    delay: float = 0.0


@attrs.frozen
class Answer:
    """What a driver did with the message."""

    kind: AnswerKind
    receipt: Receipt | None = None
    error: DeliveryError | None = None


@attrs.frozen
class Effect:
    """What an answer means: the attempt's outcome, the driver's health, the send."""

    outcome: Outcome
    #: ``success`` and ``answered`` close the breaker (``success`` also counts a send),
    #: ``failure`` counts against it, ``release`` leaves it as it was.
    health: Literal["success", "answered", "failure", "release"]
    delivered: bool = False
    stops: bool = False


EFFECTS: dict[AnswerKind, Effect] = {
    "sent": Effect("sent", "success", delivered=True),
    # Over the driver's slow_after: delivered (never re-sent), but a brownout counts against
    # the driver's health, so that after failure_threshold of them messages go elsewhere.
    "slow": Effect("sent", "failure", delivered=True),
    "unavailable": Effect("unavailable", "failure"),
    "rejected": Effect("rejected", "answered", stops=True),
    "unsupported": Effect("skipped", "release"),
}


def delivered(receipt: Receipt) -> Answer:
    return Answer("sent", receipt=receipt)


def answer_from(driver: str, exc: Exception) -> Answer:
    """Classify what a driver raised — the one place that does.

    :class:`UnsupportedFeature` skips, :class:`MessageRejected` stops,
    :class:`ProviderUnavailable` fails over; any other :class:`DeliveryError` is an
    unavailable ``server_error``, and anything else a driver bug (logged with its traceback,
    failed over as ``reason="bug"``).
    """
    if isinstance(exc, UnsupportedFeature):
        return Answer("unsupported", error=exc.with_driver(driver))
    if isinstance(exc, MessageRejected):
        return Answer("rejected", error=exc.with_driver(driver))
    if isinstance(exc, ProviderUnavailable):
        return Answer("unavailable", error=exc.with_driver(driver))
    if isinstance(exc, DeliveryError):
        return Answer("unavailable", error=ProviderUnavailable(
            exc.detail, reason="server_error", driver=driver, status=exc.status
        ))  # fmt: skip
    logger.error("%s raised %s: this is a bug in the driver", driver, type(exc).__name__,
                 exc_info=exc)  # fmt: skip
    return Answer("unavailable", error=ProviderUnavailable(
        f"driver bug: {type(exc).__name__}", reason="bug", driver=driver
    ))  # fmt: skip


Steps = Generator[Try, Answer, SendResult]


def failover(
    message: Message,
    drivers: Sequence[Driver],
    board: HealthBoard,
    *,
    deadline: float | None,
    clock: Callable[[], float],
    record: Callable[[Attempt], None],
    policies: Mapping[str, DriverPolicy] | None = None,
) -> Steps:
    """Send ``message`` through ``drivers`` (already in this send's order).

    Drivers that are ready are tried in order; one cooling down is recorded ``skipped``.
    A driver over its ``rate`` (``policies``, :class:`~mailfailover.policy.DriverPolicy`) is
    ``skipped`` with ``reason="rate limited"`` without touching its health (``spill``) or
    waited for up to the deadline (``wait``); a send slower than its ``slow_after`` is
    delivered but counted against its health. When every ready driver failed (or none was
    ready), the rate-limited ones are waited for and then the cooling ones are tried as a
    last resort, longest-cooled first: the mailer never refuses to try. ``record`` sees
    every attempt as it happens.
    """
    attempts: list[Attempt] = []
    end = None if deadline is None else clock() + deadline
    policies = policies or {}

    def note(attempt: Attempt) -> None:
        attempts.append(attempt)
        record(attempt)

    def budget() -> float | None:
        if end is None:
            return None
        left = end - clock()
        if left <= 0:
            raise AllProvidersFailed(attempts, reason="the send deadline ran out")
        return max(left, 0.001)

    def slot(driver: Driver, seconds: float | None, *, last: bool) -> float | None:
        """Seconds to wait for the driver's next rate slot (0: none); None: spill it."""
        policy = policies.get(driver.name)
        if policy is None or policy.rate is None:
            return 0.0
        wait_for = policy.rate_mode == "wait" or last
        limit = (float("inf") if seconds is None else seconds) if wait_for else 0.0
        try:
            return RateLimiter(board.store, driver.name, policy.rate).reserve(limit)
        except StoreError:  # a store that fails never stops mail
            logger.warning("the rate limit of %s could not be read; sending", driver.name)
            return 0.0

    def use(driver: Driver, ticket: Ticket, seconds: float | None, delay: float = 0.0) -> Steps:
        if seconds is not None:
            seconds = max(seconds - delay, 0.001)
        started = clock()
        try:
            answer = yield Try(driver, seconds, delay)
        except BaseException:
            board.release(ticket)  # closed early: the send never finished
            raise
        elapsed = max(clock() - started - delay, 0.0)
        slow_after = getattr(policies.get(driver.name), "slow_after", None)
        if answer.kind == "sent" and slow_after is not None and elapsed > slow_after:
            answer = attrs.evolve(answer, kind="slow")
        return settle(driver, ticket, answer, elapsed)  # type: ignore[return-value]

    def settle(driver: Driver, ticket: Ticket, answer: Answer, elapsed: float) -> SendResult | None:
        effect = EFFECTS[answer.kind]
        error = answer.error
        if error is not None:
            _log(driver.name, answer)
        if answer.kind == "slow":
            slow_after = policies[driver.name].slow_after
            logger.warning("%s is slow: a send took %.2f s (slow_after %g s)", driver.name,
                           elapsed, slow_after)  # fmt: skip
            board.failed(ticket, f"slow: a send took {elapsed:.2f} s (slow_after {slow_after:g} s)",
                         None, trip=False)  # fmt: skip
        elif effect.health == "failure":
            assert isinstance(error, ProviderUnavailable)
            # A timeout cools the driver down at once: each further try would make a
            # message wait a whole timeout before failing over.
            board.failed(ticket, f"{error.reason}: {error.detail}", error.retry_after,
                         trip=error.reason == "timeout")  # fmt: skip
        elif effect.health == "release":
            board.release(ticket)
        else:
            board.succeeded(ticket, delivered=effect.health == "success")
        reason = answer.kind if answer.kind in ("unsupported", "slow") else None
        note(Attempt(driver.name, effect.outcome, error, elapsed, reason=reason))
        if effect.stops:
            assert isinstance(error, MessageRejected)
            error.attempts = tuple(attempts)
            raise error
        if not effect.delivered:
            return None
        receipt = answer.receipt
        assert receipt is not None
        first = attempts[0]
        if first.driver != driver.name and first.reason != RATE_LIMITED:
            why = getattr(first.error, "reason", None) or first.reason
            logger.warning("failover: %s delivered a message after %s was %s%s", driver.name,
                           first.driver, first.outcome, f" ({why})" if why else "")  # fmt: skip
        return SendResult(
            driver=driver.name,
            message_id=receipt.message_id or message.message_id,
            attempts=tuple(attempts),
            receipt=receipt,
        )

    deferred: list[Driver] = []
    spilled: list[Driver] = []
    if any(board.ready(d.name) for d in drivers):
        for driver in drivers:
            seconds = budget()
            ticket = board.acquire(driver.name, functools.partial(_lease, seconds, driver))
            if isinstance(ticket, str):
                deferred.append(driver)
                note(Attempt(driver.name, "skipped", reason=ticket))
                continue
            delay = slot(driver, seconds, last=False)
            if delay is None:  # over its rate: the next driver, at no cost to its health
                board.release(ticket)
                spilled.append(driver)
                note(Attempt(driver.name, "skipped", reason=RATE_LIMITED))
                continue
            result = yield from use(driver, ticket, seconds, delay)
            if result is not None:
                return result
    else:
        deferred = list(drivers)
    for driver in spilled:  # every other driver failed: wait for its slot, up to the deadline
        seconds = budget()
        delay = slot(driver, seconds, last=True)
        if delay is None:
            continue
        ticket = board.acquire(driver.name, functools.partial(_lease, seconds, driver))
        if isinstance(ticket, str):
            ticket = board.force(driver.name, _lease(seconds, driver))
        result = yield from use(driver, ticket, seconds, delay)
        if result is not None:
            return result
    deferred.sort(key=lambda d: board.opened_at(d.name))
    for driver in deferred:
        seconds = budget()
        ticket = board.force(driver.name, _lease(seconds, driver))
        result = yield from use(driver, ticket, seconds)
        if result is not None:
            return result
    raise AllProvidersFailed(attempts)


def _lease(budget: float | None, driver: Driver) -> float:
    settings = getattr(driver, "settings", None)
    return probe_lease(budget, settings if isinstance(settings, dict) else None)


def _log(driver: str, answer: Answer) -> None:
    error = answer.error
    if answer.kind == "unsupported" and error is not None:
        logger.info("%s skipped: %s", driver, error.detail)
    elif answer.kind == "rejected" and error is not None:
        logger.warning("%s rejected the message: %s", driver, error.detail)
    elif isinstance(error, ProviderUnavailable):
        level = logging.ERROR if error.reason in _LOUD_REASONS else logging.WARNING
        logger.log(level, "%s unavailable (%s%s): %s", driver, error.reason,
                   ", ambiguous" if error.ambiguous else "", error.detail)  # fmt: skip


async def arun(steps: Steps, message: Message) -> SendResult:
    """Drive ``steps`` with awaited ``driver.asend`` calls: the asyncio mailer's loop, the
    same as :func:`run` but for ``await``. A cancelled send (``CancelledError`` at an
    ``await``) closes the steps, which gives back a probe the send held."""
    try:
        step = next(steps)
        while True:
            if step.delay > 0:  # waiting for the driver's rate limit
                await asyncio.sleep(step.delay)
            try:
                with deadline_scope(step.budget):
                    receipt = await step.driver.asend(message)
            except Exception as exc:
                step = steps.send(answer_from(step.driver.name, exc))
            else:
                step = steps.send(delivered(receipt))
    except StopIteration as done:
        result: SendResult = done.value
        return result
    finally:
        steps.close()


def run(
    steps: Steps, message: Message, sleep: Callable[[float], object] = time.sleep
) -> SendResult:
    """Drive ``steps`` with blocking ``driver.send`` calls: the threaded mailer's loop."""
    try:
        step = next(steps)
        while True:
            if step.delay > 0:
                sleep(step.delay)
            try:
                with deadline_scope(step.budget):
                    receipt = step.driver.send(message)
            except Exception as exc:
                step = steps.send(answer_from(step.driver.name, exc))
            else:
                step = steps.send(delivered(receipt))
    except StopIteration as done:
        result: SendResult = done.value
        return result
    finally:
        steps.close()
