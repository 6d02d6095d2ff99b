"""Profile ``send_many``'s batched path: where the per-message CPU goes.

Sends ``--rounds`` blocks of ``--block`` distinct messages (as bench/batching.py makes
them, construction included) through one batching driver to a local stand-in (its own
process) under cProfile, and prints the functions by own time and by cumulative time.
cProfile sees only the thread it runs in, so the mailer's request pool is replaced by
one that runs each request inline, in order (the same work, none of it hidden in a worker
thread). This is how the batched path's changes listed in docs/benchmarks.md were found.

    python bench/profile_batching.py [--driver postmark|resend] [--rounds 5] [--block 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import spawn
from _timing import print_machine, quiet_library_logs
from batching import DRIVERS, mailer, send_all

import mailfailover.mailer


class _Inline:
    """A ThreadPoolExecutor stand-in that runs ``map`` in the calling thread."""

    def __init__(self, max_workers: int) -> None:
        pass

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        return iter([fn(item) for item in items])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--driver", default="postmark", choices=sorted(DRIVERS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--top", type=int, default=35)
    options = parser.parse_args(argv)
    quiet_library_logs()
    print_machine()
    mailfailover.mailer.ThreadPoolExecutor = _Inline  # type: ignore[misc,assignment]
    with spawn("http") as port:
        send = mailer(options.driver, port)
        send_all(send, options.block)  # warm up: imports, connections
        cpu = time.process_time()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(options.rounds):
            send_all(send, options.block)
        profiler.disable()
        cpu = time.process_time() - cpu
        send.close()
    count = options.rounds * options.block
    print(f"{count} messages, {cpu / count * 1e6:.0f} µs of this process's CPU per message "
          "(under the profiler)")  # fmt: skip
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(options.top)
    stats.sort_stats("cumulative").print_stats(options.top)

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
