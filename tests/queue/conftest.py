"""Fixtures for queued delivery: a real redis-server (broker and state store), real
``mailfailover worker`` processes, and a provider stand-in over a real loopback socket.

Each test gets its own queue name and store namespace, so tests sharing the session's
redis-server never see each other's tasks or records. Workers run in their own session
(process group) and are killed by that id: a SIGKILL takes the pool processes with them,
as a machine that loses power would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

_BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))

from _servers import StandInServer  # noqa: E402 - found through the path set just above

pytest.importorskip("celery")

from mailfailover import Message  # noqa: E402
from mailfailover.delivery import FINAL_STATUSES  # noqa: E402
from mailfailover.state import open_store  # noqa: E402

#: Matches the Message-IDs of :func:`queued_message` in a provider's request body.
ID_PATTERN = rb"<q\d+-[0-9a-f]{8}@example\.com>"
#: Short timings so a killed worker's tasks come back within seconds.
FAST_QUEUE = {
    "max_age": 120,
    "backoff": 0.2,
    "backoff_max": 1,
    "lease": 3,
    "visibility_timeout": 5,
    "connect_timeout": 1,
}
WORKER_START_TIMEOUT = 60.0


def queued_message(index: int, run: str) -> Message:
    return Message(
        "Queue <queue@example.com>",
        f"rcpt{index}@example.com",
        f"Queued {index}",
        "Hello from the queue.",
        message_id=f"<q{index}-{run}@example.com>",
    )


@pytest.fixture
def stand_in() -> Iterator[StandInServer]:
    """A Postmark stand-in that notes each accepted body's Message-ID."""
    with StandInServer(record=False, id_pattern=ID_PATTERN, hang_seconds=5.0) as server:
        yield server


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def queue_config(
    tmp_path: Path, redis_server: Any, stand_in: StandInServer, run_id: str
) -> Callable[..., Path]:
    """Write a config (Postmark at the stand-in, the session redis as broker and store);
    keyword arguments override ``queue:`` keys, ``top`` the top-level ones."""

    def write(top: dict[str, Any] | None = None, **queue: Any) -> Path:
        base = f"redis://127.0.0.1:{redis_server.port}"
        document: dict[str, Any] = {
            "failure_threshold": 1,
            "cooldown": 0.5,
            "timeout": 2,
            "drivers": [
                {
                    "name": "postmark",
                    "module": "postmark",
                    "settings": {"server_token": "FAKE-postmark-KEY", "base_url": stand_in.url},
                }
            ],
            "state": {"url": f"{base}/0", "namespace": f"q{run_id}"},
            "queue": {"broker": f"{base}/1", "name": f"mail-{run_id}", **FAST_QUEUE, **queue},
        }
        document.update(top or {})
        path = tmp_path / f"mail-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(yaml.safe_dump(document))
        return path

    return write


class Worker:
    """One ``mailfailover worker`` process (and its pool), in a session of its own."""

    def __init__(self, config: Path, log: Path, concurrency: int = 2, pool: str = "prefork"):
        self.log = log
        command = [
            *(sys.executable, "-m", "mailfailover.cli", "worker", "--config", str(config)),
            *("--concurrency", str(concurrency), "--pool", pool, "--loglevel", "INFO"),
        ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = WORKER_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log.read_bytes():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"the worker did not start:\n{self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start workers; every one still running at the end is killed by its group id."""
    started: list[Worker] = []

    def start(config: Path, concurrency: int = 2, pool: str = "prefork") -> Worker:
        worker = Worker(config, tmp_path / f"worker-{len(started)}.log", concurrency, pool)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def wait_final(config: Path, message_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Poll the delivery records until every message is final; their records."""
    loaded = yaml.safe_load(config.read_text())
    store = open_store(loaded["state"])
    keys = [f"delivery:{m}" for m in message_ids]
    deadline = time.monotonic() + timeout
    records: dict[str, dict[str, Any]] = {}
    try:
        while True:
            raw = store.get_many(keys)
            records = {
                m: json.loads(r) for m, r in zip(message_ids, raw, strict=True) if r is not None
            }
            done = [m for m, r in records.items() if r["status"] in FINAL_STATUSES]
            if len(done) == len(message_ids) or time.monotonic() > deadline:
                return records
            time.sleep(0.2)
    finally:
        store.close()
