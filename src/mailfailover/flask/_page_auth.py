"""Who may see the status page and read ``/health``: the API token, three ways.

With an API token configured, ``GET /`` shows nothing but "mailfailover is running" until
the token is given: as ``Authorization: Bearer``, as ``?token=`` or through the page's login
form. The last two answer with a redirect to the bare page (the token leaves the address bar
and the history) and set a cookie holding an HMAC of the token, never the token itself;
that cookie then lets the page read ``/health``. It never authorizes ``/send`` or
``/metrics``, so a cross-site request cannot send mail with it; it is ``HttpOnly`` and
``SameSite=Strict`` besides. Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac

import flask

from ._base import AppState, bearer_credentials, known_token, same_token

__all__ = ["COOKIE", "cookie_value", "has_page_cookie", "page_authorized"]

COOKIE = "mailfailover_status"
#: How long the page's cookie lasts, seconds.
COOKIE_SECONDS = 12 * 3600
_PURPOSE = b"mailfailover status page v1"


def cookie_value(token: str) -> str:
    """What the cookie holds for ``token``: an HMAC, so the token itself is never stored."""
    return hmac.new(token.encode("utf-8"), _PURPOSE, hashlib.sha256).hexdigest()


def has_page_cookie(state: AppState) -> bool:
    """True when the request carries the status page's cookie for the current token."""
    if state.api_token is None:
        return False
    given = flask.request.cookies.get(COOKIE, "")
    try:
        presented = given.encode("ascii")
    except UnicodeEncodeError:
        return False
    return bool(presented) and same_token(presented, cookie_value(state.api_token))


def page_authorized(state: AppState) -> bool:
    """True when no token is configured, or the request proves it knows the token."""
    if state.api_token is None:
        return True
    given = bearer_credentials()
    if given is not None and known_token(state, given, state.api_token):
        return True
    return has_page_cookie(state)


def set_page_cookie(response: flask.Response, state: AppState, path: str) -> None:
    assert state.api_token is not None
    response.set_cookie(
        COOKIE,
        cookie_value(state.api_token),
        max_age=COOKIE_SECONDS,
        path=path,
        secure=flask.request.is_secure,
        httponly=True,
        samesite="Strict",
    )
