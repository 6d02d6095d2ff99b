"""prometheus_client's multiprocess mode for ``mailfailover serve``.

Each gunicorn worker keeps its own counters; for ``GET /metrics`` to add them all up,
prometheus_client must write them to a shared directory, named by
``PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is first imported. The server sets
that up itself: a fresh temporary directory, removed when the server stops (or the
user's own when the variable is already set: then it is left alone). When a worker dies
its live gauges are dropped (gunicorn's ``child_exit`` hook); its counters stay, so counts
survive worker restarts and reloads.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from ._metrics import MULTIPROC_ENV

__all__ = ["mark_worker_dead", "multiprocess_metrics"]

logger = logging.getLogger("mailfailover.flask")


@contextlib.contextmanager
def multiprocess_metrics() -> Iterator[str | None]:
    """Point prometheus_client at a directory every worker shares, for the block."""
    if importlib.util.find_spec("prometheus_client") is None:
        yield None
        return
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        logger.info("metrics of every worker add up in %s (from %s)", existing, MULTIPROC_ENV)
        yield existing
        return
    if "prometheus_client" in sys.modules:
        logger.warning(
            "prometheus_client was imported before the server started: each worker's "
            "/metrics may show only its own counts"
        )
    directory = tempfile.mkdtemp(prefix="mailfailover-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    logger.info("metrics of every worker add up in %s", directory)
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def mark_worker_dead(server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit``: drop a dead worker's live gauges."""
    if not os.environ.get(MULTIPROC_ENV) or importlib.util.find_spec("prometheus_client") is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
