"""A failing store never stops mail: the resilient wrapper falls back and rejoins."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from redis_server import RedisServer
from socket_servers import replying_server, silent_server

from mailfailover.state import ResilientStore, StoreError, open_store
from mailfailover.testing import FakeClock


def test_kill_falls_back_with_one_warning_then_rejoins(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailfailover")
    clock = FakeClock()
    store = ResilientStore(open_store(private_redis.url, namespace="r"), clock=clock)
    try:
        store.set("shared", b"1")
        private_redis.stop()
        for _ in range(5):  # each call answers, from this process's own state
            store.set("local", b"2")
            assert store.get("local") == b"2"
        assert store.degraded
        assert store.get("shared") is None  # the fallback knows nothing of the shared state
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "unavailable" in warnings[0].getMessage()

        private_redis.start()
        assert store.get("local") == b"2"  # still within the retry interval: fallback
        clock.advance(store.retry_interval)
        assert store.get("local") is None  # the real store again; the guess is dropped
        assert not store.degraded
        assert any("rejoined" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with silent_server() as port:
        yield port


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A loopback port that answers every request with bytes that are not RESP."""
    with replying_server(b"HTTP/1.1 200 OK\r\n\r\n<html>") as port:
        yield port


def test_a_silent_store_times_out_into_a_store_error(black_hole: int) -> None:
    store = open_store(f"redis://127.0.0.1:{black_hole}/0?socket_timeout=0.2")
    try:
        with pytest.raises(StoreError) as info:
            store.get("k")
        assert "127.0.0.1" in str(info.value)
    finally:
        store.close()


def test_a_store_answering_garbage_is_a_store_error(garbage_server: int) -> None:
    store = open_store(f"redis://127.0.0.1:{garbage_server}/0")
    try:
        with pytest.raises(StoreError):
            store.set("k", b"v")
    finally:
        store.close()


def test_resilient_store_keeps_answering_when_the_store_is_silent(black_hole: int) -> None:
    store = ResilientStore(open_store(f"redis://127.0.0.1:{black_hole}/0?socket_timeout=0.2"))
    try:
        assert store.add("lease", b"me", ttl=30) is True
        assert store.add("lease", b"you", ttl=30) is False  # answered by the fallback
        assert store.degraded
    finally:
        store.close()


def test_store_errors_never_show_the_password(private_redis: RedisServer) -> None:
    url = private_redis.url.replace("redis://", "redis://user:hunter2@")
    store = open_store(url)
    try:
        assert "hunter2" not in repr(store)
        assert "hunter2" not in store.url
        with pytest.raises(StoreError) as info:
            store.get("k")  # no such user on this server
        assert "hunter2" not in str(info.value)
    finally:
        store.close()


def test_sqlite_store_that_cannot_open_is_a_store_error(tmp_path: object) -> None:
    from pathlib import Path

    blocker = Path(str(tmp_path)) / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError):
        open_store(f"sqlite:///{blocker / 'state.db'}")


def test_every_store_operation_goes_through_the_fallback() -> None:
    """Each public operation of StateStore is ResilientStore's own (through its fallback),
    so one added to the base class later cannot reach the server around it."""
    from mailfailover.state import StateStore

    operations = {
        name
        for name, member in vars(StateStore).items()
        if callable(member) and not name.startswith("_") and name != "from_url"
    }
    assert {"get_many", "set_many", "delete_many", "update", "scan"} <= operations
    missing = sorted(name for name in operations if name not in vars(ResilientStore))
    assert missing == []
