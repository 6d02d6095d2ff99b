"""HTTP drivers read the proxy environment once, and still honour it.

requests re-reads the environment on every request while ``trust_env`` is on; the HTTP
driver base reads it once per driver instead (a quarter of a loopback request, see
docs/benchmarks.md). These tests pin what must not change with that: proxies and NO_PROXY
from the environment apply, and a ~/.netrc entry never replaces the provider's credentials.
Each runs against both transports: requests (``send``) and aiohttp (``asend``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _reliability import COLOURS
from _servers import PROVIDERS, StandInServer, closed_port

from mailfailover.testing import simple_message

SENDGRID = PROVIDERS["sendgrid"]


@pytest.fixture(params=COLOURS)
def send(request: pytest.FixtureRequest) -> Any:
    """Send one message with ``driver.send`` (requests) or ``driver.asend`` (aiohttp), then
    close the driver."""

    def sync(driver: Any) -> Any:
        with driver:
            return driver.send(simple_message())

    async def in_loop(driver: Any) -> Any:
        try:
            return await driver.asend(simple_message())
        finally:
            await driver.aclose()

    if request.param == "async":
        return lambda driver: asyncio.run(in_loop(driver))
    return sync


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_a_proxy_from_the_environment_carries_the_request(
    stand_in: StandInServer, monkeypatch: pytest.MonkeyPatch, send: Any
) -> None:
    """HTTP_PROXY sends the request through the proxy, with the provider's URL as target."""
    monkeypatch.setenv("HTTP_PROXY", stand_in.url)
    driver = SENDGRID.make("http://api.example.invalid")
    receipt = send(driver)
    assert receipt.message_id
    assert [r.path for r in stand_in.requests] == ["http://api.example.invalid/v3/mail/send"]


def test_no_proxy_sends_directly(
    stand_in: StandInServer, monkeypatch: pytest.MonkeyPatch, send: Any
) -> None:
    """A host in NO_PROXY is reached directly, even with a (dead) proxy configured."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    driver = SENDGRID.make(stand_in.url)
    send(driver)
    assert [r.path for r in stand_in.requests] == ["/v3/mail/send"]


def test_a_netrc_entry_never_replaces_the_providers_credentials(
    stand_in: StandInServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, send: Any
) -> None:
    """requests would put Basic credentials from ~/.netrc over our Authorization header;
    the driver's own credentials are what the provider receives."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    driver = SENDGRID.make(stand_in.url)
    send(driver)
    assert stand_in.requests[0].headers["Authorization"] == f"Bearer {SENDGRID.secrets[0]}"
