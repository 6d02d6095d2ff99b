"""Local stand-ins for the providers, shared by the benchmarks and the reliability tests.

Everything here listens on 127.0.0.1 on a port the kernel picks, and nothing else.

* :class:`StandInServer` — a threaded HTTP/1.1 server (keep-alive, ``TCP_NODELAY``) that
  answers each provider's documented path with that provider's documented success answer,
  and can be told, for the next requests or for all of them, to answer anything else:
  a status and body, hang without answering, or reset the connection before or in the
  middle of its answer. It counts what it received and can record each request.
* :data:`PROVIDERS` — one row per bundled HTTP driver: the settings it needs (fake keys),
  the path it posts to, and the provider's documented success, validation-error,
  authentication-error and rate-limit answers. Point a driver at a server with
  ``base_url=server.url``; :func:`http_drivers` lists the rows whose driver is importable.
* :func:`closed_port` (connections refused) and :func:`silent_listener` (connections
  accepted by the kernel, never answered).
* ``python bench/_servers.py http [--flap SEED:UP_SHARE] [--id-pattern RE] [--latency S]``
  / ``smtp`` / ``smtp-fast [--pipelining] [--latency S]``
  runs a server in its own process (so a client under test does not share a GIL, or
  tracemalloc, with its server), printing its port on the first line and exiting when its
  standard input closes; :func:`spawn` does this, :func:`stats` asks it what it received.
  :class:`Flapper` takes a server down (5xx) and up at random, seeded moments.

``smtp-fast`` is a small asyncio SMTP sink (no aiosmtpd) that can offer PIPELINING and
delay every reply by a fixed one-way latency, as a network would: a reply leaves ``S``
seconds after its command arrived, replies to pipelined commands overlap, and the order is
kept. ``XSTATS`` answers what it received (:func:`smtp_stats`).

No third-party module is imported at module level: the HTTP server is the standard
library's, and the SMTP one (``aiosmtpd``, from the ``test`` extra) is imported only by
``smtp`` mode.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import itertools
import json
import os
import random
import re
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PROVIDERS",
    "Answer",
    "Flapper",
    "Provider",
    "StandInServer",
    "closed_port",
    "http_drivers",
    "silent_listener",
    "smtp_stats",
    "spawn",
    "stats",
]

HOST = "127.0.0.1"


# -- answers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, body (bytes, or anything JSON-serialisable) and headers."""

    status: int
    body: Any = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


#: Behaviours other than an :class:`Answer`.
SUCCESS = "success"  # the provider's documented success answer, chosen by the request path
HANG = "hang"  # read the request, never answer (until the server stops or hang_seconds pass)
RESET = "reset"  # read the request, then reset the connection without a byte of answer
RESET_MID = "reset_mid"  # send the status line, headers and part of the body, then reset

Behaviour = Answer | str


