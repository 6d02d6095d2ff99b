"""Profile the hot paths: FailoverMailer.send through an HTTP driver and through SMTP.

Sends N messages to a local stand-in (its own process) under a profiler and prints where
the time goes: pyinstrument's call tree when it is installed (pip install pyinstrument),
else cProfile's functions by own time. This is how the changes listed in
docs/benchmarks.md were found.

    python bench/profile_send.py [--path http|smtp|message] [--driver sendgrid] [-n 500]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import PROVIDERS, spawn
from _timing import print_machine
from happy_path import make_message

from mailfailover import FailoverMailer
from mailfailover.drivers.smtp import SMTPDriver


def profile(work: Callable[[], None], count: int) -> None:
    for _ in range(min(count, 50)):  # warm up: imports, connections, caches
        work()
    try:
        from pyinstrument import Profiler
    except ImportError:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            work()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return
    instrument = Profiler(interval=0.0005)
    instrument.start()
    for _ in range(count):
        work()
    instrument.stop()
    print(instrument.output_text(unicode=True, color=False, show_all=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=("http", "smtp", "message"), default="http")
    parser.add_argument("--driver", default="sendgrid", choices=sorted(PROVIDERS))
    parser.add_argument("-n", type=int, default=500)
    options = parser.parse_args(argv)
    print_machine()
    if options.path == "message":
        profile(lambda: make_message().to_mime().as_bytes(), options.n)
        return 0
    kind = "smtp" if options.path == "smtp" else "http"
    with spawn(kind) as port:
        if kind == "smtp":
            driver = SMTPDriver(name="smtp", host="127.0.0.1", port=port, security="none",
                                local_hostname="bench.localhost")  # fmt: skip
        else:
            driver = PROVIDERS[options.driver].make(f"http://127.0.0.1:{port}")
        with FailoverMailer([driver]) as mailer:
            profile(lambda: mailer.send(make_message()), options.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
