"""A fleet of real processes on one state store shares one breaker per driver.

Four worker processes (``bench/_fleet.py``) send through ``[primary, backup]``. With a
shared store (sqlite, redis) the fleet pays about one primary timeout per cooldown window —
exactly one probe at a time, fleet-wide — where ``memory://`` makes every process pay its
own; a ``Retry-After`` one process saw keeps the others off; and a Redis server killed and
restarted mid-run loses and doubles nothing while the sending goes on.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer

from mailfailover.health import HealthRecord
from mailfailover.state import open_store

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from _fleet import run_fleet  # noqa: E402 - bench/ is put on the path above
from _servers import Answer, StandInServer  # noqa: E402

PROCESSES = 4
T = 0.3  # the primary's timeout
COOLDOWN = 1.0
SLACK = 0.25  # < COOLDOWN - T: two probes at once would still fail the test


class BlackHole:
    """A loopback server that accepts connections and never answers; counts them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.listener.settimeout(0.05)
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self.listener.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


def primary_attempts(reports: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    found = [(s, e, o) for r in reports for s, e, d, o in r["attempts"] if d == "primary"]
    return sorted(found)


def test_the_fleet_pays_one_timeout_per_cooldown_not_one_per_process(
    store_url: str, black_hole: BlackHole, tmp_path: Path
) -> None:
    namespace = f"f{uuid.uuid4().hex[:8]}"
    reports = run_fleet(tmp_path, [
        "--state", store_url, "--namespace", namespace, "--primary", black_hole.url,
        "--timeout", str(T), "--cooldown", str(COOLDOWN), "--duration", "3.6",
    ])  # fmt: skip
    tried = primary_attempts(reports)
    assert tried and all(outcome == "unavailable" for *_, outcome in tried)
    assert black_hole.accepted == len(tried)  # each attempt cost one connection and one T
    assert all(r["failed"] == 0 for r in reports)  # the backup delivered everything
    per_process = [sum(d == "primary" for *_, d, _ in r["attempts"]) for r in reports]
    if store_url == "memory://":
        # each process learns on its own: its first timeout, then a probe of its own
        assert all(n >= 2 for n in per_process), per_process
        return
    # The first wave: processes that sent before anyone's timeout came back.
    first_failure_seen = min(end for _, end, _ in tried)
    wave = [a for a in tried if a[0] < first_failure_seen]
    later = [a for a in tried if a[0] >= first_failure_seen]
    assert 1 <= len(wave) <= PROCESSES
    # After that, exactly one probe at a time fleet-wide, each a full cooldown after the
    # previous one failed: never two processes at once, never one per process.
    assert later, "nobody probed the primary after its cooldown"
    # (A worker stamps an attempt's end after recording its failure in the store, so on a
    # loaded machine an end can be late by a store write: hence the slack.)
    previous_end = max(end for _, end, _ in wave)
    for start, end, _ in later:
        assert start >= previous_end + COOLDOWN - SLACK, (start - previous_end, tried)
        previous_end = end
    assert len(later) <= 3  # 3.6 s: at most one probe per (cooldown + T) window


def test_retry_after_seen_by_one_process_keeps_the_fleet_off(
    store_url: str, tmp_path: Path
) -> None:
    namespace = f"r{uuid.uuid4().hex[:8]}"
    limited = Answer(429, {"ErrorCode": 429, "Message": "rate limited"}, (("Retry-After", "120"),))
    with StandInServer(record=False) as server:
        server.default = limited
        common = ["--state", store_url, "--namespace", namespace, "--primary", server.url,
                  "--cooldown", "0.2"]  # fmt: skip
        run_fleet(tmp_path, [*common, "--count", "1"], processes=1)
        assert server.received == 1
        reports = run_fleet(tmp_path, [*common, "--duration", "1.5"], processes=3)
        if store_url == "memory://":
            assert server.received == 4  # every new process asked for itself
        else:
            assert server.received == 1  # nobody else touched it for the whole run
            assert all(r["attempts"] and r["sent"] == {"backup": len(r["ids"])} for r in reports)
            store = open_store(store_url, namespace=namespace)
            try:
                record = HealthRecord.from_bytes(store.get("health:primary"))
                assert record.retry_after == 120 and record.until is not None
                assert record.until - store.now() > 100
            finally:
                store.close()


def test_redis_killed_and_restarted_mid_run_loses_and_doubles_nothing(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """Round robin over two good providers, so the shared rotation counter is written all
    along; Redis dies 0.5 s in and comes back (empty) 1.5 s later."""
    pattern = rb"<w\d+-\d+@example\.com>"
    with StandInServer(record=False, id_pattern=pattern) as one, \
            StandInServer(record=False, id_pattern=pattern) as two:  # fmt: skip

        def outage() -> None:
            time.sleep(0.5)
            private_redis.stop()
            time.sleep(1.5)
            private_redis.start()

        reports = run_fleet(tmp_path, [
            "--state", private_redis.url, "--primary", one.url, "--backup", two.url,
            "--strategy", "round_robin", "--duration", "4", "--interval", "0.005",
            "--retry-interval", "0.3",
        ], during=outage)  # fmt: skip
        sent_ids = [i for r in reports for i in r["ids"]]
        served = [i.decode() for i in one.ids + two.ids if i is not None]
    assert all(r["failed"] == 0 for r in reports)
    assert len(sent_ids) == len(set(sent_ids))
    assert all(len(r["ids"]) >= 10 for r in reports)  # each kept sending (4 s, 5 ms apart)
    assert sorted(served) == sorted(sent_ids)  # every message delivered exactly once
    for report in reports:
        logs = "\n".join(report["logs"])
        assert "using this process's own state" in logs
        assert "shared state rejoined" in logs
        assert sum(report["sent"].values()) == len(report["ids"])
    store = open_store(private_redis.url)
    try:
        assert int(store.get("rotation") or 0) > 0  # written again after the restart
    finally:
        store.close()
