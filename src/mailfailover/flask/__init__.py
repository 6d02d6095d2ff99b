"""The HTTP adapter: the original email service's ``POST /send``, on Flask (extra ``flask``).

:func:`create_app` builds a small Flask application; :class:`MailFailover` mounts the same
endpoints in an application of your own; :func:`serve` (``mailfailover serve``) runs it under
gunicorn. The adapter only parses, authenticates, limits, maps the request to a
:class:`~mailfailover.Message` and maps the outcome to a response; everything else is the
library's. ``docs/http.md`` documents every field, code and status.

Secure by default:

- when an API token is configured (``http.api_token`` or ``$MAILFAILOVER_API_TOKEN``),
  ``/send`` and ``/health`` need ``Authorization: Bearer <token>``, compared in constant
  time; without one, :func:`serve` refuses to listen on anything but loopback;
- ``http.allowed_senders`` restricts who a request may send as (403 otherwise);
- the body limit (``http.max_body_bytes``, 25 MiB) is checked against ``Content-Length``
  before anything is read, and a body without one (chunked) is read only up to the limit;
- the request is parsed by hand (JSON, urlencoded and multipart alike), strictly: every
  malformed, mistyped or hostile input gets a 4xx with the original service's codes, and the
  :class:`~mailfailover.Message` constructor's validation (the header-injection guard) runs
  before any driver sees anything;
- nothing logged contains a body, an attachment or a token.

The package: ``_send_request`` parses a body into a message; ``_base`` holds what every
route shares (state, JSON errors, authentication, the bounded read); each ``_route_*``
module adds one endpoint; ``_app`` builds the blueprint from :data:`~._app.ROUTES` and the
app; ``_server`` runs it under gunicorn. Imports only go down that list.
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependency

try:  # absolute imports: this is the real Flask, not this package
    import flask  # noqa: F401
    import werkzeug  # noqa: F401
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("flask", "flask") from None

from ._app import MailFailover, create_app
from ._base import API_TOKEN_ENV, SenderAllowList
from ._send_request import FIELDS

__all__ = [
    "API_TOKEN_ENV",
    "FIELDS",
    "MailFailover",
    "SenderAllowList",
    "create_app",
    "serve",
]


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8025,
    workers: int = 2,
    threads: int = 4,
    config: Any = None,
) -> int:
    """Run the adapter under gunicorn until SIGTERM (``mailfailover serve``).

    The configuration is checked before anything listens (exit code 2 when it is wrong, or
    when there is no API token and ``host`` is not loopback); SIGHUP reloads it. See
    :func:`mailfailover.flask._server.serve`.
    """
    from ._server import serve as run

    return run(host=host, port=port, workers=workers, threads=threads, config=config)
