"""``send_many`` through batch endpoints: the scheduling both mailers share, without I/O.

Every message runs its own failover generator (:func:`~mailfailover._failover.failover`),
so it gets its own attempts, its own result or error, its own probe and rate decisions.
:class:`BatchedSends` collects, each round, the messages whose next step is the same
batching driver with nothing to wait for into :class:`Job`\\ s of that driver's
``batch_size`` (every other message is a job alone) and hands each message's answer back
to its own generator. :func:`carry` makes a job's request with blocking calls (the threaded
:class:`~mailfailover.FailoverMailer` runs ``workers`` of them at a time), :func:`acarry`
with ``await`` (:class:`~mailfailover.aio.AsyncFailoverMailer`, ``concurrency`` at a time):
the same scheduling, one with ``await``, as :func:`~mailfailover._failover.run` and
:func:`~mailfailover._failover.arun` are for a single message.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._failover import Answer, Steps, Try, answer_from, delivered, failover
from .driver import Driver, Receipt, deadline_scope
from .errors import (
    AllProvidersFailed,
    InvalidMessage,
    MailError,
    MessageRejected,
    MessageSuppressed,
)
from .message import Message
from .results import SendResult

if TYPE_CHECKING:
    from .mailer import FailoverMailer

__all__ = ["BatchedSends", "Job", "acarry", "carry"]

Outcomes = list[Receipt | Exception]


@attrs.frozen
class Job:
    """One request to make: ``messages`` (one, or a batch) to ``driver``, after ``delay``
    seconds (a rate limit's wait; only ever for a message alone), within ``budget``."""

    driver: Driver
    indexes: tuple[int, ...]
    messages: tuple[Message, ...]
    delay: float
    budget: float | None


class BatchedSends:
    """The messages of one ``send_many`` call and where each one's failover stands.

    Built from the mailer and the messages; then, while :attr:`pending`, take the round's
    :meth:`jobs`, carry them, and give each job's outcomes to :meth:`answer`. :meth:`finish`
    (always, in a ``finally``) closes what is still running — giving back any probe lease a
    cancelled send held — releases the driver chain and returns the results, in order.
    """

    def __init__(self, mailer: FailoverMailer, items: Sequence[Any]) -> None:
        if mailer._closed:
            raise RuntimeError("this mailer is closed")
        self._mailer = mailer
        self._items: list[Any] = list(items)
        self._results: list[SendResult | MailError | None] = [None] * len(self._items)
        self._suppressed: dict[int, tuple[str, ...]] = {}
        self._running: dict[int, Steps] = {}
        self._pending: dict[int, Try] = {}
        with mailer._lock:
            self._chain = mailer._chain
            self._chain.users += 1
            self._base = list(self._chain.slots)
            self._strategy, self._deadline = mailer.strategy, mailer.deadline
        try:
            for index in range(len(self._items)):
                self._start(index)
        except BaseException:
            self.finish()
            raise

    @property
    def pending(self) -> bool:
        """Whether some message still has a step to take."""
        return bool(self._pending)

    def _start(self, index: int) -> None:
        mailer, message = self._mailer, self._items[index]
        if not isinstance(message, Message):
            self._results[index] = InvalidMessage(
                "send_many() takes mailfailover.Message objects", field=None
            )
            return
        try:
            self._items[index], self._suppressed[index] = mailer._feedback.filter(message)
        except MessageSuppressed as exc:
            mailer._notify(message, exc)
            self._results[index] = exc
            return
        slots = self._base
        if self._strategy == "round_robin":
            start = mailer._board.next_position() % len(slots)
            slots = slots[start:] + slots[:start]
        message = self._items[index]
        self._running[index] = failover(
            message, [slot.driver for slot in slots], mailer._board,
            deadline=self._deadline, clock=mailer._clock,
            record=functools.partial(mailer._record, message), policies=mailer.policies,
        )  # fmt: skip
        self._settle(index, None)

    def _settle(self, index: int, answer: Answer | None) -> None:
        """Give ``answer`` to the message's generator (None: its first step)."""
        steps, mailer, message = self._running[index], self._mailer, self._items[index]
        try:
            step = next(steps) if answer is None else steps.send(answer)
        except StopIteration as done:
            result: SendResult = done.value
            if self._suppressed.get(index):
                result = attrs.evolve(result, suppressed=self._suppressed[index])
            mailer._notify(message, result)
            self._results[index] = result
        except (MessageRejected, AllProvidersFailed) as exc:
            mailer._notify(message, exc)
            self._results[index] = exc
        else:
            self._pending[index] = step
            return
        del self._running[index]
        self._pending.pop(index, None)

    def jobs(self) -> list[Job]:
        """The requests of this round: the messages whose next step is the same batching
        driver with nothing to wait for, in batches of its ``batch_size``; every other one
        alone."""
        groups: dict[int, list[int]] = {}
        alone: list[list[int]] = []
        for index, step in self._pending.items():
            if step.delay == 0 and step.driver.batch_size > 1:
                groups.setdefault(id(step.driver), []).append(index)
            else:
                alone.append([index])
        for indexes in groups.values():
            size = self._pending[indexes[0]].driver.batch_size
            alone.extend(indexes[i : i + size] for i in range(0, len(indexes), size))
        return [self._job(indexes) for indexes in alone]

    def _job(self, indexes: list[int]) -> Job:
        steps = [self._pending[index] for index in indexes]
        budgets = [step.budget for step in steps if step.budget is not None]
        return Job(
            driver=steps[0].driver,
            indexes=tuple(indexes),
            messages=tuple(self._items[index] for index in indexes),
            delay=steps[0].delay,
            budget=min(budgets) if budgets else None,
        )

    def answer(self, job: Job, outcomes: Outcomes) -> None:
        """Hand each message of ``job`` what its driver did with it."""
        name = job.driver.name
        for index, out in zip(job.indexes, outcomes, strict=True):
            self._settle(index, answer_from(name, out) if isinstance(out, Exception)
                         else delivered(out))  # fmt: skip

    def finish(self) -> list[SendResult | MailError]:
        """Close every send still running, release the chain; the results, in order."""
        running, self._running, self._pending = self._running, {}, {}
        try:
            for steps in running.values():
                steps.close()
        finally:
            self._mailer._release_chain(self._chain)
        return [r if r is not None else AllProvidersFailed(()) for r in self._results]


def carry(job: Job, sleep: Callable[[float], object]) -> Outcomes:
    """Make ``job``'s request with blocking calls: ``send`` alone, ``send_batch`` for more."""
    if len(job.messages) == 1:
        if job.delay > 0:
            sleep(job.delay)
        try:
            with deadline_scope(job.budget):
                return [job.driver.send(job.messages[0])]
        except Exception as exc:
            return [exc]
    try:
        with deadline_scope(job.budget):
            return _counted(job, job.driver.send_batch(job.messages))
    except Exception as exc:  # a driver bug: each message fails over on its own
        return _copies(job, exc)


async def acarry(job: Job) -> Outcomes:
    """:func:`carry` with ``await``: ``asend`` alone, ``asend_batch`` for more."""
    if len(job.messages) == 1:
        if job.delay > 0:
            await asyncio.sleep(job.delay)
        try:
            with deadline_scope(job.budget):
                return [await job.driver.asend(job.messages[0])]
        except Exception as exc:
            return [exc]
    try:
        with deadline_scope(job.budget):
            return _counted(job, await job.driver.asend_batch(job.messages))
    except Exception as exc:  # a driver bug: each message fails over on its own
        return _copies(job, exc)


def _counted(job: Job, outcomes: Outcomes) -> Outcomes:
    if len(outcomes) != len(job.messages):
        raise RuntimeError(f"{job.driver.name}: a batch gave a wrong number of results")
    return outcomes


def _copies(job: Job, exc: Exception) -> Outcomes:
    return [exc, *(copy.copy(exc) for _ in job.messages[1:])]
