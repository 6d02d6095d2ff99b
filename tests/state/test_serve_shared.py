"""``mailfailover serve --workers 4`` on a shared state store, over a real socket.

The primary is a loopback socket that accepts and never answers (timeout 1 s); the backup
writes .eml files. One request finds the primary down in one worker; every request after
that, whichever of the four workers takes it, skips the primary at once — the black hole
sees exactly one connection — and ``GET /health`` from any worker reports it cooling down.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml
from redis_server import RedisServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")

BODY = {"sender": "shop@example.com", "to": "ann@example.com", "subject": "Hi", "text": "x"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def black_hole() -> Iterator[socket.socket]:
    """Connections complete in the kernel's backlog and are never answered."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    try:
        yield listener
    finally:
        listener.close()


def accepted(listener: socket.socket) -> int:
    """How many connections reached the black hole (each is one primary attempt)."""
    listener.settimeout(0.2)
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return count
        conn.close()
        count += 1


@pytest.fixture(params=["sqlite", "redis"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    server: RedisServer = request.getfixturevalue("private_redis")
    return server.url


def test_serve_workers_share_one_breaker(
    tmp_path: Path, black_hole: socket.socket, state_url: str
) -> None:
    outbox = tmp_path / "outbox"
    hole = f"http://127.0.0.1:{black_hole.getsockname()[1]}"
    config = tmp_path / "mail.yml"
    config.write_text(yaml.safe_dump({
        "state": state_url,
        "cooldown": 300,
        "drivers": [
            {"name": "primary", "module": "postmark",
             "settings": {"server_token": "FAKE", "base_url": hole, "timeout": 1,
                          "connect_timeout": 1}},
            {"name": "backup", "module": "file", "settings": {"directory": str(outbox)}},
        ],
    }))  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "mailfailover.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "4", "--threads", "4", "--config", str(config)],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (tmp_path / "server.log").read_text().count("] mailfailover.flask: worker ") < 4:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the four workers did not start"
            time.sleep(0.1)

        first = requests.post(url + "/send", json=BODY, timeout=30)
        assert first.status_code == 200, first.text
        assert [(a["driver"], a["outcome"]) for a in first.json()["attempts"]] == [
            ("primary", "unavailable"), ("backup", "sent"),
        ]  # fmt: skip

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(
                lambda _: requests.post(url + "/send", json=BODY, timeout=30), range(40)
            ))  # fmt: skip
        assert all(a.status_code == 200 for a in answers)
        tried = [[(x["driver"], x["outcome"]) for x in a.json()["attempts"]] for a in answers]
        odd = [t for t in tried if t != [("primary", "skipped"), ("backup", "sent")]]
        assert not odd, (odd, (tmp_path / "server.log").read_text())
        assert accepted(black_hole) == 1  # only the first request ever waited on the primary
        assert len(list(outbox.glob("*.eml"))) == 41

        health = [requests.get(url + "/health", timeout=10).json() for _ in range(12)]
        assert {h["status"] for h in health} == {"degraded"}
        assert {h["drivers"][0]["state"] for h in health} == {"cooling_down"}
        assert {h["drivers"][0]["consecutive_failures"] for h in health} == {1}
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(30)
        log.close()
