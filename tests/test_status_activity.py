"""The status page's record of recent attempts: per process, or shared through a store.

Two :class:`Activity` objects on one SQLite store stand for two gunicorn workers: each
records its own attempts and both show all of them. A store that fails leaves the page
showing this process's own record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfailover import Attempt, ProviderUnavailable
from mailfailover.flask._activity import Activity, shared_store
from mailfailover.state import MemoryStore, StateStore, StoreError, open_store
from mailfailover.testing import FakeClock, simple_message

pytest.importorskip("flask")


def sent(driver: str) -> Attempt:
    return Attempt(driver, "sent", elapsed=0.01)


def down(driver: str) -> Attempt:
    return Attempt(driver, "unavailable", ProviderUnavailable("x", reason="timeout"), 0.5)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def test_per_process_by_default() -> None:
    clock = FakeClock(1_000_000.0)
    activity = Activity(size=3, clock=clock)
    for driver in ("a", "b", "c", "d"):
        clock.advance(1)
        activity.record(simple_message(to="Ann <ann@Ann.Example>"), sent(driver))
    recent = activity.recent()
    assert [e["driver"] for e in recent] == ["d", "c", "b"]  # newest first, only 3 kept
    assert recent[0] == {"time": 1_000_004.0, "driver": "d", "outcome": "sent",
                         "reason": "none", "elapsed": 0.01, "domains": ["ann.example"]}  # fmt: skip
    assert activity.times()["a"] == {"last_success": 1_000_001.0}


def test_two_workers_on_one_store_see_each_others_attempts(store: StateStore) -> None:
    clock = FakeClock(1_000_000.0)
    first = Activity(store=store, clock=clock)
    second = Activity(store=store, clock=clock)
    first.record(simple_message(), down("primary"))
    clock.advance(1)
    second.record(simple_message(), sent("backup"))
    clock.advance(1)
    first.record(simple_message(), sent("primary"))
    first.flush()
    second.flush()
    for worker in (first, second):
        worker.close()
        assert [(e["driver"], e["outcome"]) for e in worker.recent()] == [
            ("primary", "sent"), ("backup", "sent"), ("primary", "unavailable"),
        ]  # fmt: skip
        assert worker.times() == {
            "primary": {"last_failure": 1_000_000.0, "last_success": 1_000_002.0},
            "backup": {"last_success": 1_000_001.0},
        }


def test_the_shared_record_keeps_the_last_hundred(store: StateStore) -> None:
    clock = FakeClock(1_000_000.0)
    workers = [Activity(store=store, clock=clock) for _ in range(3)]
    for index in range(150):
        clock.advance(1)
        workers[index % 3].record(simple_message(), sent(f"d{index}"))
    for worker in workers:
        worker.close()
    recent = workers[0].recent()
    assert len(recent) == 100
    assert recent[0]["driver"] == "d149" and recent[-1]["driver"] == "d50"


def test_the_background_thread_writes_without_being_asked(store: StateStore) -> None:
    worker, reader = Activity(store=store), Activity(store=store)
    worker.record(simple_message(), sent("a"))
    deadline = time.monotonic() + 10
    while not reader.recent() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e["driver"] for e in reader.recent()] == ["a"]
    worker.close()
    assert worker._flusher is not None and not worker._flusher.is_alive()


class Broken(MemoryStore):
    def get(self, key: str) -> bytes | None:
        raise StoreError("down")

    def update(self, key, fn, *, ttl=None):  # type: ignore[no-untyped-def]
        raise StoreError("down")


def test_a_failing_store_shows_this_processs_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailfailover.flask")
    activity = Activity(store=Broken())
    activity.record(simple_message(), sent("a"))
    activity.flush()
    activity.close()
    assert [e["driver"] for e in activity.recent()] == ["a"]
    assert "last_success" in activity.times()["a"]
    warnings = [r for r in caplog.records if "shared record is unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once, not per attempt


def test_which_stores_are_shared(store: StateStore) -> None:
    class WithStore:
        def __init__(self, store: object) -> None:
            self.store = store

    assert shared_store(WithStore(store)) is store  # type: ignore[arg-type]
    assert shared_store(WithStore(MemoryStore())) is None  # type: ignore[arg-type]
    assert shared_store(WithStore(None)) is None  # type: ignore[arg-type]
    assert shared_store(object()) is None  # type: ignore[arg-type]


def test_only_the_domains_of_the_to_addresses_are_kept() -> None:
    activity = Activity()
    tricky = simple_message(
        to=['"ann@fake.example" <Ann@Real.Example>', "bob@bücher.example", "c@real.example",
            "d@four.example", "e@five.example"],
        cc="carol@cc.example",
    )  # fmt: skip
    activity.record(tricky, sent("a"))
    assert activity.recent()[0]["domains"] == ["real.example", "bücher.example", "four.example"]