# -- the provider table --------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """How to point one HTTP driver at a stand-in server, and what its provider answers.

    ``success`` builds the documented success answer from a running request number (ids
    must differ); ``rejections`` are documented validation-error answers (the message is
    refused: no failover); ``auth_errors`` documented bad-key / forbidden answers;
    ``malformed`` a 2xx that is not the provider's API (a captive portal, a wrong URL).
    """

    driver: str
    settings: Mapping[str, Any]
    path: str  # a regular expression matched against the request path
    success: Callable[[int], Answer]
    rejections: tuple[Answer, ...]
    auth_errors: tuple[Answer, ...]
    rate_limited: Answer
    malformed: Answer = Answer(
        200, b"<html><body>Welcome to nginx!</body></html>", content_type="text/html"
    )
    #: Fake credentials, recognisable so tests can search logs and errors for them.
    secrets: tuple[str, ...] = ()

    def driver_class(self) -> type:
        """The driver class, through the entry-point registry (raises if not installed)."""
        from mailfailover.registry import load_driver

        return load_driver(self.driver)

    def make(self, base_url: str, *, name: str | None = None, **overrides: Any) -> Any:
        """A driver instance pointed at ``base_url``."""
        settings = {**self.settings, "base_url": base_url, **overrides}
        return self.driver_class()(name=name or self.driver, **settings)


def _key(provider: str) -> str:
    # Shaped like nothing real, and unique enough to search for in logs.
    return f"FAKE-{provider}-KEY-0b1c7e2f9d"


RATE = (("Retry-After", "7"),)

PROVIDERS: dict[str, Provider] = {
    "sendgrid": Provider(
        driver="sendgrid",
        settings={"api_key": _key("sendgrid")},
        secrets=(_key("sendgrid"),),
        path=r"^/v3/mail/send$",
        success=lambda n: Answer(202, b"", (("X-Message-Id", f"sg-{n:08d}"),)),
        rejections=(
            Answer(
                400,
                {
                    "errors": [
                        {
                            "message": "The from email does not contain a valid address.",
                            "field": "from.email",
                            "help": "http://sendgrid.com/docs/API_Reference/",
                        }
                    ]
                },
            ),
        ),
        auth_errors=(
            Answer(
                401,
                {
                    "errors": [
                        {
                            "message": "The provided authorization grant is invalid, "
                            "expired, or revoked",
                            "field": None,
                            "help": None,
                        }
                    ]
                },
            ),
            Answer(403, {"errors": [{"message": "access forbidden", "field": None, "help": None}]}),
        ),
        rate_limited=Answer(429, {"errors": [{"message": "too many requests"}]}, RATE),
        malformed=Answer(
            202, b"<html><body>Welcome to nginx!</body></html>", content_type="text/html"
        ),
    ),
    "mailgun": Provider(
        driver="mailgun",
        settings={"api_key": _key("mailgun"), "domain": "mg.example.com"},
        secrets=(_key("mailgun"),),
        path=r"^/v3/[^/]+/messages$",
        success=lambda n: Answer(
            200, {"id": f"<mg-{n:08d}@mg.example.com>", "message": "Queued. Thank you."}
        ),
        rejections=(
            Answer(
                400,
                {"message": "'to' parameter is not a valid address. please check documentation"},
            ),
        ),
        auth_errors=(
            Answer(401, b"Forbidden", content_type="text/plain"),
            Answer(
                403,
                {
                    "message": "Domain mg.example.com is not allowed to send: Free "
                    "accounts are for test purposes only."
                },
            ),
        ),
        rate_limited=Answer(429, {"message": "Too many requests"}, RATE),
        malformed=Answer(200, b"Mailgun Magnificent API", content_type="text/plain"),
    ),
    "postmark": Provider(
        driver="postmark",
        settings={"server_token": _key("postmark")},
        secrets=(_key("postmark"),),
        path=r"^/email$",
        success=lambda n: Answer(
            200,
            {
                "To": "rcpt@example.com",
                "SubmittedAt": "2026-01-01T00:00:00Z",
                "MessageID": f"0a129aee-e1cd-480d-b08d-{n:012d}",
                "ErrorCode": 0,
                "Message": "OK",
            },
        ),
        rejections=(
            Answer(422, {"ErrorCode": 300, "Message": "Invalid 'From' address: 'nobody'."}),
        ),
        auth_errors=(
            Answer(
                401, {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}
            ),
        ),
        rate_limited=Answer(429, {"ErrorCode": 429, "Message": "Rate limit exceeded."}, RATE),
    ),
    "mandrill": Provider(
        driver="mandrill",
        settings={"api_key": _key("mandrill")},
        secrets=(_key("mandrill"),),
        path=r"^/api/1\.0/messages/send(\.json)?$",
        success=lambda n: Answer(
            200,
            [
                {
                    "email": "rcpt@example.com",
                    "status": "sent",
                    "reject_reason": None,
                    "_id": f"md{n:030d}",
                }
            ],
        ),
        # Mandrill reports a validation error with HTTP 500: the body decides.
        rejections=(
            Answer(
                500,
                {
                    "status": "error",
                    "code": -2,
                    "name": "ValidationError",
                    "message": 'Validation error: {"message":{"from_email":'
                    '"An email address must contain a single @"}}',
                },
            ),
        ),
        auth_errors=(
            Answer(
                401,
                {
                    "status": "error",
                    "code": -1,
                    "name": "Invalid_Key",
                    "message": "Invalid API key",
                },
            ),
        ),
        rate_limited=Answer(429, b"Too Many Requests", RATE, content_type="text/plain"),
    ),
    "mailjet": Provider(
        driver="mailjet",
        settings={"api_key": _key("mailjet"), "secret_key": _key("mailjet-secret")},
        secrets=(_key("mailjet"), _key("mailjet-secret")),
        path=r"^/v3\.1/send$",
        success=lambda n: Answer(
            200,
            {
                "Messages": [
                    {
                        "Status": "success",
                        "CustomID": "",
                        "Errors": [],
                        "To": [
                            {
                                "Email": "rcpt@example.com",
                                "MessageUUID": f"mj-{n:08d}",
                                "MessageID": 1152921500000000000 + n,
                                "MessageHref": "https://api.mailjet.com/v3/REST/message/1",
                            }
                        ],
                        "Cc": [],
                        "Bcc": [],
                    }
                ]
            },
        ),
        rejections=(
            Answer(
                400,
                {
                    "Messages": [
                        {
                            "Status": "error",
                            "Errors": [
                                {
                                    "ErrorIdentifier": "f987008f-251a-4dff-8ffc-40f1583ad30c",
                                    "ErrorCode": "mj-0013",
                                    "StatusCode": 400,
                                    "ErrorMessage": '"nobody" is an invalid email address.',
                                    "ErrorRelatedTo": ["To[0].Email"],
                                }
                            ],
                        }
                    ]
                },
            ),
        ),
        auth_errors=(
            Answer(
                401,
                {
                    "ErrorIdentifier": "06df1144-c6f3-4ca7-8885-7ec5d4344113",
                    "ErrorCode": "mj-0015",
                    "StatusCode": 401,
                    "ErrorMessage": "API key authentication/authorization failure. You "
                    "may be unauthorized to access the API or your API "
                    "key may be expired. Visit API keys management "
                    "section to check your keys.",
                },
            ),
        ),
        rate_limited=Answer(
            429,
            {
                "ErrorIdentifier": "1",
                "ErrorCode": "mj-0002",
                "StatusCode": 429,
                "ErrorMessage": "Too many requests",
            },
            RATE,
        ),
    ),
    "sparkpost": Provider(
        driver="sparkpost",
        settings={"api_key": _key("sparkpost")},
        secrets=(_key("sparkpost"),),
        path=r"^/api/v1/transmissions$",
        success=lambda n: Answer(
            200,
            {
                "results": {
                    "total_rejected_recipients": 0,
                    "total_accepted_recipients": 1,
                    "id": f"{7000000000000000 + n}",
                }
            },
        ),
        rejections=(
            Answer(
                422,
                {
                    "errors": [
                        {
                            "message": "required field is missing",
                            "description": "recipients or list_id required",
                            "code": "1400",
                        }
                    ]
                },
            ),
        ),
        auth_errors=(
            Answer(401, {"errors": [{"message": "Unauthorized."}]}),
            Answer(403, {"errors": [{"message": "Forbidden."}]}),
        ),
        rate_limited=Answer(429, {"errors": [{"message": "Too many requests"}]}, RATE),
    ),
    "resend": Provider(
        driver="resend",
        settings={"api_key": _key("resend")},
        secrets=(_key("resend"),),
        path=r"^/emails$",
        success=lambda n: Answer(200, {"id": f"49a3999c-0ce1-4ea6-ab68-{n:012d}"}),
        rejections=(
            Answer(
                422,
                {
                    "statusCode": 422,
                    "name": "validation_error",
                    "message": "Invalid `to` field. The email address needs to follow "
                    "the `email@example.com` or `Name <email@example.com>` "
                    "format.",
                },
            ),
        ),
        auth_errors=(
            Answer(
                401,
                {
                    "statusCode": 401,
                    "name": "missing_api_key",
                    "message": "Missing API key in the authorization header.",
                },
            ),
            Answer(
                403, {"statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"}
            ),
        ),
        rate_limited=Answer(
            429,
            {"statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests."},
            (("retry-after", "7"),),
        ),
    ),
    "brevo": Provider(
        driver="brevo",
        settings={"api_key": _key("brevo")},
        secrets=(_key("brevo"),),
        path=r"^/v3/smtp/email$",
        success=lambda n: Answer(201, {"messageId": f"<2026{n:08d}.1@smtp-relay.mailin.fr>"}),
        rejections=(
            Answer(400, {"code": "invalid_parameter", "message": "email is not valid in to"}),
        ),
        auth_errors=(
            Answer(401, {"code": "unauthorized", "message": "Key not found"}),
            Answer(403, {"code": "permission_denied", "message": "permission denied"}),
        ),
        rate_limited=Answer(
            429, {"code": "too_many_requests", "message": "Too many requests"}, RATE
        ),
    ),
}


def http_drivers() -> tuple[list[Provider], dict[str, str]]:
    """The providers whose driver can be imported now, and why each other one cannot."""
    ready: list[Provider] = []
    missing: dict[str, str] = {}
    for provider in PROVIDERS.values():
        try:
            provider.driver_class()
        except Exception as exc:  # not written yet, or broken: reported, never fatal
            missing[provider.driver] = f"{type(exc).__name__}: {exc}"
        else:
            ready.append(provider)
    return ready, missing


# -- the HTTP server -----------------------------------------------------------------------


@dataclass
class Request:
    """One request as the server received it (``path`` is the request target: an absolute
    URL when the server was used as a proxy)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real provider
    disable_nagle_algorithm = True  # TCP_NODELAY: no 40 ms delayed-ACK stalls
    server: StandInServer

    def do_POST(self) -> None:
        self.server.handle(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StandInServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A provider stand-in on 127.0.0.1; see the module docstring.

    ``default`` is the behaviour for every request; :meth:`then` queues one-shot
    behaviours that come first. ``record`` keeps every request (method, path, headers,
    body); with ``record=False`` only counts are kept and bodies are read in chunks and
    dropped, so a 30 MB request costs no memory. ``id_pattern`` (bytes regex) collects, for
    each request answered with a 2xx, the first match in its body into :attr:`ids` (the
    soak test finds each message's ``Message-ID`` this way, whatever the provider's format).
    ``GET /_stats`` answers the counts as JSON (for a server in another process).
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        *,
        record: bool = True,
        id_pattern: bytes | None = None,
        hang_seconds: float = 10.0,
        latency: float = 0.0,
    ) -> None:
        super().__init__((HOST, 0), _Handler)
        self.latency = latency  # seconds to think before each answer, as a provider does
        self.record = record
        self.id_pattern = None if id_pattern is None else re.compile(id_pattern)
        self.hang_seconds = hang_seconds
        self.default: Behaviour = SUCCESS
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.requests: list[Request] = []
        #: Requests received whole, and those answered with a 2xx.
        self.received = 0
        self.accepted = 0
        self.bytes_received = 0
        #: Messages carried by the successful requests (a batch counts each of its messages).
        self.messages = 0
        self.ids: list[bytes | None] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- control ----------------------------------------------------------------------

    def then(self, *behaviours: Behaviour) -> StandInServer:
        """Queue behaviours for the next requests, in order; then ``default`` again."""
        with self._lock:
            self._script.extend(behaviours)
        return self

    def reset(self, default: Behaviour = SUCCESS) -> None:
        """Forget what was received and queued; answer ``default`` from now on."""
        with self._lock:
            self.default = default
            self._script.clear()
            self.requests.clear()
            self.ids.clear()
            self.received = self.accepted = self.bytes_received = self.messages = 0

    def start(self) -> StandInServer:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"stand-in:{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging handlers
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (its timeout, a reset we caused) is not news

    # -- serving ----------------------------------------------------------------------

    def handle(self, handler: _Handler) -> None:
        if handler.path == "/_stats":
            with self._lock:
                stats = {
                    "received": self.received,
                    "accepted": self.accepted,
                    "bytes_received": self.bytes_received,
                    "messages": self.messages,
                    "ids": [None if i is None else i.decode() for i in self.ids],
                }
            self._answer(handler, Answer(200, stats))
            return
        body = self._read_body(handler)
        with self._lock:
            behaviour = self._script.popleft() if self._script else self.default
            number = next(self._numbers)
            self.received += 1
            if self.record:
                self.requests.append(
                    Request(handler.command, handler.path, dict(handler.headers), body)
                )
        if self.latency:
            self._stopping.wait(self.latency)
        if behaviour == SUCCESS:
            # As a proxy, the request target is the absolute URL: route on its path.
            path = urllib.parse.urlsplit(handler.path).path
            batch = _BATCHES.get(path)
            if batch is None:
                behaviour = _success(path, number)
                carried = 1
            else:  # a batch endpoint: one documented result per message it carried
                count, make = batch
                carried = count(json.loads(body))
                behaviour = make(carried, number)
            with self._lock:
                self.messages += carried
        if isinstance(behaviour, Answer):
            if 200 <= behaviour.status < 300:
                found = self.id_pattern.search(body) if self.id_pattern else None
                with self._lock:
                    self.accepted += 1
                    if self.id_pattern is not None:
                        self.ids.append(found.group(0) if found else None)
            self._answer(handler, behaviour)
        elif behaviour == HANG:
            self._stopping.wait(self.hang_seconds)
            handler.close_connection = True
        elif behaviour == RESET:
            _reset(handler)
        elif behaviour == RESET_MID:
            handler.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 400\r\n\r\n{"id": "partial'
            )
            handler.wfile.flush()
            _reset(handler)
        else:
            raise ValueError(f"unknown behaviour {behaviour!r}")

    def _read_body(self, handler: _Handler) -> bytes:
        length = int(handler.headers.get("Content-Length") or 0)
        path = urllib.parse.urlsplit(handler.path).path
        if self.record or self.id_pattern is not None or path in _BATCHES:
            body = handler.rfile.read(length)
            with self._lock:
                self.bytes_received += len(body)
            return body
        left = length
        while left > 0:
            chunk = handler.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        with self._lock:
            self.bytes_received += length - left
        return b""

    @staticmethod
    def _answer(handler: _Handler, answer: Answer) -> None:
        body = answer.encoded()
        handler.send_response(answer.status)
        handler.send_header("Content-Type", answer.content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in answer.headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)


