"""``mailfailover send --eml``: what the file driver left in its outbox goes back through
the chain, keeping its Message-ID, and a re-run never re-sends it. Before: no way back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailfailover import InvalidMessage
from mailfailover._eml import message_from_eml
from mailfailover.cli import main
from mailfailover.drivers.file import FileDriver
from mailfailover.testing import full_message, simple_message


def outbox_with(tmp_path: Path, *messages: Any) -> Path:
    outbox = tmp_path / "outbox"
    with FileDriver(name="outbox", directory=str(outbox)) as driver:
        for message in messages:
            driver.send(message)
    return outbox


def test_a_file_driver_eml_becomes_the_same_message(tmp_path: Path) -> None:
    original = full_message()
    outbox = outbox_with(tmp_path, original)
    (path,) = outbox.glob("*.eml")
    again = message_from_eml(path.read_bytes())
    assert original.bcc, "the full message has Bcc recipients: they must survive the outbox"
    expected = original.to_dict()
    got = again.to_dict()
    # Inline parts sit in the related part, before the mixed attachments: order is the tree's.
    for data in (expected, got):
        data["attachments"].sort(key=lambda a: a["filename"])
    assert got == expected
    assert again.message_id == "<full-message-1@example.com>"


def test_a_bcc_header_in_the_file_is_kept(tmp_path: Path) -> None:
    raw = (
        simple_message()
        .to_mime()
        .as_bytes()
        .replace(b"Subject:", b"Bcc: hidden@example.com\r\nSubject:", 1)
    )
    assert message_from_eml(raw).bcc == ("hidden@example.com",)


@pytest.mark.parametrize(
    "raw",
    [b"", b"not an email at all", b"From: a@example.com\r\nSubject: x\r\n\r\nno recipient\r\n"],
)
def test_a_file_that_is_not_a_message_is_invalid(raw: bytes) -> None:
    with pytest.raises(InvalidMessage):
        message_from_eml(raw)


def memory_config(tmp_path: Path) -> Path:
    path = tmp_path / "mail.yml"
    path.write_text("drivers: [{name: m, module: memory}]\n", encoding="utf-8")
    return path


def test_send_eml_redrives_an_outbox_folder_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = [simple_message(subject=f"n{i}", message_id=f"<n{i}@example.com>") for i in range(3)]
    outbox = outbox_with(tmp_path, *messages)
    config = memory_config(tmp_path)
    args = ["send", "--config", str(config), "--eml", str(outbox), "--json"]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["message_id"] for r in rows[:-1]) == [m.message_id for m in messages]
    assert all(r["status"] == "sent" and r["file"].endswith(".eml") for r in rows[:-1])
    assert rows[-1] == {"status": "done", "sent": 3, "failed": 0}
    assert list(outbox.glob("*.eml")) == []
    assert len(list((outbox / "sent").glob("*.eml"))) == 3
    # Re-running finds nothing left to send.
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        json.dumps({"status": "done", "sent": 0, "failed": 0})
    ]


def test_a_failed_eml_stays_in_the_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox = outbox_with(tmp_path, simple_message())
    config = tmp_path / "down.yml"
    config.write_text("drivers: [{name: m, module: memory, settings: {fail: unavailable}}]\n")
    assert main(["send", "--config", str(config), "--eml", str(outbox)]) == 1
    assert len(list(outbox.glob("*.eml"))) == 1
    assert not (outbox / "sent").exists()
    assert "error 5" in capsys.readouterr().err


def test_a_single_eml_file_and_batch_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox = outbox_with(tmp_path, simple_message())
    (path,) = outbox.glob("*.eml")
    config = memory_config(tmp_path)
    batch = tmp_path / "b.jsonl"
    batch.write_text("")
    assert main(["send", "--config", str(config), "--eml", str(path), "--batch", str(batch)]) == 2
    assert main(["send", "--config", str(config), "--eml", str(path)]) == 0
    assert (outbox / "sent" / path.name).exists()
