"""``GET /metrics``: the Prometheus text format (extra ``metrics``).

It needs ``http.metrics_token`` when one is configured (the API token works too), else the
API token when there is one; a scraper given the metrics token cannot send mail.
"""

from __future__ import annotations

import logging

import flask

from ..errors import NOT_FOUND, UNAUTHORIZED
from ._base import (
    METHODS,
    AppState,
    authenticate,
    bearer_credentials,
    current_state,
    known_token,
    other_method,
)
from ._send_request import ApiError

__all__ = ["metrics_view", "register"]

logger = logging.getLogger("mailfailover.flask")


def register(blueprint: flask.Blueprint) -> None:
    """Add ``/metrics`` to the adapter's blueprint."""
    blueprint.add_url_rule(
        "/metrics", view_func=metrics_view, methods=METHODS, provide_automatic_options=False
    )


def _authenticate_metrics(state: AppState) -> None:
    if state.metrics_token is None:
        authenticate(state)
        return
    given = bearer_credentials()
    tokens = [t for t in (state.metrics_token, state.api_token) if t is not None]
    if given is not None and known_token(state, given, *tokens):
        return
    logger.warning("refused GET /metrics: %s", "wrong token" if given else "no bearer token")
    raise ApiError(
        401,
        UNAUTHORIZED,
        "/metrics needs an 'Authorization: Bearer <metrics token>' header",
        "Authorization",
        headers={"WWW-Authenticate": 'Bearer realm="mailfailover"'},
    )


def metrics_view() -> flask.Response:
    """``GET /metrics``: counters from every worker, driver states from this one."""
    if flask.request.method not in ("GET", "HEAD"):
        return other_method("GET, HEAD, OPTIONS")
    state = current_state()
    _authenticate_metrics(state)
    if state.metrics is None:
        raise ApiError(
            404,
            NOT_FOUND,
            'metrics need prometheus_client: pip install "mailfailover[metrics]"',
        )
    body, content_type = state.metrics.exposition()
    response = flask.Response(body, status=200)
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response