def _success(path: str, number: int) -> Answer:
    """The success answer of the provider whose documented path this is (else a 404)."""
    for provider in PROVIDERS.values():
        if re.match(provider.path, path):
            return provider.success(number)
    return Answer(404, {"message": f"no provider stand-in serves {path}"})


def _postmark_batch(count: int, number: int) -> Answer:
    """``POST /email/batch``: 200 and one result per message, in order."""
    return Answer(200, [
        {"ErrorCode": 0, "Message": "OK", "MessageID": f"b7bc2f4a-{number:08d}-{i:04d}",
         "SubmittedAt": "2026-03-01T12:00:00.0000000Z", "To": "rcpt@example.com"}
        for i in range(count)
    ])  # fmt: skip


def _resend_batch(count: int, number: int) -> Answer:
    """``POST /emails/batch``: ``{"data": [{"id"}...]}`` in request order."""
    return Answer(200, {"data": [{"id": f"49a3999c-{number:08d}-{i:04d}"} for i in range(count)]})


def _mailjet_batch(count: int, number: int) -> Answer:
    """``POST /v3.1/send``: 200 and one ``success`` entry per message of ``Messages``, in
    order (a single message gets the provider table's answer)."""
    if count == 1:
        return PROVIDERS["mailjet"].success(number)
    return Answer(200, {"Messages": [
        {"Status": "success", "CustomID": "", "Errors": [], "Cc": [], "Bcc": [],
         "To": [{"Email": "rcpt@example.com", "MessageUUID": f"mj-{number:08d}-{i:04d}",
                 "MessageID": 1152921500000000000 + number * 100 + i,
                 "MessageHref": "https://api.mailjet.com/v3/REST/message/1"}]}
        for i in range(count)
    ]})  # fmt: skip


