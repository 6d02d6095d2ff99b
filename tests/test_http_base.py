"""The shared HTTP driver base: the one transport boundary, JSON encoding, Retry-After."""

from __future__ import annotations

import base64
import json
import time

import pytest

from mailfailover.drivers import _wire
from mailfailover.drivers._wire import B64, encode_json, parse_retry_after


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
        ("999999", _wire.MAX_RETRY_AFTER), ("soon", None), ("nan", None),
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


HTTP_PROVIDERS = ("brevo", "mailgun", "mailjet", "mandrill", "postmark", "resend", "sendgrid",
                  "sparkpost")  # fmt: skip


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_provider_modules_do_not_import_requests(name: str) -> None:
    """A provider module is sans-I/O: it imports neither requests nor urllib3, and importing
    it (with the shared base) loads neither; only building a driver loads the transport."""
    import ast
    import importlib.util
    import subprocess
    import sys

    spec = importlib.util.find_spec(f"mailfailover.drivers.{name}")
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert not imported & {"requests", "urllib3", "httpx"}, imported
    code = (
        f"import sys, mailfailover.drivers.{name}\n"
        "assert 'requests' not in sys.modules and 'urllib3' not in sys.modules, 'loaded'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
