"""``memory``: keeps what it is given in a list; for tests and for reproducing failures.

``fail: unavailable`` or ``fail: reject`` in its settings makes every send fail that way, so
a config file alone reproduces a down provider or one that refuses the data;
``fail_rate`` (0 to 1) makes that many sends fail at random (with ``fail`` saying how,
``unavailable`` by default).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from typing import ClassVar

from ..driver import Driver, Receipt, Setting
from ..errors import MessageRejected, ProviderUnavailable
from ..message import Message

__all__ = ["MemoryDriver"]


class MemoryDriver(Driver):
    """Delivers into :attr:`outbox`, a list of the messages it accepted, in order."""

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        "fail": Setting(None, str, choices=("unavailable", "reject"),
                        help="make every send (or fail_rate of them) fail this way"),
        "fail_rate": Setting(None, float, help="fraction of sends that fail, 0 to 1"),
        "seed": Setting(None, int, help="seed for fail_rate, for reproducible runs"),
    }  # fmt: skip

    def __init__(self, *, name: str = "memory", **settings: object) -> None:
        super().__init__(name=name, **settings)
        self.outbox: list[Message] = []
        self.calls = 0
        self._lock = threading.Lock()
        self._random = random.Random(self.settings["seed"])

    def send(self, message: Message) -> Receipt:
        mode = self.settings["fail"]
        with self._lock:
            self.calls += 1
            rate = self.settings["fail_rate"]
            failing = mode is not None if rate is None else self._random.random() < rate
            if not failing:
                self.outbox.append(message)
                return Receipt(driver=self.name, message_id=message.message_id)
        if mode == "reject":
            raise MessageRejected("configured to reject every message", driver=self.name)
        raise ProviderUnavailable(
            "configured to be unavailable", reason="server_error", driver=self.name
        )

    async def asend(self, message: Message) -> Receipt:
        """:meth:`send` for an event loop, without a thread: it never blocks."""
        return self.send(message)

    async def aclose(self) -> None:
        self.close()

    def clear(self) -> None:
        with self._lock:
            self.outbox.clear()
            self.calls = 0