#: Batch paths: how many messages a request body carries, and the answer for that many.
_BATCHES: dict[str, tuple[Callable[[Any], int], Callable[[int, int], Answer]]] = {
    "/email/batch": (len, _postmark_batch),
    "/emails/batch": (len, _resend_batch),
    "/v3.1/send": (lambda body: len(body["Messages"]), _mailjet_batch),
}


def _reset(handler: _Handler) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), not a polite FIN."""
    handler.close_connection = True
    sock = handler.connection
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


# -- sockets that fail -----------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    probe = socket.create_server((HOST, 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


@contextlib.contextmanager
def silent_listener(backlog: int = 64) -> Iterator[str]:
    """A base URL whose connections the kernel accepts and nobody ever answers."""
    listener = socket.create_server((HOST, 0), backlog=backlog)
    try:
        yield f"http://{HOST}:{listener.getsockname()[1]}"
    finally:
        listener.close()


# -- servers in their own process ------------------------------------------------------------


@contextlib.contextmanager
def spawn(kind: str, *args: str) -> Iterator[int]:
    """Run ``python _servers.py KIND`` in a child process; yield its port; stop it after."""
    with subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), kind, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            line = child.stdout.readline()
            if not line.strip().isdigit():
                raise RuntimeError(f"the {kind} stand-in did not start (said {line!r})")
            yield int(line)
        finally:
            child.stdin.close()  # the child exits when its standard input closes
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


class Flapper(threading.Thread):
    """Switches a stand-in between up (success) and down (a 5xx) at random, seeded moments
    ``min_gap`` to ``max_gap`` seconds apart; up with probability ``up_share``."""

    DOWN = (
        Answer(503, b"upstream unavailable", content_type="text/plain"),
        Answer(500, {"message": "internal error"}),
    )

    def __init__(
        self,
        server: StandInServer,
        seed: int,
        up_share: float,
        min_gap: float = 0.002,
        max_gap: float = 0.03,
    ) -> None:
        super().__init__(daemon=True, name=f"flapper:{server.port}")
        self.server = server
        self.random = random.Random(seed)
        self.up_share = up_share
        self.gaps = (min_gap, max_gap)
        self.stopped = threading.Event()
        self.flips = 0

    def run(self) -> None:
        while not self.stopped.wait(self.random.uniform(*self.gaps)):
            up = self.random.random() < self.up_share
            self.server.default = SUCCESS if up else self.random.choice(self.DOWN)
            self.flips += 1

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        self.server.default = SUCCESS


def _serve_http(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="_servers.py http")
    parser.add_argument("--id-pattern", help="regex; /_stats lists each accepted body's match")
    parser.add_argument("--flap", metavar="SEED:UP_SHARE", help="go down and up at random")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    options = parser.parse_args(args)
    pattern = None if options.id_pattern is None else options.id_pattern.encode()
    server = StandInServer(record=False, id_pattern=pattern, latency=options.latency)
    server.start()
    flapper = None
    if options.flap:
        seed, up_share = options.flap.split(":")
        flapper = Flapper(server, int(seed), float(up_share))
        flapper.start()
    print(server.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    if flapper is not None:
        flapper.stop()
    server.stop()


def stats(port: int) -> dict[str, Any]:
    """What a stand-in in another process has received (``GET /_stats``)."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/_stats", timeout=10) as answer:
        return dict(json.loads(answer.read()))


