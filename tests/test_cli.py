"""The mailfailover command: the quick start, send, --batch, check, drivers, exit codes."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mailfailover.cli import main
from mailfailover.testing import full_message, simple_message


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MAILFAILOVER_CONFIG"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mailfailover.cli", *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def memory_config(tmp_path: Path, *drivers: str) -> Path:
    lines = ["drivers:"]
    for spec in drivers:
        name, _, fail = spec.partition(":")
        settings = f", settings: {{fail: {fail}}}" if fail else ""
        lines.append(f"  - {{name: {name}, module: memory{settings}}}")
    path = tmp_path / "mail.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_quick_start_fails_over_from_smtp_to_the_outbox(tmp_path: Path) -> None:
    """With no config and nothing on port 1025, send exits 0 and names the .eml it wrote."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 1025)) == 0:
            pytest.skip("something is listening on port 1025 on this machine")
    done = run_cli(
        "send", "--from", "a@example.com", "--to", "b@example.com",
        "--subject", "hi", "--text", "hello", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sent via outbox: message id <")
    assert "smtp" in lines[1] and "unavailable" in lines[1]
    assert "outbox" in lines[2] and "sent" in lines[2]
    assert lines[-1].startswith("wrote outbox/") and lines[-1].endswith(".eml")
    written = tmp_path / lines[-1].removeprefix("wrote ")
    parsed = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert parsed["From"] == "a@example.com"
    assert parsed["To"] == "b@example.com"
    assert parsed["Subject"] == "hi"
    assert parsed.get_content().strip() == "hello"


def test_send_json_output_and_every_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = memory_config(tmp_path, "down:unavailable", "up")
    (tmp_path / "body.html").write_text("<p>hi</p>")
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4")
    code = main([
        "send", "--config", str(config), "--json",
        "--from", "Ann <ann@example.com>", "--to", '"Doe, John" <j@example.com>, k@example.com',
        "--cc", "c@example.com", "--bcc", "d@example.com", "--reply-to", "r@example.com",
        "--subject", "Subj", "--text", "plain", "--html-file", str(tmp_path / "body.html"),
        "--attach", str(tmp_path / "report.pdf"), "--header", "X-Trace: 1", "--tag", "t1",
    ])  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "sent" and result["driver"] == "up"
    assert [a["outcome"] for a in result["attempts"]] == ["unavailable", "sent"]


def test_rejection_exits_1_and_says_who(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = memory_config(tmp_path, "picky:reject", "never")
    args = ["send", "--config", str(config), "--from", "a@example.com", "--to", "b@example.com",
            "--subject", "s", "--text", "t"]  # fmt: skip
    assert main(args) == 1
    assert "rejected by picky" in capsys.readouterr().err
    assert main([*args, "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["status"] == "rejected" and payload["error"] == 2


def test_all_failed_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = memory_config(tmp_path, "a:unavailable", "b:unavailable")
    code = main(["send", "--config", str(config), "--json", "--from", "a@example.com",
                 "--to", "b@example.com", "--subject", "s", "--text", "t"])  # fmt: skip
    assert code == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["error"] == 5 and len(payload["attempts"]) == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to", "b@example.com", "--subject", "s", "--text", "t"], "--from is required"),
        (["--from", "a@example.com", "--subject", "s", "--text", "t"], "--to is required"),
        (["--from", "a@example.com", "--to", "b@example.com", "--text", "t"], "--subject"),
        (["--from", "a@example.com", "--to", "b@example.com", "--subject", "s"], "--text"),
        (["--from", "nope", "--to", "b@example.com", "--subject", "s", "--text", "t"], "sender"),
        (["--from", "a@example.com", "--to", "b@example.com\r\nBcc: x@example.com",
          "--subject", "s", "--text", "t"], "CR, LF"),
        (["--from", "a@example.com", "--to", "b@example.com", "--subject", "s\nBcc: x@y.com",
          "--text", "t"], "CR, LF"),
        (["--from", "a@example.com", "--to", "b@example.com", "--subject", "s", "--text", "t",
          "--header", "Bcc: x@example.com"], "headers"),
        (["--from", "a@example.com", "--to", "b@example.com", "--subject", "s", "--text", "t",
          "--header", "no colon"], "Name: value"),
        (["--from", "a@example.com", "--to", "b@example.com", "--subject", "s", "--text", "t",
          "--attach", "/nonexistent/file.pdf"], "cannot read"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_a_clear_message_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    config = memory_config(tmp_path, "m")
    assert main(["send", "--config", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["send", "--text", "a", "--text-file", "b"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2


def test_batch_sends_every_line_and_reports_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = memory_config(tmp_path, "m")
    batch = tmp_path / "batch.jsonl"
    lines = [json.dumps(simple_message(subject=f"n{i}").to_dict()) for i in range(30)]
    lines[3] = "{not json"
    lines[7] = json.dumps({"sender": "a@example.com", "to": [], "subject": "x", "text": "y"})
    lines.insert(10, "")
    lines.append(json.dumps(full_message().to_dict()))
    batch.write_text("\n".join(lines) + "\n")
    code = main(["send", "--config", str(config), "--batch", str(batch), "--workers", "4"])
    captured = capsys.readouterr()
    assert code == 1
    assert "sent 29 of 31 messages; 2 failed" in captured.out
    assert "line 4: error 3" in captured.err
    assert "line 8: error 1" in captured.err


def test_batch_json_output_names_every_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One JSON line per message as its send completes (so in completion order)."""
    config = memory_config(tmp_path, "m")
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps(simple_message().to_dict()) + "\n" for _ in range(5)))
    assert main(["send", "--config", str(config), "--batch", str(batch), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r.get("line") for r in rows[:-1]) == [1, 2, 3, 4, 5]
    assert rows[-1] == {"status": "done", "sent": 5, "failed": 0}


def test_check_validates_and_never_prints_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-very-secret")
    config = tmp_path / "mail.yml"
    config.write_text(
        "drivers:\n  - name: relay\n    module: smtp\n    settings:\n      host: 127.0.0.1\n"
        "      username: u\n      password: ${SMTP_PASSWORD}\n  - {name: m, module: memory}\n"
    )
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ok, 2 driver(s)" in out and "relay (smtp)" in out
    assert "hunter2-very-secret" not in out
    config.write_text("drivers:\n  - {name: x, module: memory, settings: {fial: reject}}\n")
    assert main(["check", "--config", str(config)]) == 2
    assert "fial" in capsys.readouterr().err


def test_drivers_lists_the_bundled_drivers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drivers", "--json"]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    for name in ("memory", "file", "console", "smtp"):
        assert listed[name]["status"] == "ok"
    assert main(["drivers"]) == 0
    assert "mailfailover.drivers.memory:MemoryDriver" in capsys.readouterr().out


def test_serve_without_token_refuses_public_interfaces(tmp_path: Path) -> None:
    pytest.importorskip("mailfailover.flask")
    config = memory_config(tmp_path, "m")
    done = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_closed_port()),
                   "--config", str(config), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    assert "token" in done.stderr.lower()
