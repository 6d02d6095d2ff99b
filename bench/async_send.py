"""The asyncio mailer against the threaded one, with a provider that takes 50 ms to answer.

A local stand-in (its own process) answers SendGrid's API after ``--latency`` seconds.
The same messages go through the sendgrid driver in three ways, timed in interleaved blocks:

  async send_many(concurrency=100)  AsyncFailoverMailer on the aiohttp transport, one
                                    event loop, a pool of 100 connections
  sync send_many(workers=8)         FailoverMailer.send_many on 8 threads (requests)
  sequential send                   FailoverMailer.send, one message after another

Then memory per in-flight message: tracemalloc's peak while ``send_many`` runs with
``concurrency`` (or ``workers``) sends in flight, over the idle baseline, divided by that
number (Python allocations only: a thread's stack is not counted).

Target: the async mailer at least 5x the throughput of the threaded pool.

    python bench/async_send.py [--messages 1000] [--concurrency 100] [--latency 0.05]

``--driver smtp``: the same through the smtp driver to a local SMTP sink (``smtp-fast``,
offering PIPELINING) that holds every reply back by ``--latency`` (default there 5 ms: an
SMTP send is four or five round trips), with one more variant: the async mailer with the
SMTP driver run in worker threads (``Driver.asend``'s default, what it did before the
native aiosmtplib path). Both ``send_many`` batch (batch_size 25) and pipeline: the threaded one
on blocking sockets, the async one natively on aiosmtplib (``SMTPDriver.asend_batch``, the
same session). No target; the ratios are reported.

    python bench/async_send.py --driver smtp [--messages 1000] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import PROVIDERS, spawn
from _timing import compare, print_load_at_end, print_machine, quiet_library_logs

from mailfailover import FailoverMailer, Message, Receipt, SendResult
from mailfailover.aio import AsyncFailoverMailer
from mailfailover.driver import Driver
from mailfailover.drivers.smtp import SMTPDriver

TARGET = 5.0


def _messages(count: int) -> list[Message]:
    return [
        Message(sender="Shop <shop@example.com>", to=[f"customer{i}@example.com"],
                subject=f"Your receipt #{i}", text="Thanks for your order.\n" * 5)
        for i in range(count)
    ]  # fmt: skip


class _ThreadedSMTP(SMTPDriver):
    """The smtp driver as the async mailer ran it before aiosmtplib: ``send`` in a thread."""

    async def asend(self, message: Message) -> Receipt:
        return await Driver.asend(self, message)

    async def asend_batch(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        return await self.asend_each(messages)  # a thread per message, as before

    async def aclose(self) -> None:
        await Driver.aclose(self)


def _check(results: list[Any]) -> None:
    failed = [r for r in results if not isinstance(r, SendResult)]
    if failed:
        raise RuntimeError(f"{len(failed)} sends failed, e.g. {failed[0]!r}")


def _memory_per_send(run: Callable[[list[Message]], object], messages: list[Message],
                     in_flight: int) -> float:  # fmt: skip
    """Peak Python memory while ``run`` sends ``messages``, over the baseline, per send in
    flight (bytes)."""
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        run(messages)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - baseline) / in_flight


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--latency",
        type=float,
        default=None,
        help="seconds before each answer (default 0.05; smtp: 0.005 per reply)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--driver", choices=("sendgrid", "smtp"), default="sendgrid")
    options = parser.parse_args(argv)
    print_machine(argv)
    quiet_library_logs()
    if options.driver == "smtp":
        return _smtp(options)
    if options.latency is None:
        options.latency = 0.05

    block = max(options.messages // options.rounds, 1)
    messages = _messages(block)
    sendgrid = PROVIDERS["sendgrid"]
    with spawn("http", "--latency", str(options.latency)) as port:
        url = f"http://127.0.0.1:{port}"
        loop = asyncio.new_event_loop()
        amailer = AsyncFailoverMailer(
            [sendgrid.make(url, name="sendgrid", pool_size=options.concurrency, timeout=30)]
        )
        mailer = FailoverMailer(
            [sendgrid.make(url, name="sendgrid", pool_size=options.workers, timeout=30)]
        )

        def async_many(batch: list[Message]) -> None:
            coroutine = amailer.send_many(batch, concurrency=options.concurrency)
            _check(loop.run_until_complete(coroutine))

        def sync_many(batch: list[Message]) -> None:
            _check(mailer.send_many(batch, workers=options.workers))

        def sequential(batch: list[Message]) -> None:
            _check([mailer.send(message) for message in batch])

        names = {
            "async": f"async send_many(concurrency={options.concurrency})",
            "sync": f"sync send_many(workers={options.workers})",
            "sequential": "sequential send",
        }
        variants = {
            names["async"]: lambda n: async_many(messages[:n]),
            names["sync"]: lambda n: sync_many(messages[:n]),
            names["sequential"]: lambda n: sequential(messages[:n]),
        }
        print(f"{block * options.rounds} messages per variant in blocks of {block}, "
              f"{options.latency * 1000:.0f} ms provider latency\n")  # fmt: skip
        result = compare(variants, block=block, rounds=options.rounds, warmup=1)
        print(result.table(names["sync"], unit="ms", scale=1e3))
        print()
        for name in variants:
            print(f"{name:<36} {1 / result.median(name):8.0f} messages/s")
        speedup = 1 / result.ratio(names["async"], names["sync"])[0]
        print(f"\nasync / sync pool throughput: {speedup:.1f}x (target {TARGET:.0f}x)")

        # CPU per message (this process, all its threads): what bounds throughput once the
        # provider's latency is hidden, and what a loaded machine shows instead of latency.
        print("\nCPU time per message (this process, all threads):")
        for name, run in (("async", async_many), ("sync", sync_many),
                          ("sequential", sequential)):  # fmt: skip
            started = time.process_time()
            run(messages)
            spent = (time.process_time() - started) / len(messages)
            print(f"  {names[name]:<36} {spent * 1e3:6.2f} ms")

        memory_async = _memory_per_send(async_many, messages, options.concurrency)
        memory_sync = _memory_per_send(sync_many, messages, options.workers)
        print("\nmemory per in-flight message (tracemalloc peak over baseline):")
        print(f"  async, {options.concurrency} in flight: {memory_async / 1024:8.1f} KiB")
        print(f"  sync,  {options.workers} threads:   {memory_sync / 1024:8.1f} KiB "
              f"(+ each thread's stack, not traced)")  # fmt: skip

        loop.run_until_complete(amailer.aclose())
        loop.close()
        mailer.close()
    print_load_at_end()
    met = speedup >= TARGET
    print("target met" if met else "TARGET NOT MET")
    return 0 if met else 1


def _smtp(options: argparse.Namespace) -> int:
    """``--driver smtp``: native aiosmtplib vs the SMTP driver in threads vs the sync pool."""
    latency = 0.005 if options.latency is None else options.latency
    block = max(options.messages // options.rounds, 1)
    messages = _messages(block)
    with spawn("smtp-fast", "--pipelining", "--latency", str(latency)) as port:
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": "none",
                                    "local_hostname": "bench.localhost", "timeout": 30}  # fmt: skip
        loop = asyncio.new_event_loop()
        native = AsyncFailoverMailer(
            [SMTPDriver(name="smtp", pool_size=options.concurrency, **settings)]
        )
        threaded = AsyncFailoverMailer(
            [_ThreadedSMTP(name="smtp", pool_size=options.concurrency, **settings)]
        )
        mailer = FailoverMailer([SMTPDriver(name="smtp", pool_size=options.workers, **settings)])

        def run_async(amailer: AsyncFailoverMailer, batch: list[Message]) -> None:
            coroutine = amailer.send_many(batch, concurrency=options.concurrency)
            _check(loop.run_until_complete(coroutine))

        names = {
            "native": f"async native, concurrency={options.concurrency}",
            "threaded": f"async in threads, concurrency={options.concurrency}",
            "sync": f"sync send_many(workers={options.workers})",
        }
        variants = {
            names["native"]: lambda n: run_async(native, messages[:n]),
            names["threaded"]: lambda n: run_async(threaded, messages[:n]),
            names["sync"]: lambda n: _check(mailer.send_many(messages[:n],
                                                             workers=options.workers)),
        }  # fmt: skip
        print(f"{block * options.rounds} messages per variant in blocks of {block}, "
              f"{latency * 1000:.1f} ms before each SMTP reply\n")  # fmt: skip
        result = compare(variants, block=block, rounds=options.rounds, warmup=1)
        print(result.table(names["threaded"], unit="ms", scale=1e3))
        print()
        for name in variants:
            print(f"{name:<40} {1 / result.median(name):8.0f} messages/s")
        for other in ("threaded", "sync"):
            ratio = 1 / result.ratio(names["native"], names[other])[0]
            print(f"native / {other}: {ratio:.1f}x")
        loop.run_until_complete(native.aclose())
        loop.run_until_complete(threaded.aclose())
        loop.close()
        mailer.close()
    print_load_at_end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
