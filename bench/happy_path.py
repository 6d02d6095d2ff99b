"""Happy-path overhead: FailoverMailer + an HTTP driver vs a hand-written requests post.

For each driver (default: sendgrid, JSON; mailgun, multipart) one local stand-in server, in
its own process, answers the provider's documented success. Variants, timed in interleaved
blocks (see _timing.py):

  raw post (json=)      requests.Session().post of the same payload the driver builds, as a
                        hand-written client would: json=dict (or files= for multipart),
                        same headers, then the status and the message-id read
  raw tuned             the same with session.trust_env = False, so requests does not
                        re-read the environment (proxies, CA bundle, .netrc) per request,
                        as our drivers do not: the fair floor for our overhead
  raw tuned (bytes)     the tuned post with the body already encoded: transport only
  driver.send           our driver alone (build the request, post, classify the answer)
  mailer.send           FailoverMailer([driver]).send(message): the library as used
  mailer.send+Message   the same, building the Message each time (validation included)

Target: mailer.send within 1.10x of the hand-written post.

    python bench/happy_path.py [--drivers sendgrid,mailgun] [--rounds 30] [--block 40]
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from _servers import PROVIDERS, spawn
from _timing import compare, print_load_at_end, print_machine

from mailfailover import FailoverMailer, Message
from mailfailover.drivers import B64
from mailfailover.drivers._wire import encode_json

TEXT = ("Hello Ann,\n\nYour order A-1017 has shipped and should arrive on Thursday.\n" * 12)[:1000]
HTML = ("<p>Hello <b>Ann</b>,</p><p>Your order <a href='https://example.com/o/A-1017'>"
        "A-1017</a> has shipped and should arrive on Thursday.</p>" * 20)[:3000]  # fmt: skip


def make_message() -> Message:
    """A typical transactional message: named sender and recipient, text and HTML, a tag."""
    return Message(
        "Example Shop <orders@example.com>",
        "Ann Example <ann@example.net>",
        "Your order A-1017 has shipped",
        TEXT,
        html=HTML,
        tags=["shipping"],
        metadata={"order": "A-1017"},
    )


def _plain(value: Any) -> Any:
    """The request body with every B64 as the base64 text a hand-written client would build."""
    if isinstance(value, B64):
        return base64.b64encode(value.content).decode("ascii")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def variants_for(driver_name: str, base_url: str) -> dict[str, Any]:
    provider = PROVIDERS[driver_name]
    driver = provider.make(base_url, name=driver_name)
    mailer = FailoverMailer([driver])
    message = make_message()
    request = driver.build_request(message)
    url = driver.base_url + request.path
    headers = {**driver.transport.session.headers, **request.headers}
    plain = requests.Session()
    tuned = requests.Session()
    tuned.trust_env = False
    for session in (plain, tuned):
        session.headers.clear()
        session.headers.update(headers)
    ok = provider.success(0).status
    message_header = {"sendgrid": "X-Message-Id"}.get(driver_name)

    def check(response: requests.Response) -> None:
        if response.status_code != ok:
            raise RuntimeError(f"the stand-in answered {response.status_code}")
        if message_header is not None:
            response.headers[message_header]
        else:
            response.json()

    if request.json is not None:
        body = _plain(request.json)
        encoded = encode_json(request.json)
        bytes_headers = {"Content-Type": "application/json"}

        def post(session: requests.Session) -> Any:
            def run(n: int) -> None:
                for _ in range(n):
                    check(session.post(url, json=body, timeout=(5, 10)))

            return run

        def raw_bytes(n: int) -> None:
            for _ in range(n):
                check(tuned.post(url, data=encoded, headers=bytes_headers, timeout=(5, 10)))

        raws = {"raw post (json=)": post(plain), "raw tuned": post(tuned),
                "raw tuned (bytes)": raw_bytes}  # fmt: skip
    else:
        files, auth = request.files, request.auth

        def post(session: requests.Session) -> Any:
            def run(n: int) -> None:
                for _ in range(n):
                    check(session.post(url, files=files, auth=auth, timeout=(5, 10)))

            return run

        raws = {"raw post (files=)": post(plain), "raw tuned": post(tuned)}

    def driver_send(n: int) -> None:
        for _ in range(n):
            driver.send(message)

    def mailer_send(n: int) -> None:
        for _ in range(n):
            mailer.send(message)

    def mailer_send_built(n: int) -> None:
        for _ in range(n):
            mailer.send(make_message())

    return {
        **raws,
        "driver.send": driver_send,
        "mailer.send": mailer_send,
        "mailer.send+Message": mailer_send_built,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", default="sendgrid,mailgun")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=40)
    options = parser.parse_args(argv)
    print_machine()
    failed = False
    with spawn("http") as port:
        for name in options.drivers.split(","):
            variants = variants_for(name, f"http://127.0.0.1:{port}")
            baseline = next(iter(variants))
            result = compare(variants, block=options.block, rounds=options.rounds)
            print(f"== {name}: {options.rounds} rounds x {options.block} messages per variant")
            print(result.table(baseline))
            ratio = result.ratio("mailer.send", baseline)[0]
            verdict = "met" if ratio <= 1.10 else "NOT met"
            print(f"target mailer.send <= 1.10x {baseline}: {ratio:.3f}x ({verdict})")
            tuned = result.ratio("mailer.send", "raw tuned")[0]
            print(f"mailer.send vs raw tuned (our own overhead): {tuned:.3f}x\n")
            failed |= ratio > 1.10
    print_load_at_end()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
