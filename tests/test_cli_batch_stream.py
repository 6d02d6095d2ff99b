"""``send --batch`` streams, stops on SIGINT/SIGTERM, and resumes without re-sending.

A real ``mailfailover`` process (through ``mailfailover.cli.main``) and real signals. The
driver is a slow stand-in that appends every Message-ID it delivers to a file, so the test
can compare what was delivered with what the command reported. Before: results were
printed per 1,000-message chunk, Ctrl-C kept sending the chunk and printed nothing, and
there was no way to resume.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from mailfailover.testing import simple_message

LINES = 120

RUNNER = textwrap.dedent(
    """
    import sys, threading, time
    from mailfailover import registry
    from mailfailover.cli import main
    from mailfailover.driver import Driver, Receipt, Setting

    class Slow(Driver):
        settings_spec = {"record": Setting(), "delay": Setting(0.15, float)}
        lock = threading.Lock()

        def send(self, message):
            time.sleep(self.settings["delay"])
            with self.lock, open(self.settings["record"], "a") as handle:
                handle.write(message.message_id + "\\n")
            return Receipt(driver=self.name, message_id=message.message_id)

    registry._classes["slow"] = Slow
    sys.exit(main(sys.argv[1:]))
    """
)


def _setup(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER, encoding="utf-8")
    record = tmp_path / "delivered.txt"
    config = tmp_path / "mail.yml"
    config.write_text(
        f"drivers: [{{name: slow, module: slow, settings: {{record: '{record}'}}}}]\n",
        encoding="utf-8",
    )
    batch = tmp_path / "batch.jsonl"
    rows = []
    for i in range(LINES):
        data = simple_message(subject=f"n{i}").to_dict()
        del data["message_id"]  # the batch gives each line a stable one with --sent-log
        rows.append(json.dumps(data))
    batch.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return runner, record, config, batch


def _delivered(record: Path) -> list[str]:
    if not record.exists():
        return []
    return [line for line in record.read_text(encoding="utf-8").splitlines() if line]


def _start(runner: Path, config: Path, batch: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(runner), "send", "--config", str(config), "--batch", str(batch),
         "--workers", "2", "--json", "--sent-log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_batch_and_a_rerun_sends_only_the_rest(
    tmp_path: Path, signum: int, code: int
) -> None:
    runner, record, config, batch = _setup(tmp_path)
    log = tmp_path / "sent.log"
    process = _start(runner, config, batch, log)
    try:
        deadline = time.monotonic() + 60
        while len(_delivered(record)) < 6:  # some sends are done, most are not
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the batch did not start sending"
            time.sleep(0.05)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, err
    rows = [json.loads(line) for line in out.splitlines()]
    summary = rows[-1]
    assert summary["status"] == "interrupted"
    sent_rows = [r for r in rows[:-1] if r["status"] == "sent"]
    delivered = _delivered(record)
    # Every delivery was reported (in-flight sends finished and printed), nothing more.
    assert sorted(r["message_id"] for r in sent_rows) == sorted(delivered)
    assert summary["sent"] == len(delivered)
    assert len(delivered) < LINES // 2, "the signal did not stop the batch promptly"
    assert "interrupted" in err
    # The log holds exactly what was delivered.
    assert sorted(log.read_text(encoding="utf-8").split()) == sorted(delivered)

    # Re-running with the same log sends only the rest, each exactly once.
    rerun = subprocess.run(
        [sys.executable, str(runner), "send", "--config", str(config), "--batch", str(batch),
         "--workers", "4", "--json", "--sent-log", str(log)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    final = json.loads(rerun.stdout.splitlines()[-1])
    assert final == {
        "status": "done", "sent": LINES - len(delivered), "failed": 0, "skipped": len(delivered)
    }  # fmt: skip
    everything = _delivered(record)
    assert len(everything) == LINES
    assert max(Counter(everything).values()) == 1, "a message was sent twice"


def test_results_stream_as_they_complete(tmp_path: Path) -> None:
    """The first result is on stdout while the batch is still running."""
    runner, record, config, batch = _setup(tmp_path)
    process = _start(runner, config, batch, tmp_path / "sent.log")
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        assert first["status"] == "sent" and "line" in first
        assert process.poll() is None  # still sending the rest
        assert len(_delivered(record)) < LINES
    finally:
        process.kill()
        process.communicate()
