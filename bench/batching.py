"""Batch endpoints in send_many vs one request per message.

For Postmark (``POST /email/batch``, up to 500), Resend (``POST /emails/batch``, up to
100) and Mailjet (``POST /v3.1/send`` with up to 50 ``Messages``), a local stand-in in its
own process answers each provider's documented success, a batch with one result per
message. Variants, timed in interleaved blocks of distinct
messages (see _timing.py):

  one per message   FailoverMailer([driver with batch_size: 1]).send_many(block)
  batched           FailoverMailer([driver]).send_many(block): the default batch_size

each twice: with the block's messages built beforehand (what ``send_many`` costs: the
application has its messages already), and with building them inside the timed block
(``Message(...)`` costs the same in both variants, so it narrows the ratio).

Then, untimed, 10,000 distinct messages through each variant, counting the requests the
stand-in received and the messages they carried.

Target: at least 20x fewer requests and at least 10x the throughput.

    python bench/batching.py [--drivers postmark,resend,mailjet] [--rounds 10] [--block 1000]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import spawn, stats
from _timing import compare, print_load_at_end, print_machine, quiet_library_logs

from mailfailover import FailoverMailer, Message, SendResult
from mailfailover.drivers.mailjet import MailjetDriver
from mailfailover.drivers.postmark import PostmarkDriver
from mailfailover.drivers.resend import ResendDriver

DRIVERS: dict[str, tuple[type[Any], dict[str, str]]] = {
    "postmark": (PostmarkDriver, {"server_token": "bench-token"}),
    "resend": (ResendDriver, {"api_key": "re_bench_key"}),
    "mailjet": (MailjetDriver, {"api_key": "bench-public", "secret_key": "bench-secret"}),
}
_numbers = itertools.count()


def distinct(n: int) -> list[Message]:
    """``n`` messages that differ in recipient, subject and body."""
    out = []
    for _ in range(n):
        i = next(_numbers)
        out.append(Message("shop@example.com", f"customer{i}@example.net", f"Order {i} shipped",
                           f"Hello customer {i}, your order {i} is on its way."))  # fmt: skip
    return out


def mailer(name: str, port: int, **settings: Any) -> FailoverMailer:
    cls, secrets = DRIVERS[name]
    driver = cls(name=name, base_url=f"http://127.0.0.1:{port}", **secrets, **settings)
    return FailoverMailer([driver])


def send_all(send: FailoverMailer, n: int, built: list[Message] | None = None) -> None:
    """Send ``n`` distinct messages: taken from ``built`` (made beforehand), else made now."""
    if built is None:
        messages = distinct(n)
    else:
        messages, built[:n] = built[:n], []
    results = send.send_many(messages)
    failed = [r for r in results if not isinstance(r, SendResult)]
    if failed:
        raise SystemExit(f"a send failed: {failed[0]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", default="postmark,resend,mailjet")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--count", type=int, default=10_000, help="messages in the counted run")
    options = parser.parse_args()
    quiet_library_logs()
    print_machine()
    for name in options.drivers.split(","):
        with spawn("http") as port:
            single, batched = mailer(name, port, batch_size=1), mailer(name, port)
            ahead = (options.rounds + 1) * options.block  # the warm-up round too
            variants = {
                "one per message": functools.partial(send_all, single, built=distinct(ahead)),
                "batched": functools.partial(send_all, batched, built=distinct(ahead)),
                "one per message +build": functools.partial(send_all, single),
                "batched +build": functools.partial(send_all, batched),
            }
            result = compare(variants, block=options.block, rounds=options.rounds)
            print(f"\n{name}: {options.rounds} rounds of {options.block} distinct messages")
            print(result.table("one per message"))
            speedup = 1 / result.ratio("batched", "one per message")[0]
            print(f"throughput: batched is {speedup:.1f}x one request per message")
            built_too = 1 / result.ratio("batched +build", "one per message +build")[0]
            print(f"  counting Message(...) construction in both: {built_too:.1f}x")
            counts = {}
            for label, send in (("one per message", single), ("batched", batched)):
                before = stats(port)
                send_all(send, options.count)
                after = stats(port)
                counts[label] = (after["received"] - before["received"],
                                 after["messages"] - before["messages"])  # fmt: skip
                print(f"{label}: {options.count} messages -> {counts[label][0]} requests "
                      f"carrying {counts[label][1]} messages")  # fmt: skip
            fewer = counts["one per message"][0] / max(counts["batched"][0], 1)
            print(f"requests: batched sends {fewer:.0f}x fewer")
            single.close()
            batched.close()
    print_load_at_end()


if __name__ == "__main__":
    main()
