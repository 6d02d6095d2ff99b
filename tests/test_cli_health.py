"""``mailfailover health``: each driver's state as the configured state store holds it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from redis_server import RedisServer

from mailfailover import FailoverMailer
from mailfailover.cli import main
from mailfailover.testing import simple_message


def write_config(tmp_path: Path, state: str) -> Path:
    path = tmp_path / "mail.yml"
    path.write_text(
        f"state: {{url: '{state}', namespace: cli}}\ncooldown: 60\ndrivers:\n"
        "  - {name: primary, module: memory, settings: {fail: unavailable}}\n"
        "  - {name: backup, module: memory}\n"
    )
    return path


def trip_primary(path: Path) -> None:
    """Another process's mailer (here: another mailer) finds the primary down twice."""
    with FailoverMailer.from_config(path) as mailer:
        mailer.send(simple_message())
        mailer.send(simple_message())


def test_health_prints_the_shared_state_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    assert main(["health", "--config", str(path), "--json"]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert fresh["status"] == "ok" and fresh["namespace"] == "cli"
    assert [d["state"] for d in fresh["drivers"]] == ["healthy", "healthy"]
    trip_primary(path)
    assert main(["health", "--config", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "degraded"
    primary, backup = report["drivers"]
    assert primary["name"] == "primary" and primary["state"] == "cooling_down"
    assert primary["consecutive_failures"] == 2
    assert 59 < primary["cooldown_remaining"] <= 60
    assert primary["last_error"].startswith("server_error:")
    assert "sent" not in primary  # per-process counters: no store holds them
    assert backup == {"name": "backup", "state": "healthy", "consecutive_failures": 0,
                      "cooldown_remaining": 0.0, "last_error": None}  # fmt: skip


def test_health_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    trip_primary(path)
    assert main(["health", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("degraded (sqlite://")
    assert lines[1].split()[:4] == ["primary", "cooling_down", "failures", "2"]
    assert "cooldown 60.0 s left" in lines[1] or "cooldown 59." in lines[1]
    assert lines[2].split() == ["backup", "healthy", "failures", "0"]


def test_health_reads_redis_and_says_when_it_does_not_answer(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_server.flush()
    path = write_config(tmp_path, redis_server.url)
    trip_primary(path)
    assert main(["health", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["drivers"][0]["state"] == "cooling_down"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    down = write_config(tmp_path, f"redis://:hunter2-pw@127.0.0.1:{closed}/0")
    assert main(["health", "--config", str(down), "--json"]) == 1
    out = capsys.readouterr().out
    assert json.loads(out)["status"] == "error" and "did not answer" in out
    assert "hunter2-pw" not in out
