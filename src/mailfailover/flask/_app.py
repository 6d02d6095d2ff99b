"""The app factory and the extension: one blueprint holding every route.

Each route lives in its own ``_route_*.py`` module with a ``register(blueprint)`` function;
adding an endpoint is a new module plus one line in :data:`ROUTES`. Imports go one way:
``_server`` -> ``_app`` -> ``_route_*`` -> ``_base`` -> ``_send_request``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
from werkzeug.exceptions import HTTPException

from ..config import HttpConfig, load_config
from ..mailer import FailoverMailer
from . import (
    _route_health,
    _route_messages,
    _route_metrics,
    _route_send,
    _route_status,
    _route_webhooks,
)
from ._activity import Activity, shared_store
from ._auth_guard import AuthGuard
from ._base import (
    EXTENSION_KEY,
    AppState,
    SenderAllowList,
    api_token,
    error_response,
    http_error_response,
    internal_error_response,
)
from ._metrics import adapter_metrics
from ._send_request import ApiError

__all__ = ["ROUTES", "MailFailover", "blueprint", "create_app"]

#: Every route module's ``register``, in the order their rules are added.
ROUTES: tuple[Callable[[flask.Blueprint], None], ...] = (
    _route_send.register,
    _route_health.register,
    _route_metrics.register,
    _route_status.register,
    _route_messages.register,
    _route_webhooks.register,
)

blueprint = flask.Blueprint("mailfailover", "mailfailover.flask")
blueprint.register_error_handler(ApiError, error_response)
blueprint.register_error_handler(HTTPException, http_error_response)
blueprint.register_error_handler(Exception, internal_error_response)
for _register in ROUTES:
    _register(blueprint)


def resolve_http(
    mailer: FailoverMailer | None, config: Any, http: HttpConfig | None
) -> tuple[FailoverMailer, HttpConfig]:
    if mailer is None:
        mailer = FailoverMailer.from_config(config)
        return mailer, http or (mailer.config.http if mailer.config else HttpConfig())
    if http is not None:
        return mailer, http
    if config is not None:
        return mailer, load_config(config).http
    return mailer, mailer.config.http if mailer.config is not None else HttpConfig()


class MailFailover:
    """Mounts ``POST /send``, ``GET /health``, ``GET /metrics`` and the status page ``GET /``
    in a Flask application.

    ``mailer`` is used as given; without it one is built with
    :meth:`FailoverMailer.from_config` from ``config`` (a path, a dict, or ``None`` for the
    default lookup). The adapter's settings come from ``http``, else the ``http:`` section of
    ``config``, else of the mailer's own configuration; the token falls back to
    ``$MAILFAILOVER_API_TOKEN``. ``url_prefix`` mounts the endpoints under a path.

    >>> app = flask.Flask("mailfailover.flask")                                 # doctest: +SKIP
    >>> MailFailover(app, config="config/mail.yml")                  # doctest: +SKIP
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        mailer: FailoverMailer | None = None,
        *,
        config: Any = None,
        http: HttpConfig | None = None,
        url_prefix: str | None = None,
    ) -> None:
        self.mailer = mailer
        self.config = config
        self.http = http
        self.url_prefix = url_prefix
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Register the blueprint and this adapter's state on ``app``."""
        mailer, http = resolve_http(self.mailer, self.config, self.http)
        try:
            state = AppState(
                mailer=mailer,
                api_token=api_token(http),
                allowed_senders=SenderAllowList(http.allowed_senders),
                max_body_bytes=http.max_body_bytes,
                max_recipients=http.max_recipients,
                metrics_token=http.metrics_token,
                activity=Activity(store=shared_store(mailer)),
                metrics=adapter_metrics(mailer),
                outbox=_route_messages.outbox_for(http, mailer, self.config),
                guard=None
                if http.auth_failures is None
                else AuthGuard(mailer.store, http.auth_failures),
            )
            state.activity.follow(mailer)
        except BaseException:
            if self.mailer is None:  # built here: nobody else will close it
                mailer.close()
            raise
        self.mailer = mailer
        app.extensions[EXTENSION_KEY] = state
        app.register_blueprint(blueprint, url_prefix=self.url_prefix)


def create_app(
    mailer: FailoverMailer | None = None,
    *,
    config: Any = None,
    http: HttpConfig | None = None,
) -> flask.Flask:
    """A Flask application serving ``POST /send``, ``GET /health``, ``GET /metrics`` and the
    status page ``GET /``.

    ``mailer`` is used as given; without it one is built from ``config`` (a path, a dict,
    or ``None`` for ``$MAILFAILOVER_CONFIG``, ``./config/mail.yml``, the built-in default).
    Every error this application answers, including 404, 405 and a bug's 500, is JSON.
    """
    app = flask.Flask("mailfailover.flask")
    MailFailover(app, mailer, config=config, http=http)
    state: AppState = app.extensions[EXTENSION_KEY]
    # Also make Werkzeug refuse larger bodies: a second line behind our own check.
    app.config["MAX_CONTENT_LENGTH"] = state.max_body_bytes
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, internal_error_response)
    return app
