"""One process of a fleet sharing a state store: ``python bench/_fleet.py OPTIONS``.

Used by ``bench/shared_state.py`` and ``tests/state/test_shared_health.py``.

Builds a mailer ``[primary (postmark at --primary), backup]`` on ``--state``, says it is
ready (``--ready`` file), waits for the ``--go`` file, then sends ``--count`` messages (or
for ``--duration`` seconds), one at a time, ``--interval`` apart. Prints one JSON object:
every attempt that reached a driver (wall-clock start and end, driver, outcome), what was
sent or failed, and the mailfailover log lines. Whoever runs it kills it by pid if it ever
outlives its timeout; :func:`run_fleet` does all of this.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailfailover import Attempt, FailoverMailer, MailError, MemoryDriver, Message
from mailfailover.registry import load_driver
from mailfailover.state import ResilientStore, open_store


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", required=True)
    parser.add_argument("--namespace", default="mailfailover")
    parser.add_argument("--ident", default="0")
    parser.add_argument("--primary", required=True, help="base URL of the primary")
    parser.add_argument("--backup", help="base URL of an HTTP backup (else a memory driver)")
    parser.add_argument("--timeout", type=float, default=0.3)
    parser.add_argument("--cooldown", type=float, default=1.0)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--strategy", default="failover")
    parser.add_argument("--count", type=int)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--retry-interval", type=float, default=0.5)
    parser.add_argument("--ready")
    parser.add_argument("--go")
    options = parser.parse_args()

    collect = Collect()
    logger = logging.getLogger("mailfailover")
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)

    postmark = load_driver("postmark")
    settings = {"server_token": "FAKE-postmark-KEY", "timeout": options.timeout,
                "connect_timeout": options.timeout}  # fmt: skip
    primary = postmark(name="primary", base_url=options.primary, **settings)
    backup: Any = (
        postmark(name="backup", base_url=options.backup, **settings)
        if options.backup
        else MemoryDriver(name="backup")
    )
    store: Any = open_store(options.state, namespace=options.namespace)
    if not options.state.startswith("memory:"):
        store = ResilientStore(store, retry_interval=options.retry_interval)
    attempts: list[list[Any]] = []

    def on_attempt(message: Message, attempt: Attempt) -> None:
        if attempt.outcome != "skipped" or attempt.error is not None:
            end = time.time()
            attempts.append([end - attempt.elapsed, end, attempt.driver, attempt.outcome])

    mailer = FailoverMailer(
        [primary, backup],
        strategy=options.strategy,
        failure_threshold=options.threshold,
        cooldown=options.cooldown,
        on_attempt=on_attempt,
        state=store,
    )
    if options.ready:
        with open(options.ready, "w") as ready:
            ready.write(str(os.getpid()))
    if options.go:
        waited = time.monotonic() + 120
        while not os.path.exists(options.go):
            if time.monotonic() > waited:
                sys.exit("no go file within 120 s")
            time.sleep(0.005)
    sent: dict[str, int] = {}
    ids: list[str] = []
    failed = 0
    started = time.monotonic()
    number = 0
    while True:
        if options.count is not None and number >= options.count:
            break
        if options.duration is not None and time.monotonic() - started >= options.duration:
            break
        message_id = f"<w{options.ident}-{number}@example.com>"
        number += 1
        message = Message("a@example.com", "b@example.com", "fleet", "x", message_id=message_id)
        try:
            result = mailer.send(message)
        except MailError:
            failed += 1
        else:
            sent[result.driver] = sent.get(result.driver, 0) + 1
            ids.append(message_id)
        time.sleep(options.interval)
    mailer.close()
    store.close()
    json.dump({"attempts": attempts, "sent": sent, "ids": ids, "failed": failed,
               "logs": collect.lines}, sys.stdout)  # fmt: skip


WORKER = os.path.abspath(__file__)


def run_fleet(
    workdir: Path,
    args: list[str],
    *,
    processes: int = 4,
    timeout: float = 120,
    during: Callable[[], object] | None = None,
) -> list[dict[str, Any]]:
    """Start ``processes`` workers, release them together, return their reports."""
    run = workdir / f"run-{uuid.uuid4().hex[:6]}"
    run.mkdir()
    go = run / "go"
    procs = []
    try:
        for i in range(processes):
            procs.append(subprocess.Popen(
                [sys.executable, WORKER, "--ident", str(i), "--ready", str(run / f"ready{i}"),
                 "--go", str(go), *args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            ))  # fmt: skip
        limit = time.monotonic() + timeout
        while not all((run / f"ready{i}").exists() for i in range(processes)):
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(proc.communicate()[1].decode())
            if time.monotonic() > limit:
                raise RuntimeError("the workers did not start")
            time.sleep(0.02)
        go.touch()
        if during is not None:
            during()
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=max(limit - time.monotonic(), 1))
            if proc.returncode != 0:
                raise RuntimeError(err.decode())
            reports.append(json.loads(out))
        return reports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
