"""What operations cost a send: Prometheus metrics and the status page's record.

The metrics (`mailfailover.metrics.instrument`) and the status page's record of recent
attempts (the HTTP adapter's `Activity`) both run in the sending thread, on the mailer's
attempt hooks. Each variant sends one prepared message through a `FailoverMailer` over a
`memory` driver, so what is timed is the library's own work, not a network:

  mailer.send               no hooks
  + metrics                 instrument(mailer) into a registry of its own
  + status record           the adapter's Activity (per process, as without a shared store)
  + metrics + status        both, as `mailfailover serve` runs them
  failover + both           a primary that is down (and so skipped) before the memory
                            driver: two attempts per message, and a failover counted

Target: metrics and the status record together add at most 150 µs to a send on this
(slow) machine: under 7 % of a send to a local HTTP stand-in (about 2.2 ms in
happy_path.py), a fraction of a percent of a send to a real provider. Against the memory
driver, whose send is almost free, the ratio looks large; the added time is what counts.

    python bench/operations.py [--rounds 30] [--block 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import compare, print_load_at_end, print_machine, quiet_library_logs
from prometheus_client import CollectorRegistry

from mailfailover import FailoverMailer, MemoryDriver, Message
from mailfailover.flask._activity import Activity
from mailfailover.metrics import Metrics

TARGET_US = 150.0


def message() -> Message:
    return Message(
        "Example Shop <orders@example.com>",
        ["Ann Example <ann@example.net>", "bob@example.org"],
        "Your order A-1017 has shipped",
        "Your order has shipped.",
    )


def mailer(*, metrics: bool, status: bool, down_first: bool = False) -> FailoverMailer:
    drivers = [MemoryDriver(name="memory")]
    if down_first:
        drivers.insert(0, MemoryDriver(name="down", fail="unavailable"))
    built = FailoverMailer(drivers, cooldown=3600)
    if metrics:
        Metrics(CollectorRegistry()).instrument(built)
    if status:
        Activity().follow(built)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=400)
    args = parser.parse_args(argv)
    print_machine(argv)
    quiet_library_logs()
    sample = message()
    mailers = {
        "mailer.send": mailer(metrics=False, status=False),
        "+ metrics": mailer(metrics=True, status=False),
        "+ status record": mailer(metrics=False, status=True),
        "+ metrics + status": mailer(metrics=True, status=True),
        "failover, no hooks": mailer(metrics=False, status=False, down_first=True),
        "failover + both": mailer(metrics=True, status=True, down_first=True),
    }

    def runner(target: FailoverMailer):  # type: ignore[no-untyped-def]
        def run(n: int) -> None:
            for _ in range(n):
                target.send(sample)
            for driver in target.drivers:
                if isinstance(driver, MemoryDriver):
                    driver.clear()  # keep the outbox from growing across rounds

        return run

    comparison = compare(
        {name: runner(target) for name, target in mailers.items()},
        block=args.block,
        rounds=args.rounds,
    )
    print(comparison.table("mailer.send"))
    added = {
        name: statistics.median(
            (v - b) * 1e6
            for v, b in zip(comparison.samples[name], comparison.samples[base], strict=True)
        )
        for name, base in (("+ metrics", "mailer.send"), ("+ status record", "mailer.send"),
                           ("+ metrics + status", "mailer.send"),
                           ("failover + both", "failover, no hooks"))
    }  # fmt: skip
    print()
    for name, microseconds in added.items():
        print(f"{name:<20} adds {microseconds:6.1f} µs per message (median of paired rounds)")
    both = added["+ metrics + status"]
    print(f"metrics + status record add {both:.1f} µs per send (target <= {TARGET_US:.0f} µs)")
    print_load_at_end()
    return 0 if both <= TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
