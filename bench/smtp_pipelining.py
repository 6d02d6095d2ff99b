"""SMTP in send_many: pipelined batches vs batches in lock-step vs one message at a time.

A local asyncio SMTP sink in its own process (``smtp-fast`` in _servers.py) accepts every
message; one copy offers PIPELINING, another does not. Loopback hides round trips, so
each comparison also runs against sinks that hold every reply back by a fixed one-way
latency (``--latency``, default 1 ms; replies to pipelined commands overlap, as on a
network). Variants, timed in interleaved blocks of distinct messages (see _timing.py):

  pipelined              send_many(block) through a sink offering PIPELINING: batch_size
                         (25) messages per connection, a message's end of data and the
                         next envelope in one write (about one round trip per message)
  pipelined, batch_size 100
                         the same with 100 messages per connection checkout
  lock-step batches      send_many(block) through a sink without PIPELINING: the same
                         batches, one command per round trip (five per message)
  send_many, batch_size 1
                         send_many(block) with batching off: send() per message on
                         ``workers`` threads and pooled connections (what send_many did
                         before batching; RSET on every reuse)
  send() per message     mailer.send(m) for each message in turn, one pooled connection

Then, untimed, 1,000 messages through each variant against the sinks without latency,
counting the connections the sinks accepted, the commands they read and the socket reads
they needed.

    python bench/smtp_pipelining.py [--rounds 10] [--block 100] [--latency 0.001]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import smtp_stats, spawn
from _timing import compare, print_load_at_end, print_machine, quiet_library_logs
from batching import distinct

from mailfailover import FailoverMailer, SendResult
from mailfailover.drivers.smtp import SMTPDriver

BASELINE = "send() per message"


def mailer(port: int, **settings: int) -> FailoverMailer:
    driver = SMTPDriver(name="smtp", host="127.0.0.1", port=port, security="none",
                        local_hostname="bench.localhost", **settings)  # fmt: skip
    return FailoverMailer([driver])


def check(results: list[SendResult | Exception]) -> None:
    failed = [r for r in results if not isinstance(r, SendResult)]
    if failed:
        raise SystemExit(f"a send failed: {failed[0]!r}")


def variants(
    piped: int, plain: int
) -> tuple[dict[str, Callable[[int], None]], list[FailoverMailer]]:
    """The variants against a sink offering PIPELINING (``piped``) and one without."""
    pipelined, lockstep = mailer(piped), mailer(plain)
    hundred = mailer(piped, batch_size=100)
    one_by_one, single = mailer(piped, batch_size=1), mailer(piped)

    def many(send: FailoverMailer, n: int) -> None:
        check(list(send.send_many(distinct(n))))

    def each(n: int) -> None:
        check([single.send(message) for message in distinct(n)])

    return {
        "pipelined": functools.partial(many, pipelined),
        "pipelined, batch_size 100": functools.partial(many, hundred),
        "lock-step batches": functools.partial(many, lockstep),
        "send_many, batch_size 1": functools.partial(many, one_by_one),
        BASELINE: each,
    }, [pipelined, hundred, lockstep, one_by_one, single]


@contextlib.contextmanager
def sinks(latency: float) -> Iterator[tuple[int, int]]:
    extra = ["--latency", str(latency)] if latency else []
    with spawn("smtp-fast", "--pipelining", *extra) as piped, spawn("smtp-fast", *extra) as plain:
        yield piped, plain


def timed(latency: float, rounds: int, block: int) -> None:
    with sinks(latency) as (piped, plain):
        runs, mailers = variants(piped, plain)
        result = compare(runs, block=block, rounds=rounds)
        for each in mailers:
            each.close()
    where = f"{latency * 1000:g} ms per reply" if latency else "no added latency"
    print(f"\n== loopback, {where}: {rounds} rounds x {block} distinct messages per variant")
    print(result.table(BASELINE))
    for variant in result.samples:
        if variant == BASELINE:
            continue
        speedup = 1 / result.ratio(variant, BASELINE)[0]
        print(f"{variant}: {speedup:.1f}x the throughput of send() per message")
    print(f"pipelined: {1 / result.ratio('pipelined', 'lock-step batches')[0]:.1f}x the "
          f"throughput of lock-step batches")  # fmt: skip


def counted(count: int) -> None:
    """Untimed: what the sinks saw for ``count`` messages through each variant."""
    print(f"\n== {count} messages per variant, counted by the sinks (no added latency)")
    with sinks(0.0) as (piped, plain):
        runs, mailers = variants(piped, plain)
        for variant, run in runs.items():
            port = plain if variant == "lock-step batches" else piped
            before = smtp_stats(port)
            run(count)
            after = smtp_stats(port)
            seen = {key: after[key] - before[key] for key in after}
            seen["connections"] -= 1  # smtp_stats' own
            seen["commands"] -= 2  # its EHLO and XSTATS
            print(f"{variant:<26} {seen['messages']:>5} messages  {seen['connections']:>3} "
                  f"connections  {seen['commands'] / count:>5.2f} commands and "
                  f"{seen['reads'] / count:>5.2f} socket reads per message")  # fmt: skip
        for each in mailers:
            each.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.001, help="seconds per reply")
    parser.add_argument("--count", type=int, default=1000, help="messages in the counted run")
    options = parser.parse_args()
    quiet_library_logs()
    print_machine()
    timed(0.0, options.rounds, options.block)
    if options.latency:
        timed(options.latency, options.rounds, options.block)
    if options.count:
        counted(options.count)
    print_load_at_end()


if __name__ == "__main__":
    main()
