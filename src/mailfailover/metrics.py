"""Prometheus metrics for a :class:`~mailfailover.FailoverMailer` (extra ``metrics``).

:func:`instrument` subscribes to the mailer's own attempt and outcome hooks
(:meth:`FailoverMailer.add_hooks`), so the numbers are the mailer's bookkeeping, not a second
one, and a user's ``on_attempt`` keeps working beside them:

- ``mailfailover_attempts_total{driver,outcome,reason}``: every attempt, skipped ones too;
- ``mailfailover_messages_total{outcome}``: every message, ``sent``, ``rejected`` or ``failed``;
- ``mailfailover_failovers_total{driver,reason}``: messages delivered by ``driver`` although
  another driver came first in their order; ``reason`` is why that first driver did not
  deliver, as its attempt's reason label (``timeout``, ``cooling_down``, ``unsupported``...;
  ``over_rate`` when it was over its ``rate`` and the message spilled over);
- ``mailfailover_send_seconds{driver}``: how long each attempt that reached a driver took;
- ``mailfailover_driver_state{driver}``: 0 closed (healthy), 1 probing, 2 open (cooling down),
  read from :meth:`FailoverMailer.health` at scrape time.

Label values are bounded: ``driver`` is a configured driver name, ``outcome`` and ``reason``
come from fixed vocabularies (:data:`OUTCOMES`, :data:`MESSAGE_OUTCOMES`, :data:`REASONS`);
anything else is counted as ``other``. No address, subject or error text is ever a label.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._labels import OTHER, OUTCOMES, REASONS, attempt_outcome, attempt_reason
from .errors import AllProvidersFailed, MailError, MessageRejected, MissingDependency
from .mailer import Attempt, FailoverMailer, SendResult

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("prometheus_client", "metrics") from None

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .message import Message

__all__ = [
    "MESSAGE_OUTCOMES",
    "OUTCOMES",
    "REASONS",
    "STATE_VALUES",
    "DriverStateCollector",
    "Metrics",
    "attempt_reason",
    "instrument",
    "metrics_for",
]

#: A message's ``outcome`` label.
MESSAGE_OUTCOMES = ("sent", "rejected", "failed")
#: ``mailfailover_driver_state``: 0 closed (healthy), 1 probing, 2 open (cooling down).
STATE_VALUES = {"healthy": 0, "probing": 1, "cooling_down": 2}
#: Attempt durations, seconds: provider APIs answer in tens of milliseconds to seconds,
#: and a timeout is typically 10 s or more.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class DriverStateCollector(Collector):
    """``mailfailover_driver_state{driver}``, computed from ``mailer.health()`` at scrape.

    It follows any number of mailers (weakly: a mailer that is gone drops out); when two
    report a driver of the same name, the worse state is shown.
    """

    name = "mailfailover_driver_state"
    documentation = "Each driver's circuit: 0 closed (healthy), 1 probing, 2 open (cooling down)."

    def __init__(self, mailers: Iterable[FailoverMailer] = ()) -> None:
        self._lock = threading.Lock()
        self._mailers: weakref.WeakSet[FailoverMailer] = weakref.WeakSet(mailers)

    def add(self, mailer: FailoverMailer) -> None:
        with self._lock:
            self._mailers.add(mailer)

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=["driver"])

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            mailers = list(self._mailers)
        worst: dict[str, int] = {}
        for mailer in mailers:
            for health in mailer.health():
                state = str(getattr(health.state, "value", health.state))
                value = STATE_VALUES.get(state, 2)
                worst[health.name] = max(worst.get(health.name, 0), value)
        family = GaugeMetricFamily(self.name, self.documentation, labels=["driver"])
        for driver, value in worst.items():
            family.add_metric([driver], value)
        yield family


class Metrics:
    """The mailfailover metrics, registered once in one registry; instrument mailers with it.

    In prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before
    prometheus_client is imported) the counters and the histogram are written to that
    directory like any other; ``mailfailover_driver_state`` is computed by the process
    that answers the scrape (see :class:`DriverStateCollector`).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = REGISTRY if registry is None else registry
        self.registry = registry
        self.attempts = Counter(
            "mailfailover_attempts",
            "Attempts to send a message through a driver, by outcome and reason.",
            ["driver", "outcome", "reason"],
            registry=registry,
        )
        self.messages = Counter(
            "mailfailover_messages",
            "Messages sent, rejected by a provider, or failed on every driver.",
            ["outcome"],
            registry=registry,
        )
        self.failovers = Counter(
            "mailfailover_failovers",
            "Messages delivered by a driver other than the first in their order, by why the "
            "first did not deliver.",
            ["driver", "reason"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "mailfailover_send_seconds",
            "Time one attempt spent in a driver (attempts skipped without a call excluded).",
            ["driver"],
            registry=registry,
            buckets=BUCKETS,
        )
        self.states = DriverStateCollector()
        registry.register(self.states)
        self._lock = threading.Lock()
        self._instrumented: weakref.WeakSet[FailoverMailer] = weakref.WeakSet()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: label values are bounded, and looking a
        child up in prometheus_client on every attempt costs more than the count itself."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def instrument(self, mailer: FailoverMailer) -> Callable[[], None]:
        """Count ``mailer``'s attempts and messages; returns a function that stops counting.

        Instrumenting the same mailer twice counts it once (the second call's function
        does nothing).
        """
        with self._lock:
            if mailer in self._instrumented:
                return lambda: None
            self._instrumented.add(mailer)
        self.states.add(mailer)
        # Weakly: the hooks live on the mailer, and must not keep it alive through
        # this registry-wide object.
        ref = weakref.ref(mailer)

        # Names seen in the mailer's configuration (a reload may add some): checked once.
        known: set[str] = set()

        def driver_label(name: str) -> str:
            if name in known:
                return name
            current = ref()
            if current is not None and name in {d.name for d in current.drivers}:
                known.add(name)
                return name
            return OTHER

        child = self._child

        def on_attempt(message: Message, attempt: Attempt) -> None:
            driver = driver_label(attempt.driver)
            outcome = attempt_outcome(attempt)
            child(self.attempts, driver, outcome, attempt_reason(attempt)).inc()
            if outcome in ("sent", "unavailable", "rejected"):
                child(self.send_seconds, driver).observe(max(attempt.elapsed, 0.0))

        def on_result(message: Message, outcome: SendResult | MailError) -> None:
            if isinstance(outcome, SendResult):
                child(self.messages, "sent").inc()
                first = outcome.attempts[0] if outcome.attempts else None
                if first is not None and first.driver != outcome.driver:
                    reason = attempt_reason(first)
                    child(self.failovers, driver_label(outcome.driver), reason).inc()
            elif isinstance(outcome, MessageRejected):
                child(self.messages, "rejected").inc()
            elif isinstance(outcome, AllProvidersFailed):
                child(self.messages, "failed").inc()
            else:
                child(self.messages, OTHER).inc()

        remove = mailer.add_hooks(on_attempt, on_result=on_result)

        def stop() -> None:
            remove()
            with self._lock:
                self._instrumented.discard(mailer)

        return stop


_lock = threading.Lock()
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, Metrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry | None = None) -> Metrics:
    """The one :class:`Metrics` of ``registry`` (default: prometheus_client's), made once."""
    registry = REGISTRY if registry is None else registry
    with _lock:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = Metrics(registry)
        return metrics


def instrument(
    mailer: FailoverMailer, *, registry: CollectorRegistry | None = None
) -> FailoverMailer:
    """Count ``mailer``'s attempts and messages in ``registry`` (default: prometheus_client's
    global one, which ``prometheus_client.start_http_server`` and friends expose).

    Composes with the mailer's own ``on_attempt``: nothing is replaced. Returns the mailer.

    >>> mailer = instrument(FailoverMailer.from_config("config/mail.yml"))  # doctest: +SKIP
    """
    metrics_for(registry).instrument(mailer)
    return mailer
