"""Brownout and rate-limit routing (issue 13), with in-process drivers that sleep.

The drivers are MemoryDrivers that take a fixed time per send (``time.sleep``), so what is
measured is the routing, not a transport. One run each:

  brownout     a primary answering in 1 s and a backup in 10 ms, 200 messages through
               ``send_many(workers=8)``: without ``slow_after``, with ``slow_after: 0.2``,
               and all 200 straight through the backup. Target: with ``slow_after`` within
               10 % of all-through-backup plus a handful of slow sends.
  rate limit   ``rate: 50/s`` on a primary, 500 messages as fast as possible
               (``send_many(workers=8)``): every message delivered once, the primary never
               over 50 in any one-second window, the overflow on the backup.

    python bench/routing.py
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import print_load_at_end, print_machine, quiet_library_logs

from mailfailover import DriverPolicy, FailoverMailer, Message, SendResult
from mailfailover.driver import Receipt
from mailfailover.testing import MemoryDriver


class Timed(MemoryDriver):
    """Takes ``seconds`` per send and stamps each send's start."""

    def __init__(self, seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds
        self.stamps: list[float] = []
        self._stamp_lock = threading.Lock()

    def send(self, message: Message) -> Receipt:
        with self._stamp_lock:
            self.stamps.append(time.monotonic())
        time.sleep(self.seconds)
        return super().send(message)


def messages(n: int) -> list[Message]:
    return [Message("shop@example.com", f"c{i}@example.net", f"Order {i}", "Shipped.")
            for i in range(n)]  # fmt: skip


def run(drivers: list[Timed], n: int, **policies: DriverPolicy) -> tuple[float, list[Any]]:
    mailer = FailoverMailer(drivers, policies=policies)
    started = time.perf_counter()
    results = mailer.send_many(messages(n), workers=8)
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not isinstance(r, SendResult)]
    if failed:
        raise SystemExit(f"a send failed: {failed[0]!r}")
    return elapsed, results


def brownout() -> None:
    print("\n== brownout: primary 1 s per send, backup 10 ms, 200 messages, 8 workers")
    times = {}
    for label in ("all through the backup", "slow_after: 0.2", "without slow_after"):
        primary, backup = Timed(1.0, name="primary"), Timed(0.01, name="backup")
        if label == "all through the backup":
            elapsed, results = run([backup], 200)
        elif label == "slow_after: 0.2":
            elapsed, results = run([primary, backup], 200, primary=DriverPolicy(slow_after=0.2))
        else:
            elapsed, results = run([primary, backup], 200)
        slow = sum(1 for r in results if r.attempts[-1].reason == "slow")
        once = len(primary.outbox) + len(backup.outbox) == 200
        times[label] = elapsed
        print(f"{label:<24} {elapsed:7.2f} s   primary {len(primary.outbox):3}  "
              f"backup {len(backup.outbox):3}  slow sends {slow:2}  each once: {once}")  # fmt: skip
    base = times["all through the backup"]
    print(f"slow_after: 0.2 is {times['slow_after: 0.2'] / base:.2f}x all-through-backup "
          f"(+{times['slow_after: 0.2'] - base:.2f} s); without it "
          f"{times['without slow_after'] / base:.1f}x")  # fmt: skip


def rate_limit() -> None:
    print("\n== rate limit: rate 50/s on the primary, 500 messages as fast as possible")
    primary, backup = Timed(0.001, name="primary"), Timed(0.001, name="backup")
    elapsed, _ = run([primary, backup], 500, primary=DriverPolicy(rate="50/s"))
    stamps = sorted(primary.stamps)
    # starts are stamped after the slot is granted: allow 5 ms of scheduling between them
    worst = max((sum(1 for t in stamps if s <= t < s + 0.995) for s in stamps), default=0)
    once = len(primary.outbox) + len(backup.outbox) == 500
    print(
        f"{elapsed:.2f} s; primary {len(primary.outbox)}, backup {len(backup.outbox)}, "
        f"each once: {once}; most primary sends in any 1-s window: {worst} (limit 50)"
    )


def main() -> None:
    quiet_library_logs()
    print_machine()
    brownout()
    rate_limit()
    print_load_at_end()


if __name__ == "__main__":
    main()
