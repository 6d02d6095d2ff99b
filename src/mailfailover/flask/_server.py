"""``mailfailover serve``: the HTTP adapter under gunicorn, with SIGHUP reloads.

The master checks the configuration before anything listens; without an API token it
refuses any address but loopback. On SIGHUP it re-reads and checks the configuration and,
when it is valid, gunicorn replaces the workers gracefully (in-flight requests finish on the
old ones); an invalid one is logged and the running configuration kept. prometheus_client
runs in multiprocess mode (see :mod:`._multiprocess`), so ``GET /metrics`` adds up every
worker's counts.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

import flask

from ..config import MailerConfig, build_drivers, load_config
from ..errors import ConfigError
from ..mailer import FailoverMailer
from ._app import create_app
from ._base import API_TOKEN_ENV, EXTENSION_KEY, SenderAllowList, api_token
from ._multiprocess import mark_worker_dead, multiprocess_metrics

logger = logging.getLogger("mailfailover.flask")

EXIT_USAGE = 2
#: gunicorn's access log line without the query string (``/?token=`` must never be logged)
#: nor the Referer (a page's address could carry one).
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"'


def _is_loopback(host: str) -> bool:
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_config(config: MailerConfig, host: str) -> None:
    """Everything a worker needs must build, and no token means loopback only."""
    for driver in build_drivers(config):
        driver.close()
    SenderAllowList(config.http.allowed_senders)
    if api_token(config.http) is None and not _is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without an API token: set {API_TOKEN_ENV} or "
            "http.api_token in the configuration, or listen on 127.0.0.1"
        )


def _app_from_config(config: MailerConfig) -> flask.Flask:
    """What each gunicorn worker runs: a fresh mailer from the master's validated config."""
    drivers = build_drivers(config)
    mailer = FailoverMailer(drivers, **config.mailer_options())
    app = create_app(mailer, http=config.http)
    logger.info("worker %d ready, drivers: %s", os.getpid(), ", ".join(d.name for d in drivers))
    return app


def _post_fork(server: Any, worker: Any) -> None:
    # Until the worker installs its own handlers it runs the master's, which would only
    # queue a SIGTERM sent now (at shutdown, just after a spawn) and leave the worker
    # running until gunicorn's graceful timeout kills it. The default action is right: a
    # worker that has not started serving has nothing to finish.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _close_worker_mailer(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get(EXTENSION_KEY)
    if state is not None:
        if state.activity is not None:
            state.activity.close()  # the status page's queued attempts go to the store
        state.mailer.close()


def _setup_logging() -> None:
    """Our records next to gunicorn's on standard error, at INFO, once."""
    library = logging.getLogger("mailfailover")
    if any(not isinstance(h, logging.NullHandler) for h in library.handlers):
        return  # the package's own NullHandler does not count
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "%Y-%m-%d %H:%M:%S %z",
        )
    )
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False


def _cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound, or None. Checked before gunicorn starts: gunicorn
    retries a busy address for seconds and then exits 1, the code of a failed send, where
    this is a usage problem (exit 2)."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        return f"cannot resolve the host ({exc.strerror or exc})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8025,
    workers: int = 2,
    threads: int = 4,
    config: Any = None,
) -> int:
    """Run the adapter under gunicorn (``gthread`` workers) until SIGTERM or SIGINT.

    The master validates the configuration first (exit code 2 if it is wrong, or if there
    is no API token and ``host`` is not loopback). Each worker builds its own mailer from
    the master's validated configuration. ``SIGHUP`` re-reads the configuration in the
    master and, when it is valid, gracefully replaces the workers: in-flight requests finish
    on the old ones, new requests reach workers built from the new configuration. An invalid
    configuration is logged and the previous one is kept. Returns gunicorn's exit status.
    """
    problems = []
    if not 0 <= port <= 65535:
        problems.append(f"--port must be between 0 and 65535, not {port}")
    if workers < 1:
        problems.append("--workers must be at least 1")
    if threads < 1:
        problems.append("--threads must be at least 1")
    if problems:
        print(f"mailfailover serve: {problems[0]}", file=sys.stderr)
        return EXIT_USAGE
    try:
        loaded = load_config(config)
        _check_config(loaded, host)
    except ConfigError as exc:
        print(f"mailfailover serve: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    busy = _cannot_listen(host, port)
    if busy is not None:
        print(f"mailfailover serve: cannot listen on {host}:{port}: {busy}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging()
    bind = f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "bind": [bind],
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "graceful_timeout": 30,
        "timeout": 60,
        "keepalive": 5,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "mailfailover",
        "post_fork": _post_fork,
        "worker_exit": _close_worker_mailer,
        "child_exit": mark_worker_dead,
        "control_socket_disable": True,  # gunicorn >= 24; skipped where unknown
    }
    with multiprocess_metrics():
        server = _gunicorn_server(options, loaded, config, host)
        try:
            server.run()
        except SystemExit as exc:
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _gunicorn_server(
    options: Mapping[str, Any], loaded: MailerConfig, source: Any, host: str
) -> Any:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def __init__(self) -> None:
            self.options = dict(options)
            self.loaded = loaded
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Callable[..., Any]:
            return _app_from_config(self.loaded)

        def reload(self) -> None:
            try:
                fresh = load_config(source)
                _check_config(fresh, host)
            except ConfigError as exc:
                logger.error("configuration not reloaded, keeping the previous one: %s", exc)
            else:
                self.loaded = fresh
                logger.info("configuration reloaded from %s", fresh.source)
            super().reload()

    return Server()
