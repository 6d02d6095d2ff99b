"""End to end over real sockets: a provider's signed bounce webhook reaches
``mailfailover serve`` (gunicorn, two workers, one sqlite state store); after it, no driver
mails the address — checked at loopback stand-ins for eight providers, every one of which
is tried — and a message to that address alone reaches no stand-in at all."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailfailover.suppressions import REFRESH_INTERVAL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals"),
]

PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    PRIVATE.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
).decode()
VICTIM = "ann@example.com"
SECONDS = 45.0


class StandIn(BaseHTTPRequestHandler):
    """Every provider's API, answering 500 so that the mailer tries every driver."""

    received: list[bytes]
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with self.lock:
            self.received.append(self.path.encode() + b"\n" + body)
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message": "stand-in down"}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []
    handler = type("Handler", (StandIn,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def serve(tmp_path: Path, stand_in: tuple[str, list[bytes]]) -> Iterator[str]:
    base_url, _ = stand_in
    fast = {"base_url": base_url, "timeout": 5}
    drivers = [
        {"name": "sendgrid", "module": "sendgrid",
         "settings": {"api_key": "sg", "webhook_public_key": PUBLIC, **fast}},
        {"name": "mailgun", "module": "mailgun",
         "settings": {"api_key": "mg", "domain": "mg.example.com", **fast}},
        {"name": "postmark", "module": "postmark", "settings": {"server_token": "pm", **fast}},
        {"name": "mandrill", "module": "mandrill", "settings": {"api_key": "md", **fast}},
        {"name": "mailjet", "module": "mailjet",
         "settings": {"api_key": "mj", "secret_key": "mjs", **fast}},
        {"name": "sparkpost", "module": "sparkpost", "settings": {"api_key": "sp", **fast}},
        {"name": "resend", "module": "resend", "settings": {"api_key": "re", **fast}},
        {"name": "brevo", "module": "brevo", "settings": {"api_key": "bv", **fast}},
    ]  # fmt: skip
    config = tmp_path / "mail.yml"
    document = {"state": f"sqlite:///{tmp_path / 'state.db'}", "failure_threshold": 100,
                "drivers": drivers}  # fmt: skip
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFAILOVER_")}
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mailfailover.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2", "--threads", "2", "--config", str(config)],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        try:
            return requests.get(url + "/health", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        _eventually(ready, "mailfailover serve to answer")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def signed_sendgrid(events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = PRIVATE.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


BOUNCE = {
    "email": VICTIM, "timestamp": 1513299569, "event": "bounce", "type": "bounce",
    "sg_event_id": "e2e-bounce-1", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.1.0",
    "reason": "550 5.1.1 user unknown", "status": "5.1.1",
}  # fmt: skip
MESSAGE = {"sender": "shop@example.com", "subject": "Receipt", "text": "Thanks"}


def test_a_bounce_webhook_stops_every_driver_mailing_the_address(
    serve: str, stand_in: tuple[str, list[bytes]]
) -> None:
    _, received = stand_in
    # Before: the address goes to the providers (all down here: every driver is tried).
    before = requests.post(serve + "/send", json={**MESSAGE, "to": VICTIM}, timeout=60)
    assert before.status_code == 503
    assert len(received) == 8
    assert all(VICTIM.encode() in request for request in received)
    received.clear()

    # A forged webhook is refused and changes nothing.
    body, headers = signed_sendgrid([BOUNCE])
    forged = requests.post(serve + "/webhooks/sendgrid", data=body.replace(b"5.1.1", b"5.1.2"),
                           headers=headers, timeout=10)  # fmt: skip
    assert forged.status_code == 401
    # The provider's signed bounce webhook, over a real socket.
    answer = requests.post(serve + "/webhooks/sendgrid", data=body, headers=headers, timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"status": "handled", "events": 1})
    again = requests.post(serve + "/webhooks/sendgrid", data=body, headers=headers, timeout=10)
    assert again.json() == {"status": "handled", "events": 0}

    # Every worker (one sqlite store) now refuses the address alone, reaching no provider:
    # the other workers hold the list in memory and see a change within REFRESH_INTERVAL
    # (docs/events.md), so wait that out first, with room for a loaded machine.
    time.sleep(REFRESH_INTERVAL * 2)
    for _ in range(4):
        refused = requests.post(serve + "/send", json={**MESSAGE, "to": VICTIM}, timeout=30)
        assert refused.status_code == 422
        assert refused.json()["error"] == 12
        assert refused.json()["suppressed"] == [VICTIM]
    assert received == []

    # With another recipient, every driver is tried and none of them gets the address.
    mixed = requests.post(serve + "/send", json={**MESSAGE, "to": [VICTIM, "bob@example.com"]},
                          timeout=60)  # fmt: skip
    assert mixed.status_code == 503
    assert len(received) == 8
    assert all(b"bob@example.com" in request for request in received)
    assert not any(VICTIM.encode() in request for request in received)
    paths = {request.split(b"\n", 1)[0] for request in received}
    assert len(paths) == 8  # eight different providers' APIs
