"""``console``: prints each message as MIME to standard output (or standard error)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import ClassVar

from ..driver import Driver, Receipt, Setting
from ..message import Message

__all__ = ["ConsoleDriver"]

_LOCK = threading.Lock()


class ConsoleDriver(Driver):
    """For development: shows what would be sent, delivers nothing."""

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        "stream": Setting("stdout", choices=("stdout", "stderr")),
    }

    def send(self, message: Message) -> Receipt:
        stream = sys.stdout if self.settings["stream"] == "stdout" else sys.stderr
        text = message.to_mime().as_string()
        with _LOCK:  # keep messages from several threads apart
            stream.write(f"{text}\n{'-' * 79}\n")
            stream.flush()
        return Receipt(driver=self.name, message_id=message.message_id)
