"""``mailfailover serve`` end to end: a real gunicorn process on a loopback port.

The server is started as ``python -m mailfailover.cli serve`` with a config of ``memory``
and ``file`` drivers, spoken to over a real socket with ``requests`` (JSON, multipart and
urlencoded bodies, chunked bodies, the size limit, the token), reloaded with SIGHUP while
requests keep flowing, and stopped with SIGTERM. Every wait is bounded; the process is
killed if it does not stop in time.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")

TOKEN = "e2e-token-5b1f0c9a"
LIMIT = 32 * 1024
CANARY = "E2E-BODY-CANARY-0a7d"
GOOD = {
    "sender": "Shop <shop@example.com>",
    "to": "ann@example.com, bob@example.com",
    "subject": "Receipt",
    "text": f"Thanks! {CANARY}",
}
BOOT_SECONDS = 30.0
STOP_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _write_config(path: Path, drivers: list[dict[str, Any]]) -> None:
    document = {"drivers": drivers, "http": {"max_body_bytes": LIMIT}}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(document), encoding="utf-8")
    temporary.replace(path)  # the master never reads half a file


def _eventually(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")


def _server_env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFAILOVER_")}
    if token is not None:
        env["MAILFAILOVER_API_TOKEN"] = token
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Server:
    """One ``mailfailover serve`` process."""

    def __init__(self, workdir: Path, config: Path, token: str | None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log = workdir / "server.log"
        self._log_handle = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailfailover.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "2", "--threads", "4",
             "--config", str(config)],
            cwd=workdir,
            env=_server_env(token),
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", self.auth)
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str = "/send", **kwargs: Any) -> requests.Response:
        kwargs["headers"] = {**self.auth, **kwargs.get("headers", {})}
        return requests.post(self.url + path, timeout=10, **kwargs)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited early:\n{self.output()}")
            try:
                return self.get("/health").status_code == 200
            except requests.ConnectionError:
                return False

        _eventually(ready, "the server to answer /health", BOOT_SECONDS)
        self.wait_workers(1)

    def wait_workers(self, generation: int) -> None:
        """Wait until ``generation`` times 2 workers have loaded the app (they log it)."""
        _eventually(
            lambda: self.output().count("] mailfailover.flask: worker ") >= 2 * generation,
            f"generation {generation} of workers to be ready",
            BOOT_SECONDS,
        )

    def driver_names(self) -> list[str]:
        return [d["name"] for d in self.get("/health").json()["drivers"]]

    def close_log(self) -> None:
        if not self._log_handle.closed:
            self._log_handle.close()

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_SECONDS)
                self.close_log()
                raise AssertionError(f"SIGTERM did not stop the server:\n{self.output()}") from None
        self.close_log()
        return self.process.returncode


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[Path, str | None], Server]]:
    servers: list[Server] = []

    def factory(config: Path, token: str | None = TOKEN) -> Server:
        server = Server(tmp_path, config, token)
        servers.append(server)
        server.wait_ready()
        return server

    yield factory
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(STOP_SECONDS)
        server.close_log()


def _emails(folder: Path) -> list[EmailMessage]:
    return [_read(path) for path in sorted(folder.glob("*.eml"))]


def _read(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def _newest(folder: Path, before: set[Path]) -> EmailMessage:
    """The one message written since ``before`` (names sort only to the second)."""
    (path,) = set(folder.glob("*.eml")) - before
    return _read(path)


def _attachments(message: EmailMessage) -> list[tuple[str | None, bytes]]:
    """Each attachment's name and exact bytes (text parts too: no newline conversion)."""
    return [
        (part.get_filename(), part.get_payload(decode=True)) for part in message.iter_attachments()
    ]