def _serve_smtp(args: list[str]) -> None:
    import logging
    import ssl

    # aiosmtpd logs a warning on every AUTH (its own Session.login_data is deprecated).
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    parser = argparse.ArgumentParser(prog="_servers.py smtp")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="offer STARTTLS")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="require AUTH (after TLS)")
    options = parser.parse_args(args)

    class Sink:
        received = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Sink.received += 1
            return f"250 2.0.0 Ok: queued as Q{Sink.received:07d}"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        expected = (options.auth or "").encode()
        given = data.login + b":" + data.password if isinstance(data, LoginPassword) else b""
        return AuthResult(success=given == expected)

    kwargs: dict[str, Any] = {"data_size_limit": 64 << 20}
    if options.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*options.tls)
        kwargs.update(tls_context=context, require_starttls=True)
    if options.auth:
        kwargs.update(auth_required=True, authenticator=authenticate)
    probe = socket.create_server((HOST, 0))
    port = int(probe.getsockname()[1])
    probe.close()
    # server_hostname: without it aiosmtpd calls socket.getfqdn() for every connection.
    controller = Controller(
        Sink(), hostname=HOST, port=port, server_hostname="stand-in.localhost", **kwargs
    )
    controller.start()
    print(port, flush=True)
    sys.stdin.read()
    controller.stop()


