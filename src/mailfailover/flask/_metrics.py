"""The adapter's metrics: the mailer instrumented into a registry of the app's own.

Without the ``metrics`` extra (prometheus_client) there are none and ``GET /metrics``
says how to install it. Under ``mailfailover serve`` prometheus_client runs in multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``, set up by the server): every worker writes its counters
to that directory and the worker answering a scrape adds them all up; the driver states are
that worker's own ``mailer.health()`` (one view shared by all when the mailer's health lives
in a shared state store).
"""

from __future__ import annotations

import os
from typing import Any

from ..mailer import FailoverMailer

__all__ = ["MULTIPROC_ENV", "AdapterMetrics", "adapter_metrics"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class AdapterMetrics:
    """One app's metrics; :meth:`exposition` renders them for ``GET /metrics``."""

    def __init__(self, mailer: FailoverMailer) -> None:
        from prometheus_client import CollectorRegistry

        from ..metrics import Metrics

        self.mailer = mailer
        self.registry = CollectorRegistry()
        Metrics(self.registry).instrument(mailer)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry: Any = self.registry
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client.multiprocess import MultiProcessCollector

            from ..metrics import DriverStateCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(DriverStateCollector([self.mailer]))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def adapter_metrics(mailer: FailoverMailer) -> AdapterMetrics | None:
    """Metrics for ``mailer``, or None without prometheus_client."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return None
    return AdapterMetrics(mailer)
