"""``GET /health``: each driver's state, for load balancers, monitoring and the status page."""

from __future__ import annotations

import time

import flask

from ._base import METHODS, authenticate, current_state, json_response, other_method
from ._page_auth import has_page_cookie

__all__ = ["health_view", "register"]

_YES = ("1", "true", "yes")


def register(blueprint: flask.Blueprint) -> None:
    """Add ``/health`` to the adapter's blueprint."""
    blueprint.add_url_rule(
        "/health", view_func=health_view, methods=METHODS, provide_automatic_options=False
    )


def health_view() -> flask.Response:
    """``GET /health``: each driver's state (names and counters, never settings).

    Each driver also has ``last_success`` and ``last_failure`` (Unix times, or null);
    ``?recent=1`` adds the last 100 attempts: this process's, or every process's when the
    mailer's health lives in a shared store (see :mod:`._activity`). The status page's
    cookie is accepted besides the bearer token.
    """
    if flask.request.method not in ("GET", "HEAD"):
        return other_method("GET, HEAD, OPTIONS")
    state = current_state()
    if not has_page_cookie(state):
        authenticate(state)
    activity = state.activity
    drivers = [health.to_dict() for health in state.mailer.health()]
    times = activity.times() if activity is not None else {}
    for driver in drivers:
        seen = times.get(str(driver["name"]), {})
        driver.setdefault("last_success", seen.get("last_success"))
        driver.setdefault("last_failure", seen.get("last_failure"))
    healthy = sum(1 for d in drivers if d["state"] == "healthy")
    status = "ok" if healthy == len(drivers) else ("degraded" if healthy else "down")
    payload: dict[str, object] = {
        "status": status,
        "drivers": drivers,
        "time": round(time.time(), 3),
    }
    if activity is not None and flask.request.args.get("recent", "").lower() in _YES:
        payload["recent"] = activity.recent()
        payload["recent_scope"] = "shared" if activity.store is not None else "process"
    return json_response(200, payload)