class _FastSMTP:
    """One connection of the ``smtp-fast`` sink (an asyncio protocol)."""

    totals = {"connections": 0, "messages": 0, "reads": 0, "commands": 0}

    def __init__(self, pipelining: bool, latency: float) -> None:
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.pipelining, self.latency = pipelining, latency
        self.buffer = bytearray()
        self.in_data = False
        self.due: deque[tuple[float, bytes]] = deque()  # replies waiting for their time
        self.timer: Any = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.totals["connections"] += 1
        self.reply("220 stand-in.localhost ESMTP")

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def eof_received(self) -> bool:
        return False

    def data_received(self, data: bytes) -> None:
        self.totals["reads"] += 1
        self.buffer += data
        while self.buffer:
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):
                    end, skip = 0, 3
                else:
                    end = self.buffer.find(b"\r\n.\r\n")
                    skip = 5
                    if end < 0:
                        return
                del self.buffer[: end + skip]
                self.in_data = False
                self.totals["messages"] += 1
                self.reply(f"250 2.0.0 Ok: queued as Q{self.totals['messages']:07d}")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self.command(line)

    def command(self, line: bytes) -> None:
        self.totals["commands"] += 1
        verb = line[:4].upper()
        if verb == b"EHLO":
            extensions = ["SIZE 67108864", "8BITMIME", *(["PIPELINING"] if self.pipelining else [])]
            lines = ["stand-in.localhost", *extensions]
            text = "\r\n".join(f"250-{x}" for x in lines[:-1]) + f"\r\n250 {lines[-1]}"
            self.reply(text)
        elif verb == b"DATA":
            self.in_data = True
            self.reply("354 End data with <CR><LF>.<CR><LF>")
        elif verb == b"QUIT":
            self.reply("221 Bye")
            self.later(self.transport.close)
        elif verb == b"XSTA":
            self.reply("250 " + json.dumps(self.totals))
        elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            self.reply("250 OK")
        else:
            self.reply("502 not implemented")

    def reply(self, text: str) -> None:
        data = text.encode() + b"\r\n"
        if not self.latency:
            self.transport.write(data)
            return
        self.due.append((self.loop.time() + self.latency, data))
        if self.timer is None:
            self.timer = self.loop.call_at(self.due[0][0], self.release)

    def later(self, action: Callable[[], None]) -> None:
        if self.latency:
            self.loop.call_later(self.latency * 1.01, action)
        else:
            action()

    def release(self) -> None:
        """Write every reply whose time has come, in order; wait for the next one."""
        self.timer = None
        now = self.loop.time()
        out = bytearray()
        while self.due and self.due[0][0] <= now:
            out += self.due.popleft()[1]
        if out and not self.transport.is_closing():
            self.transport.write(bytes(out))
        if self.due:
            self.timer = self.loop.call_at(self.due[0][0], self.release)


def _serve_smtp_fast(args: list[str]) -> None:
    import asyncio

    parser = argparse.ArgumentParser(prog="_servers.py smtp-fast")
    parser.add_argument("--pipelining", action="store_true", help="offer PIPELINING")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    options = parser.parse_args(args)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _FastSMTP(options.pipelining, options.latency), HOST, 0
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes it
        server.close()

    asyncio.run(main())


def smtp_stats(port: int) -> dict[str, int]:
    """What an ``smtp-fast`` sink has received so far (its ``XSTATS`` command)."""
    import smtplib

    with smtplib.SMTP(HOST, port, local_hostname="bench.localhost", timeout=10) as client:
        code, reply = client.docmd("XSTATS")
    if code != 250:
        raise RuntimeError(f"XSTATS: {code} {reply!r}")
    return dict(json.loads(reply))


if __name__ == "__main__":
    modes = {"http": _serve_http, "smtp": _serve_smtp, "smtp-fast": _serve_smtp_fast}
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(modes)}}}")
    modes[sys.argv[1]](sys.argv[2:])
