"""Building a message's To header: mailfailover's linear parse vs the email package's own.

``Message.to_mime()`` used to let the email package parse the To header as one address
list, which re-scans the rest of the header at every address: time grows with the square
of the recipients. Now each address is parsed alone and the same tree is assembled. This
builds the MIME of one message with N recipients both ways, interleaved, and prints the
ratio per N: the stdlib's share should grow with N (quadratic), ours stay flat per address.

    python bench/address_headers.py [--sizes 1000 4000 8000] [--rounds 3]

Exits 1 when, at the largest size, the linear parse is not faster than the stdlib's.
"""

from __future__ import annotations

import argparse
import sys
from email.headerregistry import HeaderRegistry

from _timing import compare, print_load_at_end, print_machine

import mailfailover.message as message_module
from mailfailover import Message


class _StdlibRegistry(HeaderRegistry):
    """A caller's own registry: to_mime leaves it alone, so the stdlib parser runs."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 8000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print_machine(argv if argv is not None else sys.argv)
    original = Message.max_recipients
    Message.max_recipients = max(args.sizes)
    ratios = []
    try:
        for size in args.sizes:
            to = [f"User {i} <user{i}@example.com>" for i in range(size)]
            message = Message("s@example.com", to, "s", "t")
            stdlib = message_module.email.policy.SMTP.clone(header_factory=_StdlibRegistry())
            result = compare(
                {
                    "linear": lambda n, m=message: [m.to_mime() for _ in range(n)],
                    "stdlib": lambda n, m=message, p=stdlib: [
                        m.to_mime(policy=p) for _ in range(n)
                    ],
                },
                block=1,
                rounds=args.rounds,
            )
            print(f"{size} recipients")
            print(result.table("stdlib", unit="ms", scale=1e3))
            per_address = result.median("linear") / size * 1e6
            print(f"linear: {per_address:.1f} µs per address\n")
            ratios.append(result.ratio("linear", "stdlib")[0])
    finally:
        Message.max_recipients = original
    print_load_at_end()
    return 0 if ratios[-1] < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
