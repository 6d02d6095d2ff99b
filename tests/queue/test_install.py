"""``install()`` on an application of the user's own: what it registers and configures.

Nothing here talks to a broker: a Celery app connects only when it publishes or consumes.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from celery import Celery

from mailfailover.celery import TASK_NAME, broker_options, install
from mailfailover.errors import ConfigError

CONFIG: dict[str, Any] = {
    "state": "redis://127.0.0.1:6390/0",
    "queue": {"broker": "redis://127.0.0.1:6390/1", "backoff_max": 600, "lease": 60},
    "drivers": [{"name": "m", "module": "memory"}],
}


def test_the_task_is_at_least_once_and_json_only() -> None:
    app = Celery("proj", broker="redis://127.0.0.1:6390/1", set_as_current=False)
    install(app, CONFIG)
    task = app.tasks[TASK_NAME]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.serializer == "json"
    assert task.max_retries is None
    assert app.conf.task_routes[TASK_NAME] == {"queue": "mailfailover"}
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] == 600 + 60 + 60
    assert options["unacked_restore_interval"] == 10.0  # a tenth of 720 s, at most 10
    assert options["unacked_restore_throttle"] == 1
    # kombu's 300 s would stop every restore for 5 minutes after a worker killed mid-sweep.
    assert options["unacked_mutex_expire"] == 30.0


def test_the_users_own_settings_are_kept_and_a_short_timeout_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Celery("proj", broker="redis://127.0.0.1:6390/1", set_as_current=False)
    app.conf.broker_transport_options = {"visibility_timeout": 300, "max_connections": 7}
    app.conf.task_routes = {"proj.other": {"queue": "other"}}
    with caplog.at_level(logging.WARNING, logger="mailfailover"):
        install(app, CONFIG)
    assert app.conf.broker_transport_options["visibility_timeout"] == 300
    assert app.conf.broker_transport_options["max_connections"] == 7
    assert app.conf.task_routes["proj.other"] == {"queue": "other"}
    assert app.conf.task_routes[TASK_NAME] == {"queue": "mailfailover"}
    assert any("visibility_timeout is 300" in r.getMessage() for r in caplog.records)


def test_a_configuration_without_a_queue_section_is_refused() -> None:
    app = Celery("proj", set_as_current=False)
    with pytest.raises(ConfigError, match="needs a 'queue' section"):
        install(app, {"drivers": CONFIG["drivers"]})


def test_the_restore_sweep_follows_a_short_visibility_timeout() -> None:
    from mailfailover.config import load_config

    short = {"broker": "redis://h/1", "backoff": 0.2, "backoff_max": 1, "lease": 2,
             "visibility_timeout": 5}  # fmt: skip
    queue = load_config({**CONFIG, "queue": short}).queue
    assert queue is not None
    assert broker_options(queue)["unacked_restore_interval"] == 0.5
    assert broker_options(queue)["unacked_mutex_expire"] == 5.0
