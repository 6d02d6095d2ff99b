"""The shared base of every HTTP-API driver.

It owns everything that is the same for every provider: the transport (a pooled
``requests.Session`` in :mod:`._requests`, the only module that touches ``requests``), the
``base_url`` / regional endpoint, connect and read timeouts (shortened to the mailer's
deadline), the default classification of HTTP statuses and the shared rule for account
problems, ``Retry-After`` parsing, the limits every provider declares (tag alphabet,
forbidden headers, one Reply-To), and the error arguments every provider passes. A
provider module then holds only its field mapping (:meth:`HttpDriver.build_request`),
where its message id is (:attr:`HttpDriver.message_id_path` or
:meth:`HttpDriver.parse_success`) and its error table (:attr:`HttpDriver.error_codes`,
and :meth:`HttpDriver.classify` for what a table cannot say).

Provider modules are sans-I/O: they build :class:`~._wire.HttpRequest` and read
:class:`~._wire.HttpResponse`, never a ``requests`` object.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn

from ..driver import (
    Driver,
    Receipt,
    Setting,
    estimated_size,
    is_account_problem,
    pool_size_setting,
    remaining_time,
    timeout_setting,
)
from ..errors import DeliveryError, MessageRejected, ProviderUnavailable
from ..message import Message
from ._wire import (
    B64,
    MAX_RETRY_AFTER,
    Headers,
    HttpRequest,
    HttpResponse,
    encode_json,
    parse_retry_after,
    seconds_until,
)

if TYPE_CHECKING:
    from ._aiohttp import AiohttpTransport
    from ._requests import RequestsTransport

__all__ = [
    "B64",
    "HTTP_SETTINGS",
    "MAX_RETRY_AFTER",
    "HttpDriver",
    "HttpRequest",
    "HttpResponse",
    "Outcome",
    "batch_size_setting",
    "encode_json",
    "parse_retry_after",
    "seconds_until",
]

#: Settings every HTTP driver takes; a provider adds its own with ``{**HTTP_SETTINGS, ...}``.
HTTP_SETTINGS: Mapping[str, Setting] = {
    "base_url": Setting(None, help="scheme and host replacing the provider's (proxies, tests)"),
    "timeout": timeout_setting(10.0, help="seconds to wait for the provider's answer"),
    "connect_timeout": timeout_setting(5.0, help="seconds to wait for a connection"),
    "pool_size": pool_size_setting(10, help="connections kept open per driver", minimum=1),
}


def batch_size_setting(maximum: int, endpoint: str) -> Setting:
    """The ``batch_size`` setting of a driver with a batch endpoint: messages per request
    in ``send_many``, from 1 (batching off) to the provider's documented ``maximum``, which
    is the default."""
    help = f"messages per {endpoint} in send_many (1: off)"
    return Setting(maximum, int, minimum=1, maximum=maximum, help=help)


#: What an entry of an error table means: ``rejected`` is :class:`MessageRejected`, every
#: other value a :class:`ProviderUnavailable` with that ``reason``.
Outcome = Literal["rejected", "auth", "account", "rate_limited", "server_error", "timeout"]
_WAITS: frozenset[str] = frozenset({"rate_limited", "server_error", "timeout"})
#: The headers of each item of a batch answer read as a single answer (read-only, shared).
_JSON_HEADERS = Headers({"Content-Type": "application/json"})


class HttpDriver(Driver):
    """Base class of HTTP-API drivers.

    A subclass sets ``default_base_url`` (and ``regional_base_urls`` when the provider has
    regions, chosen by a ``region`` setting), implements :meth:`build_request`, says where
    the provider's id is (``message_id_path``, or its own :meth:`parse_success`), and
    declares its error table in ``error_codes`` (provider code → :data:`Outcome`), with
    :meth:`classify` for the cases a table cannot express.
    """

    settings_spec: ClassVar[Mapping[str, Setting]] = HTTP_SETTINGS
    async_requires: ClassVar[tuple[tuple[str, str], ...]] = (("aiohttp", "async"),)
    default_base_url: ClassVar[str] = ""
    regional_base_urls: ClassVar[Mapping[str, str]] = {}
    #: Where the provider's message id is in its JSON answer (keys from the top), for the
    #: default :meth:`parse_success`; empty when a subclass reads the answer itself.
    message_id_path: ClassVar[tuple[str, ...]] = ()
    #: The provider's error codes (as :meth:`error_detail` returns them) and their meaning.
    error_codes: ClassVar[Mapping[str | int, Outcome]] = {}
    #: The provider's documented maximum of messages per batch request; a driver with a
    #: batch endpoint sets it, declares :func:`batch_size_setting` and implements
    #: :meth:`batch_request` and :meth:`read_batch` (1: no batch endpoint).
    max_batch: ClassVar[int] = 1
    #: The provider's cap on one batch request's size in bytes (None: none documented).
    max_batch_bytes: ClassVar[int | None] = None
    #: Whether the provider documents that a batch request it refuses as a whole (an
    #: answer that is not :meth:`batch_answer` and reads as a rejection) sent none of its
    #: messages. Then each message is sent again alone, to get its own verdict: the refusal
    #: may be one message's fault, or the batch's own (too big), and no message can go twice.
    rejected_batch_sent_nothing: ClassVar[bool] = False

    def __init__(self, *, name: str, **settings: Any) -> None:
        super().__init__(name=name, **settings)
        self.transport = self.make_transport()
        self._async_transport: AiohttpTransport | None = None

    def make_transport(self) -> RequestsTransport:
        """The transport that carries requests; the ``requests`` one, imported here only."""
        from ._requests import RequestsTransport

        return RequestsTransport(pool_size=int(self.settings["pool_size"]) or 1)

    @property
    def async_transport(self) -> AiohttpTransport:
        """The ``aiohttp`` transport :meth:`asend` uses, made on first use (extra ``async``)."""
        if self._async_transport is None:
            from ..driver import require

            require("aiohttp", "async", driver=self.name)
            from ._aiohttp import AiohttpTransport

            self._async_transport = AiohttpTransport(pool_size=int(self.settings["pool_size"]) or 1)
        return self._async_transport

    # -- what a provider module implements ---------------------------------------------

    def build_request(self, message: Message) -> HttpRequest:
        """Map ``message`` to the provider's documented request."""
        raise NotImplementedError

    def parse_success(self, response: HttpResponse, message: Message) -> Receipt:
        """Read the provider's id from a 2xx; raise :meth:`bad_response` if it is not one.

        The default reads the JSON object's :attr:`message_id_path`, which must hold a
        non-empty string.
        """
        if not self.message_id_path:
            raise NotImplementedError("set message_id_path or implement parse_success")
        body = self.json_object(response)
        return Receipt(
            driver=self.name,
            message_id=self.required_id(body, self.message_id_path, response),
            response=dict(body),
        )

    def classify(
        self, response: HttpResponse, detail: str, code: str | int | None
    ) -> DeliveryError | None:
        """Provider-specific classification of an error answer; ``None`` uses the table
        (:attr:`error_codes`) and then the defaults (:meth:`default_error`)."""
        return None

    def error_detail(self, response: HttpResponse) -> tuple[str, Any]:
        """The provider's reason and error code from an error body (JSON or text)."""
        body = response.json
        if isinstance(body, Mapping):
            for key in ("message", "Message", "error", "ErrorMessage", "detail"):
                value = body.get(key)
                if isinstance(value, str) and value:
                    return value, body.get("code", body.get("ErrorCode"))
            errors = body.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
                first = errors[0]
                return str(first.get("message") or first.get("description") or first), first.get(
                    "code"
                )
        text = response.text.strip() if body is None else _json_text(body)
        return (text[:500] or response.reason or f"HTTP {response.status}"), None

    # -- the send path -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        configured = self.settings.get("base_url")
        if configured:
            return str(configured).rstrip("/")
        region = self.settings.get("region")
        if region is not None and region in self.regional_base_urls:
            return self.regional_base_urls[region]
        return self.default_base_url

    def send(self, message: Message) -> Receipt:
        request = self.prepare(message)
        return self.read_answer(self.post(request), message)

    # -- batches ---------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        if self.max_batch <= 1:
            return 1
        return int(self.settings.get("batch_size") or 1)

    def batchable(self, message: Message) -> bool:
        """Whether the batch endpoint carries ``message`` whole (else it goes alone)."""
        return True

    def batch_request(self, requests: Sequence[HttpRequest]) -> HttpRequest:
        """One request carrying the single-message ``requests`` (no I/O)."""
        raise NotImplementedError

    def batch_answer(self, response: HttpResponse) -> bool:
        """Whether ``response`` answers each message of the batch (then :meth:`read_batch`
        reads it) rather than the request as a whole (then :meth:`error_for` does).

        The default: a 2xx. A provider that reports a batch with refused messages with a
        4xx whose body still holds every message's result overrides it (Mailjet).
        """
        return 200 <= response.status < 300

    def read_batch(
        self, response: HttpResponse, messages: Sequence[Message]
    ) -> list[Receipt | DeliveryError]:
        """Each message's receipt or error from a :meth:`batch_answer`, in order (no I/O)."""
        raise NotImplementedError

    def send_batch(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        """Send ``messages`` in one batch request where the provider has one.

        A message the provider's checks refuse, or that the batch endpoint cannot carry
        whole (:meth:`batchable`), gets its own error or its own request; the others go in
        requests of at most :attr:`batch_size` messages. An answer about each message
        (:meth:`batch_answer`) gives each its own receipt or error (:meth:`read_batch`). An
        error for the whole request (a transport failure, an error answer, an answer that
        cannot be read) becomes each carried message's own copy of that error, ambiguity
        included, except a refusal of a request that sent nothing
        (:attr:`rejected_batch_sent_nothing`): each of its messages is then sent alone.
        The sans-I/O part is :meth:`batch_exchange`.
        """
        exchange = self.batch_exchange(messages)
        try:
            request = next(exchange)
            while True:
                answer: HttpResponse | Exception
                try:
                    answer = self.post(request)
                except Exception as exc:
                    answer = exc
                request = exchange.send(answer)
        except StopIteration as done:
            result: list[Receipt | Exception] = done.value
            return result
        finally:
            exchange.close()

    async def asend_batch(self, messages: Sequence[Message]) -> list[Receipt | Exception]:
        """:meth:`send_batch` on the ``aiohttp`` transport: the same requests and the same
        reading of each answer (:meth:`batch_exchange`); only the I/O differs."""
        exchange = self.batch_exchange(messages)
        try:
            request = next(exchange)
            while True:
                answer: HttpResponse | Exception
                try:
                    answer = await self.apost(request)
                except Exception as exc:
                    answer = exc
                request = exchange.send(answer)
        except StopIteration as done:
            result: list[Receipt | Exception] = done.value
            return result
        finally:
            exchange.close()

    def batch_exchange(
        self, messages: Sequence[Message]
    ) -> Generator[HttpRequest, HttpResponse | Exception, list[Receipt | Exception]]:
        """:meth:`send_batch` without I/O: yields each request to make (a batch, or a
        message alone), is sent back the answer or the exception posting it raised, and
        returns each message's receipt or error, in order."""
        out: list[Receipt | Exception | None] = [None] * len(messages)
        carried: list[int] = []
        requests: list[HttpRequest] = []
        batching = self.batch_size > 1
        for index, message in enumerate(messages):
            try:
                request = self.prepare(message)
            except Exception as exc:
                out[index] = exc
                continue
            if batching and self.batchable(message):
                carried.append(index)
                requests.append(request)
            else:
                out[index] = self._read_one((yield request), message)
        request_of = dict(zip(carried, requests, strict=True))
        for part in self._parts(carried, messages):
            group = [messages[index] for index in part]
            singles = [request_of[index] for index in part]
            answers: list[Receipt | Exception]
            if len(part) == 1:
                answers = [self._read_one((yield singles[0]), group[0])]
            else:
                answers = yield from self._exchange_part(singles, group)
            for index, answer in zip(part, answers, strict=True):
                out[index] = answer
        done = [answer for answer in out if answer is not None]
        assert len(done) == len(messages)  # every message got its answer
        return done

    def _exchange_part(
        self, requests: Sequence[HttpRequest], messages: Sequence[Message]
    ) -> Generator[HttpRequest, HttpResponse | Exception, list[Receipt | Exception]]:
        """One batch request for ``messages`` (built from their single ``requests``)."""
        try:
            batch = self.batch_request(requests)
        except Exception as exc:
            return _copies(exc, len(messages))
        response = yield batch
        if isinstance(response, Exception):
            return _copies(response, len(messages))
        try:
            if self.batch_answer(response):
                answers: list[Receipt | Exception] = list(self.read_batch(response, messages))
                if len(answers) != len(messages):
                    raise self.bad_batch(f"{len(answers)} results for {len(messages)} messages")
                return answers
            error = self.error_for(response)
        except Exception as exc:
            return _copies(exc, len(messages))
        if not (isinstance(error, MessageRejected) and self.rejected_batch_sent_nothing):
            return _copies(error, len(messages))
        # Refused as a whole, and the provider sent none of it: each alone, for its verdict.
        alone: list[Receipt | Exception] = []
        for request, message in zip(requests, messages, strict=True):
            alone.append(self._read_one((yield request), message))
        return alone

    def _parts(self, carried: list[int], messages: Sequence[Message]) -> list[list[int]]:
        """``carried`` cut into requests of at most ``batch_size`` messages and, when the
        provider caps a batch's size, at most :attr:`max_batch_bytes` (estimated)."""
        parts: list[list[int]] = []
        size = 0
        for index in carried:
            weight = estimated_size(messages[index]) if self.max_batch_bytes else 0
            full = parts and (
                len(parts[-1]) >= self.batch_size
                or (self.max_batch_bytes and size + weight > self.max_batch_bytes)
            )
            if not parts or full:
                parts.append([])
                size = 0
            parts[-1].append(index)
            size += weight
        return parts

    def _read_one(self, answer: HttpResponse | Exception, message: Message) -> Receipt | Exception:
        """A message sent alone: its receipt, or the error of its answer or of its post."""
        if isinstance(answer, Exception):
            return answer
        try:
            return self.read_answer(answer, message)
        except Exception as exc:
            return exc

    def bad_batch(self, detail: str) -> ProviderUnavailable:
        """A 2xx batch answer that cannot be read: the provider may have taken any of the
        messages, so each is ambiguous."""
        return ProviderUnavailable(
            f"unexpected batch answer from the provider: {detail}",
            reason="bad_response", driver=self.name, ambiguous=True,
        )  # fmt: skip

    def item_answer(
        self, item: Any, message: Message, *, failed: bool, status: int | None = None
    ) -> Receipt | DeliveryError:
        """One message's part of a batch answer, read as the provider's answer to a single
        send (200 for a success; for an error ``status``, by default 422): the same parsing,
        the same error table. ``item`` is handed over as the answer's parsed JSON (no
        encoding and parsing back)."""
        status = (status or 422) if failed else 200
        response = HttpResponse.of_json(status, item, _JSON_HEADERS)
        try:
            return self.read_answer(response, message)
        except DeliveryError as exc:
            return exc

    def prepare(self, message: Message) -> HttpRequest:
        """Check the provider's limits, then build its request (no I/O)."""
        self.check_limits(message)
        return self.build_request(message)

    def read_answer(self, response: HttpResponse, message: Message) -> Receipt:
        """The receipt for a 2xx, else raise the error the answer stands for (no I/O)."""
        if 200 <= response.status < 300:
            return self.parse_success(response, message)
        raise self.error_for(response)

    async def asend(self, message: Message) -> Receipt:
        """:meth:`send` on the ``aiohttp`` transport: the same request, the same reading of
        the answer, the same errors; only the I/O differs."""
        request = self.prepare(message)
        return self.read_answer(await self.apost(request), message)

    async def apost(self, request: HttpRequest) -> HttpResponse:
        """:meth:`post` on the ``aiohttp`` transport; the mailer's deadline also bounds the
        whole exchange."""
        return await self.async_transport.send(
            request,
            url=self.base_url + request.path,
            timeout=self.timeouts(),
            total=remaining_time(),
            driver=self.name,
            secrets=self.secret_values(),
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        """Send ``request``; every transport failure leaves as :class:`ProviderUnavailable`."""
        return self.transport.send(
            request,
            url=self.base_url + request.path,
            timeout=self.timeouts(),
            driver=self.name,
            secrets=self.secret_values(),
        )

    def timeouts(self) -> tuple[float, float]:
        connect = float(self.settings["connect_timeout"])
        read = float(self.settings["timeout"])
        left = remaining_time()
        if left is not None:
            connect, read = min(connect, left), min(read, left)
        return connect, read

    # -- classification ------------------------------------------------------------------

    def error_for(self, response: HttpResponse) -> DeliveryError:
        """Turn a non-2xx answer into the right :class:`DeliveryError`: :meth:`classify`,
        then the :attr:`error_codes` table, then :meth:`default_error`."""
        detail, code = self.error_detail(response)
        specific = self.classify(response, detail, code)
        if specific is not None:
            return specific.with_driver(self.name)
        if isinstance(code, (str, int)) and code in self.error_codes:
            return self.error(self.error_codes[code], detail, response, code)
        return self.default_error(response, detail, code)

    def default_error(
        self, response: HttpResponse, detail: str, code: str | int | None
    ) -> DeliveryError:
        """The status-based classification shared by every provider.

        429 is ``rate_limited``; 401/403 ``auth``; 402 ``account``; 404, 405, 408, 3xx and
        5xx unavailable; any other 4xx a rejection. A 4xx whose reason matches the shared
        account rule (:func:`~mailfailover.driver.is_account_problem`: unverified sender or
        domain, suspended, no credits, sandbox...) is ``account`` instead of ``auth`` or a
        rejection: another provider may well send it.
        """
        status = response.status
        if status == 429:
            return self.error("rate_limited", detail, response, code)
        if status == 402 or (400 <= status < 500 and is_account_problem(detail)):
            return self.error("account", detail, response, code)
        if status in (401, 403):
            return self.error("auth", detail, response, code)
        if status == 408:
            return self.error("timeout", detail, response, code)
        if status in (404, 405) or status >= 500 or 300 <= status < 400:
            return self.error("server_error", detail, response, code)
        return self.error("rejected", detail, response, code)

    def error(
        self,
        outcome: Outcome,
        detail: str,
        response: HttpResponse,
        code: str | int | None = None,
        *,
        retry_after: float | None = None,
    ) -> DeliveryError:
        """The error for ``outcome``, carrying this driver's name, the status, the provider's
        code and parsed body; ``rate_limited``, ``server_error`` and ``timeout`` read the
        provider's wait (:meth:`retry_after`) unless ``retry_after`` is given."""
        kwargs: dict[str, Any] = {
            "driver": self.name, "status": response.status, "provider_code": code,
            "response": response.json,
        }  # fmt: skip
        if outcome == "rejected":
            return MessageRejected(detail, **kwargs)
        if retry_after is None and outcome in _WAITS:
            retry_after = self.retry_after(response)
        return ProviderUnavailable(detail, reason=outcome, retry_after=retry_after, **kwargs)

    def retry_after(self, response: HttpResponse) -> float | None:
        """Seconds the provider asked us to wait (``Retry-After``); providers add their own."""
        return parse_retry_after(response.headers.get("Retry-After"))

    # -- helpers for provider modules ------------------------------------------------------

    def bad_response(self, detail: str, response: HttpResponse) -> NoReturn:
        """Raise for a 2xx that is not the provider's success answer: nothing was accepted."""
        raise ProviderUnavailable(
            f"unexpected answer from the provider: {detail}",
            reason="bad_response",
            driver=self.name,
            status=response.status,
            response=response.text[:200],
        )

    def json_object(self, response: HttpResponse) -> Mapping[str, Any]:
        """The 2xx body as a JSON object, or :meth:`bad_response`."""
        body = response.json
        if not isinstance(body, Mapping):
            self.bad_response("the body is not a JSON object", response)
        return body

    def required_id(
        self, body: Mapping[str, Any], path: tuple[str, ...], response: HttpResponse
    ) -> str:
        """The non-empty string at ``path`` in ``body``, or :meth:`bad_response` naming it."""
        value: Any = body
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if not isinstance(value, str) or not value:
            self.bad_response(f"the answer has no {'.'.join(path)}", response)
        return value

    def close(self) -> None:
        self.transport.close()
        if self._async_transport is not None:
            self._async_transport.close()

    async def aclose(self) -> None:
        self.transport.close()
        if self._async_transport is not None:
            await self._async_transport.aclose()


def _json_text(body: Any) -> str:
    return json.dumps(body)[:500]


def _copies(error: Exception, count: int) -> list[Receipt | Exception]:
    """``error`` for each of ``count`` messages: each its own copy (its own attempts)."""
    return [error, *(copy.copy(error) for _ in range(count - 1))]
