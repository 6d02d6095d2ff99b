"""Fixtures for the reliability suite: provider stand-ins over real loopback sockets.

The stand-in server and the provider table live in ``bench/_servers.py``, shared with the
benchmarks, so the code the benchmarks measure with is the code this suite checks; this file
puts ``bench/`` on ``sys.path`` for the suite's modules.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))

from _servers import StandInServer  # noqa: E402 - found through the path set just above


@pytest.fixture(scope="module")
def _module_server() -> Iterator[StandInServer]:
    with StandInServer(hang_seconds=5.0) as server:
        yield server


@pytest.fixture
def stand_in(_module_server: StandInServer) -> StandInServer:
    """A provider stand-in answering every provider's success, with nothing received yet."""
    _module_server.reset()
    return _module_server
