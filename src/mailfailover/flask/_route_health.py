"""``GET /health``: each driver's state, for load balancers and monitoring."""

from __future__ import annotations

import flask

from ._base import METHODS, authenticate, current_state, json_response, other_method

__all__ = ["health_view", "register"]


def register(blueprint: flask.Blueprint) -> None:
    """Add ``/health`` to the adapter's blueprint."""
    blueprint.add_url_rule(
        "/health", view_func=health_view, methods=METHODS, provide_automatic_options=False
    )


def health_view() -> flask.Response:
    """``GET /health``: each driver's state (names and counters, never settings)."""
    if flask.request.method not in ("GET", "HEAD"):
        return other_method("GET, HEAD, OPTIONS")
    state = current_state()
    authenticate(state)
    drivers = [health.to_dict() for health in state.mailer.health()]
    healthy = sum(1 for d in drivers if d["state"] == "healthy")
    status = "ok" if healthy == len(drivers) else ("degraded" if healthy else "down")
    return json_response(200, {"status": status, "drivers": drivers})
