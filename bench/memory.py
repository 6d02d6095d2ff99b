"""Memory: one message with a 20 MB attachment through an HTTP JSON driver and through SMTP.

Each variant runs in a fresh process (so one cannot inherit another's heap) and sends one
message with a 20 MB attachment of random bytes to a local stand-in (its own process; the
HTTP one reads and drops the body in chunks). The message, the driver and a warm-up send
of a small message come first; then the peak memory growth of the one big send is taken
two ways: tracemalloc's peak of what Python allocated during the send, and the growth of
the process's peak RSS (VmHWM, reset just before the send through /proc/self/clear_refs).

  sendgrid (JSON)   the shared HTTP base encodes the body with base64 spliced in as bytes
                    (drivers/_wire.py encode_json)
  smtp              the smtp driver generates the MIME straight to the socket, dot-stuffed
                    on the fly (drivers/smtp.py), on a pooled connection

Target: peak growth at most 3x the attachment (base64 alone is 1.33x).

    python bench/memory.py [--mb 20] [--trials 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import PROVIDERS, spawn
from _timing import print_load_at_end, print_machine

VARIANTS = ("sendgrid (JSON)", "smtp")


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(variant: str, port: int, size: int) -> dict[str, Any]:
    """Measure one big send in this process; runs as ``memory.py --child``."""
    from mailfailover import Attachment, FailoverMailer
    from mailfailover.drivers.smtp import SMTPDriver
    from mailfailover.testing import simple_message

    if variant == "smtp":
        driver: Any = SMTPDriver(name="smtp", host="127.0.0.1", port=port, security="none",
                                 local_hostname="bench.localhost", timeout=60)  # fmt: skip
    else:
        driver = PROVIDERS["sendgrid"].make(f"http://127.0.0.1:{port}", timeout=60)
    big = simple_message(attachments=[Attachment("big.bin", os.urandom(size))])
    with FailoverMailer([driver]) as mailer:
        mailer.send(simple_message())  # imports, connection, pools: not part of the send
        rss_before = _status("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            hwm_reset = True
        except OSError:
            hwm_reset = False
        tracemalloc.start()
        result = mailer.send(big)
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rss_peak = _status("VmHWM")
    return {
        "driver": result.driver,
        "traced_peak": traced_peak,
        "rss_growth": rss_peak - rss_before if hwm_reset else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "PORT"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    size = int(options.mb * 1024 * 1024)
    if options.child:
        variant, port = options.child
        print(json.dumps(child(variant, int(port), size)))
        return 0
    print_machine()
    rows: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    with spawn("http") as http_port, spawn("smtp") as smtp_port:
        ports = {"sendgrid (JSON)": http_port, "smtp": smtp_port}
        for _ in range(options.trials):
            for variant in VARIANTS:
                output = subprocess.run(
                    [sys.executable, __file__, "--mb", str(options.mb),
                     "--child", variant, str(ports[variant])],
                    check=True, capture_output=True, text=True,
                ).stdout  # fmt: skip
                rows[variant].append(json.loads(output))
    print(f"== one message with a {options.mb:g} MB attachment, median of {options.trials} runs")
    print(f"{'variant':<18} {'tracemalloc peak':>17} {'x attachment':>13} "
          f"{'peak RSS growth':>16} {'x attachment':>13}")  # fmt: skip
    met = True
    for variant, runs in rows.items():
        traced = statistics.median(r["traced_peak"] for r in runs)
        rss_values = [r["rss_growth"] for r in runs if r["rss_growth"] is not None]
        rss = statistics.median(rss_values) if rss_values else float("nan")
        print(f"{variant:<18} {traced / 2**20:>14.1f} MB {traced / size:>12.2f}x "
              f"{rss / 2**20:>13.1f} MB {rss / size:>12.2f}x")  # fmt: skip
        met &= max(traced, rss if rss == rss else 0) <= 3 * size
    print(f"target: at most 3x the attachment ({'met' if met else 'NOT met'})")
    print_load_at_end()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
