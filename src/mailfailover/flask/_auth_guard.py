"""Wrong tokens cost time: a client address that keeps guessing is made to wait.

Each wrong token a client address gives (``POST /send``, ``GET /health``, ``/messages``,
``/metrics``, the status page's form, ``?token=`` and bearer) takes a slot of its budget,
``http.auth_failures`` (default ``10/min``: ten at once, then one every six seconds), kept
as a GCRA budget in the mailer's state store, so every worker and host sharing the store
shares it. While an address has no slot left, every request of it that gives a token is
answered ``429`` with ``Retry-After``, *before* the token is compared: a right token is
refused too, so the answers tell a guesser nothing. A request without a token is never
counted. The address is Werkzeug's ``remote_addr``: behind a reverse proxy, that is the
proxy's unless the app is wrapped in ``werkzeug.middleware.proxy_fix.ProxyFix``. A state
store that fails lets the request through (logged): it never stops mail.
"""

from __future__ import annotations

import hashlib
import logging
import math

import flask

from ..errors import UNAUTHORIZED
from ..ratelimit import Rate, RateLimiter
from ..state import StateStore, StoreError
from ._send_request import ApiError

__all__ = ["AuthGuard"]

logger = logging.getLogger("mailfailover.flask")


class AuthGuard:
    """The wrong-token budget of each client address, in ``store``."""

    def __init__(self, store: StateStore, rate: Rate) -> None:
        self.store = store
        self.rate = rate

    def _limiter(self) -> RateLimiter:
        address = flask.request.remote_addr or "unknown"
        # A digest: an address is kept as no more than a key, whatever it holds.
        key = "authfail:" + hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:32]
        return RateLimiter(self.store, key, self.rate, burst=self.rate.count)

    def check(self) -> None:
        """Raise the ``429`` while this request's address has no wrong guess left."""
        try:
            wait = self._limiter().wait()
        except StoreError as exc:
            logger.warning("the wrong-token budget could not be read; not enforced: %s", exc)
            return
        if wait > 0:
            seconds = max(math.ceil(wait), 1)
            logger.warning("refused %s %s: too many wrong tokens from this address",
                           flask.request.method, flask.request.path)  # fmt: skip
            raise ApiError(
                429,
                UNAUTHORIZED,
                f"too many wrong tokens from this address; try again in {seconds} s",
                "Authorization",
                headers={"Retry-After": str(seconds)},
            )

    def failed(self) -> None:
        """Count a wrong token against this request's address."""
        try:
            self._limiter().reserve(0.0)
        except StoreError as exc:
            logger.warning("the wrong-token budget could not be written: %s", exc)
