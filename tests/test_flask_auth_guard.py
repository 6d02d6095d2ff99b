"""Wrong tokens cost time (``http.auth_failures``): a client address that keeps guessing
the API token is answered ``429`` for a while, whatever it gives, on every endpoint that
takes a token; on a shared state store every worker shares the count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailfailover import ConfigError, FailoverMailer, MemoryDriver
from mailfailover.config import HttpConfig, load_config
from mailfailover.errors import UNAUTHORIZED
from mailfailover.flask import create_app
from mailfailover.ratelimit import Rate
from mailfailover.testing import FakeClock

TOKEN = "the-right-token-0123456789"
TEN_A_MINUTE = Rate(10, 60.0)
BODY = {"sender": "shop@example.com", "to": "ann@example.com", "subject": "Hi", "text": "Hello"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def service(
    clock: FakeClock | None = None, rate: Rate | None = TEN_A_MINUTE, state: Any = None
) -> tuple[Any, MemoryDriver]:
    driver = MemoryDriver(name="outbox")
    mailer = FailoverMailer([driver], clock=clock or FakeClock(), state=state)
    http = HttpConfig(api_token=TOKEN, auth_failures=rate)
    return create_app(mailer, http=http).test_client(), driver


def send(client: Any, token: str | None, address: str = "192.0.2.7") -> Any:
    headers = {} if token is None else bearer(token)
    return client.post("/send", json=BODY, headers=headers,
                       environ_base={"REMOTE_ADDR": address})  # fmt: skip


def test_ten_wrong_tokens_then_every_token_waits_and_nothing_is_sent() -> None:
    clock = FakeClock()
    client, driver = service(clock)
    for _ in range(10):
        assert send(client, "guess").status_code == 401
    locked = send(client, "guess")
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "6"  # one more guess every 60/10 s
    assert locked.json["error"] == UNAUTHORIZED
    assert locked.json["field"] == "Authorization"
    assert "too many wrong tokens" in locked.json["message"]
    # the right token is refused too while locked: the answer says nothing about the guess
    assert send(client, TOKEN).status_code == 429
    assert driver.outbox == []
    clock.advance(6.0)
    assert send(client, TOKEN).status_code == 200
    assert len(driver.outbox) == 1
    assert send(client, "guess").status_code == 401  # the slot that came back
    assert send(client, "guess").status_code == 429


def test_only_wrong_tokens_count_and_only_for_their_address() -> None:
    client, driver = service()
    for _ in range(30):
        assert send(client, None).status_code == 401  # no token: nothing guessed
    assert send(client, TOKEN).status_code == 200
    for _ in range(11):
        send(client, "guess", address="198.51.100.1")
    assert send(client, TOKEN, address="198.51.100.1").status_code == 429
    assert send(client, TOKEN, address="192.0.2.7").status_code == 200  # another address
    assert len(driver.outbox) == 2


def test_every_endpoint_taking_a_token_counts_and_is_guarded() -> None:
    """Guesses spread over /health, /metrics and the status page's form, ``?token=`` and
    bearer share one budget; once it is spent each of them answers 429."""
    client, _ = service()
    guesses = [
        lambda: client.get("/health", headers=bearer("g1")),
        lambda: client.get("/metrics", headers=bearer("g2")),
        lambda: client.post("/", data={"token": "g3"}),
        lambda: client.get("/?token=g4"),
        lambda: client.get("/", headers=bearer("g5")),
    ]
    answers = [guess().status_code for guess in guesses * 2]
    assert 429 not in answers
    for guess in guesses:
        assert guess().status_code == 429
    page = client.post("/", data={"token": TOKEN})
    assert page.status_code == 429
    assert page.headers["Retry-After"]
    assert page.mimetype == "text/html"  # the login form again, not JSON
    assert b"too many wrong tokens" in page.data


def test_off_counts_nothing() -> None:
    client, _ = service(rate=None)
    for _ in range(50):
        assert send(client, "guess").status_code == 401
    assert send(client, TOKEN).status_code == 200


def test_workers_on_one_store_share_the_count(tmp_path: Path) -> None:
    """Two apps (two workers) on one sqlite state store: the guesses one took count at the
    other (a slow rate, so the wall clock cannot give a slot back during the test)."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first, _ = service(rate=Rate(10, 3600.0), state=url)
    second, driver = service(rate=Rate(10, 3600.0), state=url)
    for _ in range(10):
        assert send(first, "guess").status_code == 401
    assert send(second, TOKEN).status_code == 429
    assert send(second, TOKEN, address="192.0.2.8").status_code == 200
    assert len(driver.outbox) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10/min", Rate(10, 60.0)),
        ("3/10s", Rate(3, 10.0)),
        ("off", None),
        (False, None),
    ],
)
def test_the_setting(value: Any, expected: Rate | None) -> None:
    config = load_config({"drivers": [{"name": "m", "module": "memory"}],
                          "http": {"auth_failures": value}})  # fmt: skip
    assert config.http.auth_failures == expected


def test_the_default_is_ten_a_minute() -> None:
    config = load_config({"drivers": [{"name": "m", "module": "memory"}]})
    assert config.http.auth_failures == Rate(10, 60.0)


@pytest.mark.parametrize("value", ["10/fortnight", "0/min", "lots", 10, True, None, ["10/min"]])
def test_a_bad_setting_is_a_config_error(value: Any) -> None:
    with pytest.raises(ConfigError, match="auth_failures"):
        load_config({"drivers": [{"name": "m", "module": "memory"}],
                     "http": {"auth_failures": value}})  # fmt: skip
