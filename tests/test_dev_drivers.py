"""The development drivers: memory, file and console, under the driver contract."""

from __future__ import annotations

import email
import email.policy
import os
import threading
from pathlib import Path

import pytest

from mailfailover import (
    FailoverMailer,
    MemoryDriver,
    MessageRejected,
    ProviderUnavailable,
    Receipt,
)
from mailfailover.driver import Driver
from mailfailover.drivers.console import ConsoleDriver
from mailfailover.drivers.file import FileDriver
from mailfailover.testing import DriverContractTests, full_message, simple_message


class TestMemoryContract(DriverContractTests):
    colours = ("sync", "async")

    def make_driver(self) -> Driver:
        self.driver = MemoryDriver(name="mem")
        return self.driver

    def arrange_success(self) -> None:
        self.driver.settings["fail"] = None

    def arrange_unavailable(self) -> None:
        self.driver.settings["fail"] = "unavailable"

    def arrange_rejection(self) -> None:
        self.driver.settings["fail"] = "reject"

    def requests_made(self) -> int:
        return self.driver.calls


class TestFileContract(DriverContractTests):
    colours = ("sync", "async")

    @pytest.fixture(autouse=True)
    def _outbox(self, tmp_path: Path) -> None:
        self.directory = tmp_path / "outbox"

    def make_driver(self) -> Driver:
        return FileDriver(name="outbox", directory=str(self.directory))

    def arrange_success(self) -> None:
        self.directory.mkdir(exist_ok=True)

    def arrange_unavailable(self) -> None:
        self.directory.parent.mkdir(exist_ok=True)
        self.directory.write_text("a file where the folder should be")

    def arrange_rejection(self) -> None:
        pytest.skip("the file driver never rejects a message")

    def requests_made(self) -> int:
        return len(list(self.directory.glob("*.eml"))) if self.directory.is_dir() else 0


class TestConsoleContract(DriverContractTests):
    colours = ("sync", "async")

    def make_driver(self) -> Driver:
        return ConsoleDriver(name="console")

    def arrange_success(self) -> None:
        pass

    def arrange_unavailable(self) -> None:
        pytest.skip("the console driver is never unavailable")

    def arrange_rejection(self) -> None:
        pytest.skip("the console driver never rejects a message")

    def requests_made(self) -> int:
        return 0


def test_memory_records_messages_and_can_be_told_to_fail() -> None:
    driver = MemoryDriver()
    message = simple_message()
    receipt = driver.send(message)
    assert receipt == Receipt(driver="memory", message_id=message.message_id)
    assert driver.outbox == [message]
    with pytest.raises(ProviderUnavailable):
        MemoryDriver(fail="unavailable").send(message)
    with pytest.raises(MessageRejected):
        MemoryDriver(fail="reject").send(message)


def test_memory_fail_rate_is_seeded_and_roughly_right() -> None:
    def failures(seed: int) -> list[bool]:
        driver = MemoryDriver(fail_rate=0.25, seed=seed)
        out = []
        for _ in range(400):
            try:
                driver.send(simple_message())
                out.append(False)
            except ProviderUnavailable:
                out.append(True)
        return out

    first = failures(5)
    assert first == failures(5)
    assert 60 < sum(first) < 140


def test_config_alone_reproduces_a_down_and_an_invalid_data_provider() -> None:
    config = {"drivers": [{"name": "down", "module": "memory", "settings": {"fail": "unavailable"}},
                          {"name": "picky", "module": "memory", "settings": {"fail": "reject"}},
                          {"name": "never", "module": "memory"}]}  # fmt: skip
    mailer = FailoverMailer.from_config(config)
    with pytest.raises(MessageRejected) as caught:
        mailer.send(simple_message())
    assert [a.outcome for a in caught.value.attempts] == ["unavailable", "rejected"]
    assert mailer.drivers[2].outbox == []  # type: ignore[attr-defined]


def test_file_driver_writes_a_parseable_eml(tmp_path: Path) -> None:
    driver = FileDriver(name="outbox", directory=str(tmp_path / "deep" / "outbox"))
    message = full_message()
    receipt = driver.send(message)
    path = Path(str(receipt.response and receipt.response["path"]))
    assert path.parent == tmp_path / "deep" / "outbox"
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == message.subject
    assert parsed["Message-ID"] == message.message_id
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_file_names_cannot_be_steered_by_the_message(tmp_path: Path) -> None:
    """Subjects, message ids and attachment names never take part in the file name."""
    from mailfailover import Attachment

    outbox = tmp_path / "outbox"
    driver = FileDriver(name="outbox", directory=str(outbox))
    hostile = simple_message(
        subject="../../etc/passwd",
        message_id="<../../../../tmp/x@example.com>",
        attachments=[Attachment("../../etc/passwd", b"root:x:0:0")],
    )
    receipt = driver.send(hostile)
    written = Path(str(receipt.response and receipt.response["path"]))
    assert written.parent == outbox
    assert set(tmp_path.rglob("*")) == {outbox, written}


def test_file_driver_threads_never_collide(tmp_path: Path) -> None:
    driver = FileDriver(name="outbox", directory=str(tmp_path))
    threads = [threading.Thread(target=lambda: [driver.send(simple_message()) for _ in range(25)])
               for _ in range(8)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(os.listdir(tmp_path)) == 200


def test_console_prints_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleDriver(name="console").send(simple_message(subject="Printed"))
    out = capsys.readouterr().out
    assert "Subject: Printed" in out
    ConsoleDriver(name="console", stream="stderr").send(simple_message(subject="Err"))
    assert "Subject: Err" in capsys.readouterr().err


def test_file_driver_keeps_tags_and_metadata_as_headers(tmp_path: Path) -> None:
    """The outbox keeps what a provider would have carried: X-Tags and X-Metadata."""
    import json

    driver = FileDriver(name="outbox", directory=str(tmp_path))
    receipt = driver.send(simple_message(tags=["a", "b"], metadata={"order": "A-17"}))
    path = Path(str(receipt.response and receipt.response["path"]))
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert json.loads(parsed["X-Tags"]) == ["a", "b"]
    assert json.loads(parsed["X-Metadata"]) == {"order": "A-17"}


def test_file_driver_can_refuse_tags_and_metadata(tmp_path: Path) -> None:
    from mailfailover import UnsupportedFeature

    driver = FileDriver(name="outbox", directory=str(tmp_path), tags_and_metadata="refuse")
    with pytest.raises(UnsupportedFeature):
        driver.send(simple_message(tags=["a"]))
    assert list(tmp_path.iterdir()) == []
