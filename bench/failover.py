"""Failover cost: what a dead primary costs once the mailer knows it is dead.

Part 1, primary refusing connections (a closed port): per-message time through
FailoverMailer([dead primary, healthy backup]) against FailoverMailer([healthy]), in
interleaved blocks, after a warm-up that trips the primary's breaker (the mailer's defaults:
2 failures, 30 s cooldown; on a long run the primary is probed again every 30 s, and that
probe is in the numbers). Target: within 1.10x.

Part 2, primary accepting connections and never answering (read timeout T): 200 messages
through [silent primary, healthy backup] with a fresh mailer, against 200 healthy sends
measured in the same run. Target: about one T plus the 200 healthy sends. The breaker
opens after ``failure_threshold`` failures, so the run pays that many timeouts; both the
default threshold (2) and 1 are shown, and 8 threads sending at once (each thread that
reaches the primary before the breaker opens waits its own T, concurrently).

    python bench/failover.py [--rounds 20] [--block 40] [--timeout 0.5] [--trials 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import PROVIDERS, closed_port, silent_listener, spawn
from _timing import compare, print_load_at_end, print_machine, quiet_library_logs
from happy_path import make_message

from mailfailover import FailoverMailer

SENDGRID = PROVIDERS["sendgrid"]
MESSAGES = 200


def refused_primary(url: str, rounds: int, block: int) -> float:
    message = make_message()
    healthy = FailoverMailer([SENDGRID.make(url, name="healthy")])
    dead = f"http://127.0.0.1:{closed_port()}"
    failover = FailoverMailer(
        [SENDGRID.make(dead, name="primary"), SENDGRID.make(url, name="backup")]
    )
    for _ in range(3):  # trip the breaker: threshold 2
        failover.send(message)
    assert failover.health()[0].state.value == "cooling_down"

    def run(mailer: FailoverMailer) -> object:
        def send(n: int) -> None:
            for _ in range(n):
                mailer.send(message)

        return send

    result = compare({"healthy single provider": run(healthy),
                      "dead primary + backup": run(failover)},
                     block=block, rounds=rounds)  # fmt: skip
    print("== primary refusing connections")
    print(result.table("healthy single provider"))
    ratio = result.ratio("dead primary + backup", "healthy single provider")[0]
    print(f"target <= 1.10x: {ratio:.3f}x ({'met' if ratio <= 1.10 else 'NOT met'})\n")
    return ratio


def _timed(mailer: FailoverMailer, threads: int) -> float:
    message = make_message()
    per_thread = MESSAGES // threads
    started = time.perf_counter()
    workers = [
        threading.Thread(target=lambda: [mailer.send(message) for _ in range(per_thread)])
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def silent_primary(url: str, timeout: float, trials: int) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    with silent_listener(backlog=256) as silent:
        cases = [(threshold, threads) for threads in (1, 8) for threshold in (2, 1)]
        healthy_times: dict[int, list[float]] = {1: [], 8: []}
        failover_times: dict[tuple[int, int], list[float]] = {case: [] for case in cases}
        for _ in range(trials):
            for threads in (1, 8):
                with FailoverMailer([SENDGRID.make(url, name="healthy")]) as mailer:
                    mailer.send(make_message())  # connect outside the timing
                    healthy_times[threads].append(_timed(mailer, threads))
            for threshold, threads in cases:
                primary = SENDGRID.make(silent, name="primary", timeout=timeout)
                backup = SENDGRID.make(url, name="backup")
                with FailoverMailer([primary, backup], failure_threshold=threshold) as mailer:
                    backup.send(make_message())  # connect outside the timing
                    failover_times[(threshold, threads)].append(_timed(mailer, threads))
    print(f"== primary accepting and never answering: {MESSAGES} messages, T = {timeout} s, "
          f"median of {trials} trials")  # fmt: skip
    print(f"{'case':<40} {'total s':>8} {'healthy s':>10} {'extra s':>8} {'extra / T':>10}")
    for threshold, threads in cases:
        total = statistics.median(failover_times[(threshold, threads)])
        healthy = statistics.median(healthy_times[threads])
        extra = total - healthy
        label = f"threshold {threshold}, {threads} thread{'s' if threads > 1 else ''}"
        print(f"{label:<40} {total:>8.3f} {healthy:>10.3f} {extra:>8.3f} {extra / timeout:>10.2f}")
        rows.append((label, total, extra / timeout))
    print("target: about one T plus the healthy sends (extra / T about 1)\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--trials", type=int, default=3)
    options = parser.parse_args(argv)
    print_machine()
    quiet_library_logs()
    with spawn("http") as port:
        url = f"http://127.0.0.1:{port}"
        ratio = refused_primary(url, options.rounds, options.block)
        silent_primary(url, options.timeout, options.trials)
    print_load_at_end()
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
