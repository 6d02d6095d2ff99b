"""The ``mailfailover.deliver`` task and the broker settings it needs.

The task body is one call into :func:`mailfailover.delivery.deliver`; this module only turns
its :class:`~mailfailover.delivery.Outcome` into Celery's vocabulary (return, or
``self.retry``) and keeps one mailer and one store per worker process.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ..config import MailerConfig, QueueConfig, build_drivers, load_config
from ..delivery import DeliveryPolicy, DeliveryRecords, OnDead, deliver
from ..errors import ConfigError, QueueUnavailable
from ..state import StateStore, StoreError, open_store

__all__ = [
    "TASK_NAME",
    "broker_options",
    "configure",
    "install",
    "load_queue_config",
    "publish",
]

logger = logging.getLogger("mailfailover")

TASK_NAME = "mailfailover.deliver"
#: Share of the lease one send may use: the rest is slack for writing the outcome.
SEND_SHARE = 0.8

ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | MailerConfig | None


def load_queue_config(config: ConfigSource) -> tuple[MailerConfig, QueueConfig]:
    """The configuration, which must have a ``queue:`` section."""
    loaded = config if isinstance(config, MailerConfig) else load_config(config)
    if loaded.queue is None:
        raise ConfigError("queued delivery needs a 'queue' section", source=loaded.source)
    return loaded, loaded.queue


def broker_options(queue: QueueConfig) -> dict[str, Any]:
    """Transport options for a Redis (or SQS) broker.

    ``visibility_timeout`` (see :class:`~mailfailover.config.QueueConfig`) decides when a
    task taken by a worker that died is handed to another worker. kombu looks for such
    tasks every ``unacked_restore_interval`` x ``unacked_restore_throttle`` seconds (100 by
    default); a sweep every tenth of the timeout (at most 10 s) keeps redelivery close to it.
    A sweep holds a lock in Redis that outlives a worker killed in the middle of one for
    ``unacked_mutex_expire`` seconds (300 by default), during which nobody restores
    anything: three sweep intervals, at least 5 s, is plenty for a sweep of milliseconds
    (and two overlapping sweeps are harmless: each restore is a Redis transaction).
    """
    timeout = queue.broker_visibility_timeout
    interval = max(min(timeout / 10, 10.0), 0.5)
    return {
        "visibility_timeout": timeout,
        "unacked_restore_interval": interval,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": max(3 * interval, 5.0),
        "socket_connect_timeout": queue.connect_timeout,
    }


def configure(app: Any, queue: QueueConfig, *, own: bool = False) -> None:
    """Give ``app`` the broker settings queued delivery relies on.

    On an application of the user's own (``own=False``) the transport options they set are
    kept, with a warning when their visibility timeout is shorter than the queue needs.
    """
    wanted = broker_options(queue)
    options = dict(app.conf.broker_transport_options or {})
    theirs = options.get("visibility_timeout")
    if not own and theirs is not None and float(theirs) < wanted["visibility_timeout"]:
        logger.warning(
            "broker_transport_options visibility_timeout is %s s; mailfailover's queue needs "
            "at least %s s (queue.backoff_max + queue.lease): a waiting retry may run twice",
            theirs,
            wanted["visibility_timeout"],
        )
    for key, value in wanted.items():
        options.setdefault(key, value)
    app.conf.broker_transport_options = options
    app.conf.broker_connection_timeout = queue.connect_timeout
    route = {TASK_NAME: {"queue": queue.name}}
    routes = app.conf.task_routes
    if routes is None:
        app.conf.task_routes = route
    elif isinstance(routes, Mapping):
        app.conf.task_routes = {**route, **routes}
    else:  # a router or a list of them: ours goes first
        app.conf.task_routes = (route, *(routes if isinstance(routes, (list, tuple)) else [routes]))
    if own:
        app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            result_backend=None,
            task_ignore_result=True,
            worker_prefetch_multiplier=1,
            worker_hijack_root_logger=False,
            broker_connection_retry_on_startup=True,
            task_default_queue=queue.name,
        )


#: How often a publish is tried when the broker refuses the connection.
PUBLISH_TRIES = 2


def publish(task: Any, queue: QueueConfig, data: Mapping[str, Any], enqueued_at: float) -> None:
    """Put one delivery task for ``data`` on the queue, or raise QueueUnavailable."""
    from kombu.exceptions import OperationalError

    from ..config import _redact_url

    try:
        task.apply_async(
            args=(dict(data),),
            kwargs={"enqueued_at": enqueued_at},
            serializer="json",
            queue=queue.name,
            retry=True,
            retry_policy={
                "max_retries": PUBLISH_TRIES - 1,
                "interval_start": 0.1,
                "interval_step": 0.2,
                "interval_max": 0.2,
            },
        )
    except (OperationalError, OSError) as exc:  # refused, reset, timed out
        raise QueueUnavailable(
            f"the queue's broker ({_redact_url(queue.broker)}) did not take the "
            f"message: {type(exc).__name__}"
        ) from None


class _Runtime:
    """What one worker process needs: a mailer and the records, built after the fork."""

    def __init__(
        self,
        config: MailerConfig,
        queue: QueueConfig,
        *,
        mailer: Any = None,
        store: StateStore | None = None,
        on_dead: OnDead | None = None,
    ) -> None:
        self.config = config
        self.queue = queue
        self.policy = DeliveryPolicy.from_queue_config(queue)
        self.on_dead = on_dead
        self._given_mailer = mailer
        self._given_store = store
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._mailer: Any = None
        self._records: DeliveryRecords | None = None

    def parts(self) -> tuple[Any, DeliveryRecords]:
        with self._lock:
            if self._pid != os.getpid() or self._records is None:
                # A forked pool process must not share its parent's sockets.
                self._records = DeliveryRecords(
                    self._given_store or open_store(self.config.state), keep=self.queue.keep
                )
                self._mailer = self._given_mailer or _build_mailer(self.config, self.queue)
                self._pid = os.getpid()
            return self._mailer, self._records


def _build_mailer(config: MailerConfig, queue: QueueConfig) -> Any:
    from ..mailer import FailoverMailer

    options = config.mailer_options()
    # One send must end well inside its lease, or a second worker could take the message
    # while the first is still talking to a provider.
    budget = queue.lease * SEND_SHARE
    options["deadline"] = min(options.get("deadline") or budget, budget)
    drivers = build_drivers(config)
    try:
        return FailoverMailer(drivers, **options)
    except BaseException:
        for driver in drivers:
            driver.close()
        raise


def install(
    app: Any,
    config: ConfigSource = None,
    *,
    on_dead: Callable[[str, dict[str, Any]], object] | None = None,
    mailer: Any = None,
    store: StateStore | None = None,
    _own: bool = False,
) -> Any:
    """Register the task ``mailfailover.deliver`` on ``app`` (a ``celery.Celery``).

    ``config`` is a path, a mapping or a :class:`~mailfailover.config.MailerConfig` with a
    ``queue:`` section. ``on_dead(message_id, record)`` is called when a message is given up.
    ``mailer`` and ``store`` replace the ones the configuration would build (for tests and
    for applications that already have them). Returns the task. Workers must consume the
    queue named by ``queue.name`` (``mailfailover`` by default): ``celery -A proj worker
    -Q celery,mailfailover``.
    """
    loaded, queue = load_queue_config(config)
    configure(app, queue, own=_own)
    runtime = _Runtime(loaded, queue, mailer=mailer, store=store, on_dead=on_dead)

    @app.task(  # type: ignore[untyped-decorator]
        name=TASK_NAME,
        bind=True,
        # At least once: acknowledged only after the body ran, and given back to the broker
        # when the pool process running it dies. The delivery record makes it exactly once.
        acks_late=True,
        reject_on_worker_lost=True,
        serializer="json",
        max_retries=None,
        ignore_result=True,
        shared=False,
    )
    def deliver_task(self: Any, message: dict[str, Any], enqueued_at: float | None = None) -> str:
        try:
            mailer_, records = runtime.parts()
            outcome = deliver(
                message,
                mailer=mailer_,
                records=records,
                policy=runtime.policy,
                token=uuid.uuid4().hex,
                enqueued_at=enqueued_at,
                on_dead=runtime.on_dead,
            )
        except StoreError as exc:
            # Nothing was sent: the records could not be read or written. Come back later.
            logger.warning("the state store failed (%s); the message waits", exc)
            raise self.retry(countdown=runtime.policy.backoff, max_retries=None) from None
        except Exception:
            # A bug, or a mailer that could not be built: a failed task would be acknowledged
            # and its message gone, so it comes back after the backoff instead.
            logger.exception("a delivery try failed unexpectedly; the message waits")
            raise self.retry(countdown=runtime.policy.backoff, max_retries=None) from None
        if outcome.action == "retry":
            raise self.retry(countdown=outcome.countdown, max_retries=None)
        return outcome.status

    deliver_task.mailfailover_runtime = runtime
    deliver_task.mailfailover_sweeper = _sweep_while_working(app, loaded, queue, deliver_task,
                                                             store)  # fmt: skip
    return deliver_task


def _sweep_while_working(
    app: Any, config: MailerConfig, queue: QueueConfig, task: Any, store: StateStore | None
) -> Any:
    """Run the sweep for lost tasks (:mod:`._sweep`) in each worker of ``app``."""
    from celery import signals

    from ._sweep import Sweeper

    sweeper = Sweeper(config, queue, lambda data, at: publish(task, queue, data, at), store=store)

    def started(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            sweeper.start()

    def stopping(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            sweeper.stop()

    signals.worker_ready.connect(started, weak=False)
    signals.worker_shutdown.connect(stopping, weak=False)
    return sweeper
