"""The shared HTTP driver base: the one transport boundary, JSON encoding, Retry-After."""

from __future__ import annotations

import base64
import inspect
import json
import time

import pytest
import requests

from mailfailover import ProviderUnavailable
from mailfailover.drivers import _http
from mailfailover.drivers._http import B64, encode_json, parse_retry_after, transport_error
from mailfailover.testing import connection_refused, connection_reset

CASES = [
    (requests.ConnectTimeout("connect"), "timeout", False),
    (requests.ReadTimeout("read"), "timeout", True),
    (requests.exceptions.SSLError("handshake"), "connection", False),
    (requests.exceptions.ProxyError("proxy"), "connection", False),
    (connection_refused(), "connection", False),
    (connection_reset(), "connection", True),
    (requests.ConnectionError("unknown"), "connection", True),
    (requests.exceptions.ChunkedEncodingError("cut"), "connection", True),
    (requests.exceptions.ContentDecodingError("gzip"), "connection", True),
    (requests.exceptions.InvalidURL("bad"), "connection", False),
    (requests.exceptions.InvalidHeader("bad"), "connection", False),
    (requests.exceptions.MissingSchema("bad"), "connection", False),
    (requests.exceptions.TooManyRedirects("loop"), "connection", False),
    (requests.exceptions.UnrewindableBodyError("rewind"), "connection", False),
    (requests.exceptions.InvalidSchema("ftp"), "connection", False),
    (requests.exceptions.RetryError("retries"), "connection", False),
    (requests.exceptions.HTTPError("status"), "connection", False),
    (requests.exceptions.URLRequired("url"), "connection", False),
    (requests.exceptions.InvalidJSONError("json"), "connection", False),
    (requests.exceptions.StreamConsumedError("consumed"), "connection", False),
]


@pytest.mark.parametrize(("exc", "reason", "ambiguous"), CASES)
def test_transport_errors_map_to_unavailable(
    exc: requests.RequestException, reason: str, ambiguous: bool
) -> None:
    error = transport_error(exc, "d")
    assert isinstance(error, ProviderUnavailable)
    assert (error.reason, error.ambiguous, error.driver) == (reason, ambiguous, "d")


def test_every_requests_exception_is_mapped() -> None:
    """Every concrete RequestException class in requests.exceptions has a case above."""
    covered = {type(exc) for exc, _, _ in CASES}
    classes = {
        cls
        for _, cls in inspect.getmembers(requests.exceptions, inspect.isclass)
        if issubclass(cls, requests.RequestException)
        and cls not in (requests.RequestException,)
        and not issubclass(cls, Warning)
    }
    unmapped = {
        cls
        for cls in classes
        if cls not in covered
        and not any(issubclass(cls, c) for c in covered)
        # abstract bases, and the response-decoding error requests raises from .json()
        and cls not in (requests.ConnectionError, requests.Timeout, requests.JSONDecodeError)
    }
    assert not unmapped, f"add a case for {sorted(c.__name__ for c in unmapped)}"
    for cls in classes:  # and whatever it is, it becomes ProviderUnavailable
        try:
            exc = cls("x")
        except TypeError:
            continue
        assert isinstance(transport_error(exc, "d"), ProviderUnavailable)


def test_encode_json_splices_base64_bytes() -> None:
    payload = {"text": 'grüße "quoted"', "files": [B64(b"\x00\x01hello"), B64(b"")], "n": 1}
    raw = encode_json(payload)
    decoded = json.loads(raw)
    assert decoded == {
        "text": 'grüße "quoted"',
        "files": [base64.b64encode(b"\x00\x01hello").decode(), ""],
        "n": 1,
    }
    assert encode_json({"a": 1}) == b'{"a":1}'
    with pytest.raises(TypeError):
        encode_json({"x": object()})


def test_encode_json_is_not_fooled_by_marker_like_text() -> None:
    raw = encode_json({"t": "0", "f": B64(b"abc")})
    assert json.loads(raw) == {"t": "0", "f": "YWJj"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None), ("", None), ("120", 120.0), (" 5 ", 5.0), ("-3", 0.0),
        ("999999", _http.MAX_RETRY_AFTER), ("soon", None), ("nan", None),
    ],
)  # fmt: skip
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    import email.utils

    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    seconds = parse_retry_after(when)
    assert seconds is not None
    assert 55 <= seconds <= 61
