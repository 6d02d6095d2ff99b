"""The ``state:`` configuration key: shapes, validation, and what the mailer gets from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailfailover import ConfigError, FailoverMailer
from mailfailover.config import load_config
from mailfailover.health import State
from mailfailover.state import ResilientStore
from mailfailover.testing import simple_message

DRIVERS = [{"name": "a", "module": "memory", "settings": {"fail": "unavailable"}},
           {"name": "b", "module": "memory"}]  # fmt: skip


def config(state: Any) -> dict[str, Any]:
    return {"drivers": DRIVERS, "state": state}


def test_state_is_a_url_or_a_mapping() -> None:
    assert load_config({"drivers": DRIVERS}).state is None
    assert load_config(config("sqlite:///tmp/x.db")).state == "sqlite:///tmp/x.db"
    loaded = load_config(config({"url": "redis://127.0.0.1:6379/2", "namespace": "shop"}))
    assert loaded.state == {"url": "redis://127.0.0.1:6379/2", "namespace": "shop"}
    assert loaded.mailer_options()["state"] == {
        "url": "redis://127.0.0.1:6379/2", "namespace": "shop",
    }  # fmt: skip
    assert "state" not in load_config({"drivers": DRIVERS}).mailer_options()


def test_state_url_may_come_from_the_environment() -> None:
    loaded = load_config(config("${STATE_URL}"), environ={"STATE_URL": "memory://"})
    assert loaded.state == "memory://"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (5, "'state' must be a store URL"),
        ("not a url", "'state' must be a store URL"),
        ("ftp://host/x", "no store backend for 'ftp'"),
        ({"url": "memory://", "prefix": "x"}, "unknown key 'state.prefix'"),
        ({"url": "memory://", "namespace": "two words"}, "'state.namespace' must be a word"),
        ({"url": "memory://", "namespace": ""}, "'state.namespace' must be a word"),
    ],
)
def test_bad_state_is_a_config_error(state: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(config(state))


def test_a_store_password_is_never_shown() -> None:
    secret = "s3cret-redis-pw"
    loaded = load_config(config(f"redis://:{secret}@127.0.0.1:6379/0"))
    assert loaded.state is not None
    assert secret not in repr(loaded)
    with pytest.raises(ConfigError) as caught:
        load_config(config(f"nosuch://:{secret}@127.0.0.1/0"))
    assert secret not in str(caught.value)


def test_from_config_shares_health_through_the_configured_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = FailoverMailer.from_config(config({"url": url, "namespace": "shop"}), cooldown=60)
    second = FailoverMailer.from_config(config({"url": url, "namespace": "shop"}), cooldown=60)
    other = FailoverMailer.from_config(config({"url": url, "namespace": "elsewhere"}))
    try:
        assert isinstance(first.store, ResilientStore) and first.store.namespace == "shop"
        assert first.send(simple_message()).driver == "b"  # a fails once...
        assert first.send(simple_message()).driver == "b"  # ...twice: cooling down
        assert second.health()[0].state is State.COOLING_DOWN
        assert other.health()[0].state is State.HEALTHY  # another namespace, another fleet
    finally:
        for mailer in (first, second, other):
            mailer.close()
