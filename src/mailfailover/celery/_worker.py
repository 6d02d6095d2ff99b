"""``mailfailover worker``: a Celery worker that consumes the queue."""

from __future__ import annotations

import os

from ._task import ConfigSource, load_queue_config

__all__ = ["run_worker", "worker_argv"]


def worker_argv(
    config: ConfigSource = None,
    *,
    concurrency: int | None = None,
    pool: str | None = None,
    loglevel: str = "INFO",
) -> list[str]:
    """The ``celery worker`` arguments for the queue: its queue name, a node name unique
    on the host, and no gossip, mingle or heartbeat (they cost start-up time and broker
    traffic, and the queue uses none of them)."""
    _, queue = load_queue_config(config)
    argv = [
        "worker",
        "--queues",
        queue.name,
        "--hostname",
        f"mailfailover-{os.getpid()}@%h",
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    if pool is not None:
        argv += ["--pool", pool]
    return argv


def run_worker(
    config: ConfigSource = None,
    *,
    concurrency: int | None = None,
    pool: str | None = None,
    loglevel: str = "INFO",
) -> None:
    """Run a worker in this process until it is stopped (SIGTERM: finish the running tasks)."""
    from ._outbox import make_app

    app = make_app(config)
    app.worker_main(worker_argv(config, concurrency=concurrency, pool=pool, loglevel=loglevel))