def test_serve_sends_reloads_on_sighup_and_stops_on_sigterm(
    tmp_path: Path, start: Callable[..., Server]
) -> None:
    first, second = tmp_path / "outbox-first", tmp_path / "outbox-second"
    config = tmp_path / "mail.yml"
    _write_config(config, [
        {"name": "down", "module": "memory", "settings": {"fail": "unavailable"}},
        {"name": "first", "module": "file", "settings": {"directory": str(first)}},
    ])  # fmt: skip
    server = start(config)
    assert server.driver_names() == ["down", "first"]

    # -- authentication over the wire
    assert requests.post(server.url + "/send", json=GOOD, timeout=10).status_code == 401
    wrong = server.post(json=GOOD, headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, 7)
    assert requests.get(server.url + "/health", timeout=10).status_code == 401

    # -- JSON with a base64 attachment: the first driver is down, the file driver delivers
    pdf = b"%PDF-1.4\n" + os.urandom(4000) + b"\n%%EOF\n"
    body = {**GOOD, "attachments": [{"filename": "invoice.pdf",
                                     "data": base64.b64encode(pdf).decode(), "mimetype":
                                     "application/pdf"}]}  # fmt: skip
    response = server.post(json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["driver"] == "first"
    assert [a["outcome"] for a in result["attempts"]] == ["unavailable", "sent"]
    (delivered,) = _emails(first)
    assert _attachments(delivered) == [("invoice.pdf", pdf)]
    assert delivered["To"] == "ann@example.com, bob@example.com"

    # -- multipart with uploaded files, intact after the first provider failed
    blob = os.urandom(20_000)
    before = set(first.glob("*.eml"))
    response = server.post(
        data={**GOOD, "to": ["ann@example.com", "cat@example.com"]},
        files=[("attachments", ("photo.jpg", blob, "image/jpeg")),
               ("attachments", ("notes.txt", b"line 1\r\nline 2\n", "text/plain"))],
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert [a["outcome"] for a in response.json()["attempts"]][-1] == "sent"
    assert _attachments(_newest(first, before)) == [
        ("photo.jpg", blob),
        ("notes.txt", b"line 1\r\nline 2\n"),
    ]

    # -- urlencoded, and a chunked JSON body (no Content-Length)
    assert server.post(data=GOOD).status_code == 200
    encoded = json.dumps(GOOD).encode()
    chunked = server.post(
        data=iter([encoded[:10], encoded[10:]]), headers={"Content-Type": "application/json"}
    )
    assert chunked.status_code == 200, chunked.text
    assert len(_emails(first)) == 4

    # -- the size limit: by Content-Length, and for a chunked body while it is read
    too_big = server.post(data=b"x" * (LIMIT + 5000), headers={"Content-Type": "application/json"})
    assert (too_big.status_code, too_big.json()["error"]) == (413, 9)
    endless = server.post(
        data=iter([b"y" * 8192] * 6), headers={"Content-Type": "application/json"}
    )
    assert (endless.status_code, endless.json()["error"]) == (413, 9)
    # hostile input gets a 4xx, never a 500, over the wire as well
    for hostile in ({**GOOD, "to": "a@b.com\r\nBcc: x@y.com"}, {**GOOD, "subject": "a\nb"}):
        assert server.post(json=hostile).status_code == 400
    assert (
        server.post(data=b"\xff\xfe", headers={"Content-Type": "application/json"}).json()["error"]
        == 3
    )

    # -- SIGHUP with a new configuration, while requests keep flowing
    statuses: list[int] = []
    stop_sending = threading.Event()

    def keep_sending() -> None:
        while not stop_sending.is_set() and len(statuses) < 500:
            statuses.append(server.post(json=GOOD).status_code)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        time.sleep(0.2)
        _write_config(config, [
            {"name": "second", "module": "file", "settings": {"directory": str(second)}},
        ])  # fmt: skip
        server.process.send_signal(signal.SIGHUP)
        streak: list[bool] = []

        def reloaded() -> bool:
            streak.append(server.driver_names() == ["second"])
            return len(streak) >= 5 and all(streak[-5:])

        _eventually(reloaded, "/health to list the new driver")
        time.sleep(0.3)
    finally:
        stop_sending.set()
        sender.join(30)
    assert statuses and set(statuses) == {200}, statuses
    before = len(_emails(second))
    response = server.post(json=GOOD)
    assert response.json()["driver"] == "second"
    assert len(_emails(second)) == before + 1

    # -- an invalid configuration on SIGHUP is logged and the previous one kept
    config.write_text("drivers:\n  - name: broken\n    module: no-such-driver\n", encoding="utf-8")
    server.process.send_signal(signal.SIGHUP)
    _eventually(lambda: "configuration not reloaded" in server.output(), "the reload error")
    _eventually(lambda: server.get("/health").status_code == 200, "the server to answer")
    assert server.driver_names() == ["second"]
    assert server.post(json=GOOD).json()["driver"] == "second"

    # -- SIGTERM stops it cleanly
    assert server.stop() == 0
    output = server.output()
    assert "Listening at: http://127.0.0.1:" in output
    assert TOKEN not in output and CANARY not in output
    assert base64.b64encode(pdf).decode()[:40] not in output


def test_serve_without_a_token_answers_on_loopback(
    tmp_path: Path, start: Callable[..., Server]
) -> None:
    config = tmp_path / "mail.yml"
    _write_config(config, [{"name": "mem", "module": "memory"}])
    server = start(config, None)
    response = server.post(json=GOOD)
    assert response.status_code == 200 and response.json()["driver"] == "mem"
    assert server.stop() == 0


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    config = tmp_path / "mail.yml"
    _write_config(config, [{"name": "mem", "module": "memory"}])
    completed = subprocess.run(
        [sys.executable, "-m", "mailfailover.cli", "serve", "--host", "0.0.0.0",
         "--port", str(_free_port()), "--config", str(config)],
        cwd=tmp_path,
        env=_server_env(None),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 2, completed.stderr
    assert "refusing to listen on 0.0.0.0 without an API token" in completed.stderr
    assert "MAILFAILOVER_API_TOKEN" in completed.stderr
