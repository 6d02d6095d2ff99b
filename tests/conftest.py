"""Fixtures shared by the whole suite."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, require_redis_server

# The provider stand-ins live in bench/_servers.py, shared with the benchmarks, so the code
# the benchmarks measure with is the code the tests check.
_BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(_BENCH) not in sys.path:
    sys.path.insert(0, str(_BENCH))

from _servers import StandInServer  # noqa: E402 - found through the path set just above

from mailfailover import MemoryDriver  # noqa: E402
from mailfailover.testing import FakeClock, simple_message  # noqa: E402


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in an empty working directory with no MAILFAILOVER_CONFIG."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILFAILOVER_CONFIG", raising=False)
    return tmp_path


@pytest.fixture(autouse=True)
def _no_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own MAILFAILOVER_CONFIG must never steer the tests."""
    if "MAILFAILOVER_CONFIG" in os.environ:
        monkeypatch.delenv("MAILFAILOVER_CONFIG")


@pytest.fixture
def message():  # type: ignore[no-untyped-def]
    return simple_message()


@pytest.fixture
def memory() -> MemoryDriver:
    return MemoryDriver(name="memory")


@pytest.fixture
def mf_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="mailfailover")
    return caplog


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests keep apart by namespace or flush it."""
    server = RedisServer(require_redis_server(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that kill and restart it."""
    server = RedisServer(require_redis_server(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def _module_server() -> Iterator[StandInServer]:
    with StandInServer(hang_seconds=5.0) as server:
        yield server


@pytest.fixture
def stand_in(_module_server: StandInServer) -> StandInServer:
    """A provider stand-in (one per test module) answering every provider's success, with
    nothing received yet. Modules that need another kind define their own."""
    _module_server.reset()
    return _module_server
