"""``GET /``: the status page, one self-contained HTML document; ``POST /``: its login.

The page (``status.html`` beside this module: inline CSS and a little plain JavaScript, no
external assets, no build step) reads ``GET /health?recent=1`` every few seconds. It is
sent with a per-response CSP nonce, so nothing but its own script and style can run, and
``Referrer-Policy: no-referrer``. See :mod:`._page_auth` for who may see it.
"""

from __future__ import annotations

import functools
import html
import logging
import secrets
from importlib import resources

import flask

from ._base import METHODS, AppState, current_state, known_token, other_method
from ._page_auth import page_authorized, set_page_cookie
from ._send_request import ApiError

__all__ = ["register", "status_view"]

logger = logging.getLogger("mailfailover.flask")

_LOGIN_LIMIT = 4096
_INVALID = "That token is not valid."


def register(blueprint: flask.Blueprint) -> None:
    """Add ``/`` to the adapter's blueprint."""
    blueprint.add_url_rule(
        "/", view_func=status_view, methods=METHODS, provide_automatic_options=False
    )


@functools.cache
def _template(name: str) -> str:
    return resources.files(__package__ or "mailfailover.flask").joinpath(name).read_text("utf-8")


def _html(status: int, text: str, nonce: str) -> flask.Response:
    response = flask.Response(text, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def _fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", html.escape(value, quote=True))
    return template


def _gate(status: int, error: str | None) -> flask.Response:
    """Nothing but "mailfailover is running" and the login form."""
    nonce = secrets.token_urlsafe(16)
    page = _fill(_template("status_gate.html"), nonce=nonce, page_url=_page_url())
    notice = "" if error is None else f'<p class="error" role="alert">{html.escape(error)}</p>'
    return _html(status, page.replace("{{error}}", notice), nonce)


def _page() -> flask.Response:
    nonce = secrets.token_urlsafe(16)
    page = _fill(
        _template("status.html"),
        nonce=nonce,
        health_url=flask.url_for(".health_view"),
        send_url=flask.url_for(".send_view"),
    )
    return _html(200, page, nonce)


def _page_url() -> str:
    return flask.url_for(".status_view")


def _redirect() -> flask.Response:
    """303 to the bare page: whatever was in the address (``?token=``) leaves it."""
    response = flask.Response(status=303)
    response.headers["Location"] = _page_url()
    return response


def _enter(state: AppState) -> flask.Response:
    """The token was right: remember it in the cookie and drop it from the address."""
    response = _redirect()
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    set_page_cookie(response, state, _page_url())
    return response


def _refused(where: str) -> flask.Response:
    logger.warning("refused the status page: wrong token (%s)", where)
    return _gate(401, _INVALID)


def status_view() -> flask.Response:
    """``GET /`` shows the page, or only the login form; ``POST /`` is that form. An address
    that gave too many wrong tokens gets the form again, with ``429`` and ``Retry-After``."""
    try:
        return _status_view()
    except ApiError as exc:
        if exc.status != 429:
            raise
        page = _gate(429, exc.message)
        page.headers.update(exc.headers)
        return page


def _status_view() -> flask.Response:
    method = flask.request.method
    if method not in ("GET", "HEAD", "POST"):
        return other_method("GET, HEAD, POST, OPTIONS")
    state = current_state()
    if method == "POST":
        if state.api_token is None:
            return _redirect()
        length = flask.request.content_length
        if length is None:
            return _gate(411, "The login form sends its token with a Content-Length.")
        if length > _LOGIN_LIMIT:
            return _gate(413, "The login form sends only the token.")
        given = flask.request.form.get("token", "")
        if given and known_token(state, given.encode("utf-8"), state.api_token):
            return _enter(state)
        return _refused("login form")
    token = flask.request.args.get("token")
    if token is not None and state.api_token is not None:
        if known_token(state, token.encode("utf-8"), state.api_token):
            return _enter(state)
        return _refused("query parameter")
    if not page_authorized(state):
        return _gate(200, None)
    return _page()
