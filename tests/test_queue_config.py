"""The ``queue:`` and ``state:`` sections and ``http.queue``: validated at load time."""

from __future__ import annotations

from typing import Any

import pytest

from mailfailover.config import QueueConfig, load_config
from mailfailover.errors import ConfigError

DRIVERS = [{"name": "m", "module": "memory"}]
STATE = "redis://127.0.0.1:6379/0"


def config(**top: Any) -> Any:
    return load_config({"drivers": DRIVERS, **top})


def test_defaults_and_the_derived_visibility_timeout() -> None:
    queue = config(state=STATE, queue={"broker": "redis://127.0.0.1:6379/1"}).queue
    assert queue == QueueConfig(broker="redis://127.0.0.1:6379/1")
    assert queue.max_age == 86400
    assert queue.on_ambiguous == "dead"
    # the longest wait in a worker + one send + a minute
    assert queue.broker_visibility_timeout == 1800 + 300 + 60


def test_every_key_is_read() -> None:
    loaded = config(
        state={"url": STATE, "namespace": "app"},
        queue={"broker": "redis://h/1", "max_age": "3600", "name": "mail", "backoff": 2,
               "backoff_max": 60, "lease": 30, "visibility_timeout": 120,
               "on_ambiguous": "retry", "connect_timeout": 1, "keep": 10},
        http={"queue": True},
    )  # fmt: skip
    assert loaded.http.queue is True
    assert loaded.state == {"url": STATE, "namespace": "app"}
    q = loaded.queue
    assert q is not None
    assert (q.max_age, q.name, q.backoff, q.backoff_max, q.lease) == (3600, "mail", 2, 60, 30)
    assert (q.broker_visibility_timeout, q.on_ambiguous, q.connect_timeout, q.keep) == (
        120, "retry", 1, 10
    )  # fmt: skip


@pytest.mark.parametrize(
    ("top", "text"),
    [
        ({"queue": {"broker": "redis://h/1"}}, "needs a shared state store"),
        ({"state": "memory://", "queue": {"broker": "redis://h/1"}}, "shared state store"),
        ({"state": STATE, "queue": {}}, "queue.broker"),
        ({"state": STATE, "queue": {"broker": "redis://h/1", "brokr": 1}}, "queue.brokr"),
        ({"state": STATE, "queue": {"broker": "redis://h/1", "max_age": 0}}, "queue.max_age"),
        ({"state": STATE, "queue": {"broker": "redis://h/1", "on_ambiguous": "maybe"}},
         "on_ambiguous"),
        ({"state": STATE, "queue": {"broker": "redis://h/1", "backoff": 90, "backoff_max": 60}},
         "queue.backoff"),
        ({"state": STATE, "queue": {"broker": "redis://h/1", "visibility_timeout": 600}},
         "visibility_timeout"),
        ({"state": STATE, "queue": {"broker": "redis://h/1", "name": "a b"}}, "queue.name"),
        ({"state": STATE, "queue": "redis://h/1"}, "'queue' must be a mapping"),
        ({"state": 5}, "'state' must be"),
        ({"state": {"url": STATE, "nmespace": "x"}}, "state.nmespace"),
        ({"http": {"queue": True}}, "needs a 'queue' section"),
        ({"http": {"queue": "yes"}}, "http.queue"),
    ],
)  # fmt: skip
def test_mistakes_are_config_errors(top: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        config(**top)


def test_the_broker_password_stays_out_of_repr_and_errors() -> None:
    queue = config(state=STATE, queue={"broker": "redis://:s3cret@h/1"}).queue
    assert "s3cret" not in repr(queue)
    with pytest.raises(ConfigError) as info:
        config(state=STATE, queue={"broker": "redis://:s3cret@h/1", "max_age": -1})
    assert "s3cret" not in str(info.value)


def test_a_short_backoff_max_alone_shortens_the_first_wait() -> None:
    queue = config(state=STATE, queue={"broker": "redis://h/1", "backoff_max": 5}).queue
    assert queue is not None
    assert (queue.backoff, queue.backoff_max) == (5, 5)
