"""Issue 9 item 16: the library is quiet by default; serve on a busy port is a usage error."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def test_an_application_without_logging_setup_sees_no_library_warnings() -> None:
    """Before: no NullHandler, so Python's last-resort handler printed them on stderr."""
    code = textwrap.dedent(
        """
        import logging
        from mailfailover import FailoverMailer, MemoryDriver, AllProvidersFailed
        from mailfailover.testing import simple_message
        mailer = FailoverMailer([MemoryDriver(name="down", fail="unavailable")])
        try:
            mailer.send(simple_message())  # logs a warning on the mailfailover logger
        except AllProvidersFailed:
            pass
        logging.getLogger("mailfailover").warning("a warning from the library")
        print("done")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert done.stderr == ""


def test_an_application_that_configures_logging_still_gets_the_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import mailfailover  # noqa: F401 - adds the NullHandler

    with caplog.at_level(logging.WARNING, logger="mailfailover"):
        logging.getLogger("mailfailover.mailer").warning("visible")
    assert "visible" in caplog.text


def test_serve_on_a_busy_port_exits_2(tmp_path: Path) -> None:
    """Before: gunicorn retried the bind for seconds, then exited 1 (a failed send's code)."""
    pytest.importorskip("gunicorn")
    config = tmp_path / "mail.yml"
    config.write_text("drivers: [{name: m, module: memory}]\n", encoding="utf-8")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "mailfailover.cli", "serve", "--port", str(port),
             "--config", str(config)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "in use" in done.stderr.lower()
