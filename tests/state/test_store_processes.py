"""Atomicity across real processes, for the backends that are shared between processes."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from redis_server import RedisServer

from mailfailover.state import open_store

WORKER = """
import sys
from mailfailover.state import open_store

url, namespace, mode, ident = sys.argv[1:]
store = open_store(url, namespace=namespace)
if mode == "count":
    def bump(old):
        value = int(old or b"0") + 1
        return str(value).encode(), value
    for _ in range(50):
        store.update("n", bump)
        store.incr("c")
elif mode == "claim":
    print("won" if store.add("lease", ident.encode(), ttl=60) else "lost")
store.close()
"""


@pytest.fixture(params=["sqlite", "redis"])
def shared_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{request.getfixturevalue('tmp_path') / 'state.db'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


def run_workers(url: str, namespace: str, mode: str, count: int = 4) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, namespace, mode, str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(count)
    ]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
            outputs.append(out.decode().strip())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outputs


def test_read_modify_write_is_atomic_across_processes(shared_url: str) -> None:
    namespace = f"p{uuid.uuid4().hex[:8]}"
    run_workers(shared_url, namespace, "count")
    store = open_store(shared_url, namespace=namespace)
    try:
        assert store.get("n") == b"200"
        assert store.get("c") == b"200"
    finally:
        store.close()


def test_exactly_one_process_wins_a_lease(shared_url: str) -> None:
    outputs = run_workers(shared_url, f"p{uuid.uuid4().hex[:8]}", "claim", count=4)
    assert sorted(outputs) == ["lost"] * 3 + ["won"]


OPENER = """
import pathlib, sys, time
from mailfailover.state.sqlite import SqliteStore

folder, start, files = pathlib.Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
for number in range(files):  # a fresh database each, that every worker opens at once
    time.sleep(max(start + 0.15 * number - time.time(), 0.0))
    store = SqliteStore(folder / f"state-{number}.db")
    store.set("opened", b"yes")
    store.close()
"""


def test_workers_starting_together_all_open_one_fresh_sqlite_file(tmp_path: Path) -> None:
    """Switching a fresh database to WAL can answer "database is locked" without waiting
    for the busy timeout; gunicorn workers booting together on a new state file hit it.
    Eight processes open the same fresh files at the same moments (of the wall clock, so
    that they meet whatever their start-up took): every open succeeds."""
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(tmp_path), str(start), "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(8)
    ]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
