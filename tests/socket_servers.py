"""Loopback servers that misbehave on purpose: one that never answers, one that answers
every connection with the same bytes. Each runs on a port the kernel picks and is closed,
with its thread joined, when the ``with`` block ends."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

__all__ = ["replying_server", "silent_server"]


@contextlib.contextmanager
def _serving(handle: object | None) -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            if handle is None:  # hold it open, silent, until the end
                held.append(connection)
                continue
            with connection:
                connection.settimeout(2)
                with contextlib.suppress(OSError):
                    connection.recv(65536)
                    connection.sendall(handle)  # type: ignore[arg-type]

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


def silent_server() -> contextlib.AbstractContextManager[int]:
    """A port whose connections are accepted and never answered."""
    return _serving(None)


def replying_server(reply: bytes) -> contextlib.AbstractContextManager[int]:
    """A port that reads one request per connection, answers ``reply`` and hangs up."""
    return _serving(reply)
