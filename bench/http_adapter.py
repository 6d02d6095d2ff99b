"""HTTP adapter: /send throughput under `mailfailover serve` vs a bare Flask endpoint.

Both servers run under gunicorn with the same settings (2 workers x 4 threads, gthread) and
send through a SendGrid driver to a local provider stand-in (its own process):

  mailfailover serve   the production adapter (python -m mailfailover.cli serve): token
                       check, strict body parsing, sender allow-list, body limit,
                       FailoverMailer, JSON answer with the attempts
  bare flask           bench/_bare_flask_app.py: request.get_json(), Message(...),
                       driver.send(), a JSON answer; nothing else

A client in this process posts the same JSON body from 8 threads (keep-alive sessions), in
interleaved blocks; the numbers are requests per second. All of it shares the machine's
cores, the same way for both servers.

    python bench/http_adapter.py [--rounds 10] [--block 200] [--clients 8]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from _servers import PROVIDERS, spawn
from _timing import compare, print_load_at_end, print_machine
from happy_path import HTML, TEXT

BENCH = Path(__file__).resolve().parent
TOKEN = "bench-token-3c9f"
BODY = {
    "sender": "Example Shop <orders@example.com>",
    "to": "Ann Example <ann@example.net>",
    "subject": "Your order A-1017 has shipped",
    "text": TEXT,
    "html": HTML,
}


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _server(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(
        command, env={**os.environ, **env}, cwd=BENCH,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    ) as process:  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = requests.get(f"{url}/health", timeout=1,
                                          headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
                    if answer.status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    error = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"{command[:4]} did not start:\n{error[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _load(url: str, clients: int) -> Any:
    """``run(n)``: post n requests to /send from ``clients`` threads."""
    sessions = []
    for _ in range(clients):
        session = requests.Session()
        session.trust_env = False
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        sessions.append(session)

    def run(n: int) -> None:
        errors: list[str] = []

        def worker(session: requests.Session, count: int) -> None:
            for _ in range(count):
                answer = session.post(f"{url}/send", json=BODY, timeout=30)
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")

        share = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
        threads = [
            threading.Thread(target=worker, args=(s, c))
            for s, c in zip(sessions, share, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    options = parser.parse_args(argv)
    print_machine()
    with spawn("http") as provider_port, tempfile.TemporaryDirectory() as folder:
        provider_url = f"http://127.0.0.1:{provider_port}"
        config = Path(folder) / "mail.yml"
        settings = "\n".join(f"      {k}: {v}" for k, v in PROVIDERS["sendgrid"].settings.items())
        config.write_text(
            "drivers:\n  - name: sendgrid\n    module: sendgrid\n    settings:\n"
            f"{settings}\n      base_url: {provider_url}\n"
            f"http:\n  api_token: {TOKEN}\n"
        )
        ours_port, bare_port = _free_port(), _free_port()
        ours = [sys.executable, "-m", "mailfailover.cli", "serve", "--config", str(config),
                "--port", str(ours_port), "--workers", "2", "--threads", "4"]  # fmt: skip
        bare = [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "4",
                "--worker-class", "gthread", "--bind", f"127.0.0.1:{bare_port}",
                "_bare_flask_app:app"]  # fmt: skip
        with (
            _server(ours, {}, ours_port) as ours_url,
            _server(bare, {"BENCH_PROVIDER_URL": provider_url}, bare_port) as bare_url,
        ):
            result = compare(
                {"bare flask": _load(bare_url, options.clients),
                 "mailfailover serve": _load(ours_url, options.clients)},
                block=options.block, rounds=options.rounds,
            )  # fmt: skip
    print(f"== {options.rounds} rounds x {options.block} requests, {options.clients} clients")
    for name in result.samples:
        print(f"{name:<20} {1 / result.median(name):>8.0f} requests/s")
    ratio, low, high = result.ratio("bare flask", "mailfailover serve")
    print(f"mailfailover serve throughput = {ratio:.3f}x the bare Flask endpoint's "
          f"(median of paired rounds; p25 - p75: {low:.3f} - {high:.3f})")  # fmt: skip
    print_load_at_end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
