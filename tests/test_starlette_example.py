"""The asyncio example app (examples/starlette_app/app.py) run for real: ``uvicorn`` serves
it on loopback in its own process, its lifespan builds the AsyncFailoverMailer from a
config file, the sendgrid driver sends on aiohttp to the provider stand-in, and a SIGINT
shuts it down cleanly (the mailer closed in the app's loop, no unclosed session)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _servers import PROVIDERS, Answer, StandInServer, closed_port  # noqa: E402

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

SENDGRID = PROVIDERS["sendgrid"]
MESSAGE = {"sender": "shop@example.com", "to": ["ann@example.com"], "subject": "Your receipt",
           "text": "Thanks."}  # fmt: skip


@pytest.fixture
def stand_in() -> Iterator[StandInServer]:
    with StandInServer() as server:
        yield server


@pytest.fixture
def app_url(stand_in: StandInServer, tmp_path: Path) -> Iterator[str]:
    """The example served by uvicorn on 127.0.0.1; stopped with SIGINT after the test,
    which must end it cleanly."""
    config = tmp_path / "mailfailover.yaml"
    config.write_text(yaml.safe_dump({"drivers": [
        {"name": "sendgrid", "module": "sendgrid",
         "settings": {**SENDGRID.settings, "base_url": stand_in.url}},
        {"name": "backup", "module": "memory"},
    ]}))  # fmt: skip
    port = closed_port()
    command = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir",
               str(ROOT / "examples" / "starlette_app"), "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]  # fmt: skip
    env = {"MAILFAILOVER_CONFIG": str(config), "PATH": "/usr/bin:/bin",
           "PYTHONWARNINGS": "error::ResourceWarning"}  # fmt: skip
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):  # up to ~20 s on a loaded machine
            if server.poll() is not None:
                break
            try:
                requests.get(f"{url}/health", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert server.poll() is None, server.communicate()[1]
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, errors = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
            raise
    assert server.returncode == 0, errors
    assert "Unclosed" not in errors, errors


def test_send_goes_to_the_provider_on_aiohttp(app_url: str, stand_in: StandInServer) -> None:
    answer = requests.post(f"{app_url}/send", json=MESSAGE, timeout=20)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["driver"] == "sendgrid"
    assert body["message_id"] == "sg-00000001"
    [request] = stand_in.requests
    assert request.path == "/v3/mail/send"
    assert request.headers["Authorization"] == f"Bearer {SENDGRID.secrets[0]}"
    assert "aiohttp" in request.headers["User-Agent"]
    sent = json.loads(request.body)
    assert sent["subject"] == "Your receipt"
    assert sent["personalizations"][0]["to"] == [{"email": "ann@example.com"}]


def test_a_provider_outage_fails_over_and_shows_in_health(
    app_url: str, stand_in: StandInServer
) -> None:
    stand_in.default = Answer(503, b"down", content_type="text/plain")
    answer = requests.post(f"{app_url}/send", json=MESSAGE, timeout=20)
    assert answer.status_code == 200
    assert [a["outcome"] for a in answer.json()["attempts"]] == ["unavailable", "sent"]
    assert answer.json()["driver"] == "backup"
    health = requests.get(f"{app_url}/health", timeout=20).json()
    assert [(h["name"], h["consecutive_failures"]) for h in health] == [
        ("sendgrid", 1), ("backup", 0)
    ]  # fmt: skip


def test_a_bad_message_is_refused_and_nothing_is_sent(
    app_url: str, stand_in: StandInServer
) -> None:
    answer = requests.post(f"{app_url}/send", json={**MESSAGE, "to": ["not an address"]},
                           timeout=20)  # fmt: skip
    assert answer.status_code == 400
    answer = requests.post(f"{app_url}/send", json={**MESSAGE, "bogus": 1}, timeout=20)
    assert answer.status_code == 400
    assert "bogus" in answer.json()["error"]
    assert stand_in.received == 0
