"""The sans-I/O failover core: the same generator driven by a blocking loop and by asyncio
gives the same attempts, and a cancelled send gives its probe back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mailfailover import (
    AllProvidersFailed,
    Driver,
    Message,
    MessageRejected,
    ProviderUnavailable,
    Receipt,
    SendResult,
    UnsupportedFeature,
)
from mailfailover._failover import EFFECTS, Steps, answer_from, delivered, failover, run
from mailfailover.health import HealthBoard, HealthRecord, State
from mailfailover.results import Attempt
from mailfailover.state import MemoryStore
from mailfailover.testing import FakeClock, simple_message


class Scripted(Driver):
    def __init__(self, name: str, *script: object) -> None:
        super().__init__(name=name)
        self.script = list(script) or ["ok"]

    def send(self, message: Message) -> Receipt:
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return Receipt(driver=self.name, message_id=f"{self.name}-id")

    async def send_async(self, message: Message) -> Receipt:
        await asyncio.sleep(0)
        return self.send(message)


async def arun(steps: Steps, message: Message) -> SendResult:
    """What an asyncio mailer's loop is: the sync one with ``await``."""
    try:
        step = next(steps)
        while True:
            try:
                receipt = await step.driver.send_async(message)  # type: ignore[attr-defined]
            except Exception as exc:
                step = steps.send(answer_from(step.driver.name, exc))
            else:
                step = steps.send(delivered(receipt))
    except StopIteration as done:
        result: SendResult = done.value
        return result
    finally:
        steps.close()


def scenario() -> list[Scripted]:
    return [
        Scripted("A", ProviderUnavailable("down", reason="timeout")),
        Scripted("B", UnsupportedFeature("no tags")),
        Scripted("C"),
    ]


def drive(kind: str, drivers: list[Scripted], board: HealthBoard, clock: FakeClock) -> Any:
    seen: list[Attempt] = []
    steps = failover(simple_message(), drivers, board, deadline=None, clock=clock,
                     record=seen.append)  # fmt: skip
    try:
        if kind == "sync":
            result: Any = run(steps, simple_message())
        else:
            result = asyncio.run(arun(steps, simple_message()))
    except (AllProvidersFailed, MessageRejected) as exc:
        result = exc
    return [(a.driver, a.outcome) for a in result.attempts], seen


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_one_semantics_two_loops(kind: str, clock: FakeClock) -> None:
    drivers = scenario()
    board = HealthBoard(MemoryStore(clock=clock), [d.name for d in drivers],
                        failure_threshold=2, cooldown=30, clock=clock)  # fmt: skip
    attempts, seen = drive(kind, drivers, board, clock)
    assert attempts == [("A", "unavailable"), ("B", "skipped"), ("C", "sent")]
    assert [(a.driver, a.outcome) for a in seen] == attempts  # record saw each as it came
    assert [h.state for h in board.snapshot()] == [State.COOLING_DOWN, State.HEALTHY,
                                                   State.HEALTHY]  # fmt: skip
    attempts, _ = drive(kind, drivers, board, clock)
    assert attempts == [("A", "skipped"), ("B", "skipped"), ("C", "sent")]


def test_a_cancelled_async_probe_gives_its_lease_back(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    board = HealthBoard(store, ["A"], failure_threshold=1, cooldown=10, clock=clock)

    class Hanging(Scripted):
        async def send_async(self, message: Message) -> Receipt:
            await asyncio.sleep(3600)
            raise AssertionError("never")

    steps = failover(simple_message(), [Hanging("A")], board, deadline=None, clock=clock,
                     record=lambda attempt: None)  # fmt: skip
    record = HealthRecord(failures=1, until=clock() - 1, opened_at=clock() - 11)
    store.set("health:A", record.to_bytes())
    board.refresh()

    async def cancel_the_probe() -> None:
        task = asyncio.ensure_future(arun(steps, simple_message()))
        await asyncio.sleep(0.01)
        assert HealthRecord.from_bytes(store.get("health:A")).probe is not None  # claimed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_the_probe())
    assert HealthRecord.from_bytes(store.get("health:A")).probe is None
    assert board.snapshot()[0].state is State.COOLING_DOWN  # ready to be probed again


def test_every_answer_kind_has_one_row() -> None:
    assert set(EFFECTS) == {"sent", "slow", "unavailable", "rejected", "unsupported"}
    assert [k for k, e in EFFECTS.items() if e.delivered] == ["sent", "slow"]
    assert EFFECTS["slow"].health == "failure"  # delivered, but a brownout counts
    assert [k for k, e in EFFECTS.items() if e.stops] == ["rejected"]
    assert EFFECTS["unsupported"].health == "release"
