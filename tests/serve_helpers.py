"""``mailfailover serve`` in a subprocess on a free loopback port, for end-to-end tests.

:func:`running_server` writes the configuration, starts the server, waits (bounded) until
each worker has loaded the app, yields a :class:`Served`, and stops it by pid: SIGTERM, then
SIGKILL if it does not exit in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
import yaml

BOOT_SECONDS = 60.0
STOP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Served:
    """A running server: its URL, its log and a few request helpers."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=10, **kwargs)


def _wait(process: subprocess.Popen[bytes], served: Served, workers: int) -> None:
    deadline = time.monotonic() + BOOT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited early:\n{served.output()}")
        if served.output().count("] mailfailover.flask: worker ") >= workers:
            with contextlib.suppress(requests.ConnectionError):
                served.get("/health", headers={"Authorization": "Bearer -"})
                return
        time.sleep(0.1)
    raise AssertionError(f"the server did not start in {BOOT_SECONDS:.0f} s:\n{served.output()}")


@contextlib.contextmanager
def running_server(
    workdir: Path,
    config: Mapping[str, Any],
    *,
    workers: int = 1,
    threads: int = 4,
    env: Mapping[str, str] | None = None,
) -> Iterator[Served]:
    """Run ``mailfailover serve`` with ``config`` until the block ends."""
    path = workdir / "mail.yml"
    path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
    port = free_port()
    log = workdir / "server.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MAILFAILOVER_")}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    environment.update(env or {})
    environment["PYTHONUNBUFFERED"] = "1"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailfailover.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(workers), "--threads", str(threads),
             "--config", str(path)],
            cwd=workdir,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: workers die with it
        )  # fmt: skip
        served = Served(process, f"http://127.0.0.1:{port}", log)
        try:
            _wait(process, served, workers)
            yield served
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(STOP_SECONDS)
