"""Which async HTTP client the async transport should use: httpx.AsyncClient vs aiohttp.

A local stand-in (its own process) answers every POST after ``--latency`` seconds, as a
provider's API does. Each variant posts the same small JSON body ``--messages`` times with
``--concurrency`` requests in flight, over one long-lived client with a pool of that many
connections (HTTP/1.1 keep-alive), in interleaved blocks:

  httpx.AsyncClient      one client, Limits(max_connections=concurrency)
  aiohttp.ClientSession  one session, TCPConnector(limit=concurrency)
  requests, 8 threads    a requests.Session shared by 8 threads (the sync mailer's way)

Printed: requests per second of each, and the ratios. httpx's pool is known to scan every
connection per request (issue 14), so it is measured rather than assumed.

    python bench/async_clients.py [--messages 1000] [--concurrency 100] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import spawn
from _timing import compare, print_load_at_end, print_machine

BODY = json.dumps({"from": "shop@example.com", "to": "ann@example.com", "subject": "Hi"})
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer FAKE-KEY"}


async def _fan_out(post: Any, count: int, concurrency: int) -> None:
    """``count`` posts, at most ``concurrency`` in flight; every answer must be a 2xx."""
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            status = await post()
            if not 200 <= status < 300:
                raise RuntimeError(f"the stand-in answered {status}")

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args(argv)
    print_machine(argv)

    import aiohttp
    import httpx
    import requests

    block = max(options.messages // options.rounds, 1)
    with spawn("http", "--latency", str(options.latency)) as port:
        url = f"http://127.0.0.1:{port}/v3/mail/send"
        loop = asyncio.new_event_loop()
        concurrency = options.concurrency

        async def make_clients() -> tuple[httpx.AsyncClient, aiohttp.ClientSession]:
            limits = httpx.Limits(max_connections=concurrency,
                                  max_keepalive_connections=concurrency)  # fmt: skip
            client = httpx.AsyncClient(limits=limits, timeout=30.0)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=concurrency),
                timeout=aiohttp.ClientTimeout(total=30.0),
            )
            return client, session

        client, session = loop.run_until_complete(make_clients())

        async def httpx_post() -> int:
            answer = await client.post(url, content=BODY, headers=HEADERS)
            return answer.status_code

        async def aiohttp_post() -> int:
            async with session.post(url, data=BODY, headers=HEADERS) as answer:
                await answer.read()
                return answer.status

        threaded = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=8)
        threaded.mount("http://", adapter)
        pool = ThreadPoolExecutor(max_workers=8)

        def requests_post(_: int) -> None:
            answer = threaded.post(url, data=BODY, headers=HEADERS, timeout=30)
            answer.raise_for_status()

        variants = {
            "aiohttp.ClientSession": lambda n: loop.run_until_complete(
                _fan_out(aiohttp_post, n, concurrency)
            ),
            "httpx.AsyncClient": lambda n: loop.run_until_complete(
                _fan_out(httpx_post, n, concurrency)
            ),
            "requests, 8 threads": lambda n: list(pool.map(requests_post, range(n))),
        }
        latency = f"{options.latency * 1000:.0f} ms"
        print(f"{options.messages} POSTs per variant in blocks of {block}, {latency} server "
              f"latency, concurrency {concurrency}\n")  # fmt: skip
        result = compare(variants, block=block, rounds=options.rounds, warmup=1)
        print(result.table("httpx.AsyncClient", unit="ms", scale=1e3))
        print()
        for name in variants:
            print(f"{name:<24} {1 / result.median(name):8.0f} requests/s")
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(session.close())
        loop.close()
        pool.shutdown()
        threaded.close()
    print_load_at_end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
