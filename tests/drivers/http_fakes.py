"""Small helpers the HTTP driver tests share (the `mock` fixture is in conftest.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import responses


def b64(data: bytes) -> str:
    """What a JSON API expects for an attachment's bytes."""
    return base64.b64encode(data).decode("ascii")


def payload(call: Any) -> Any:
    """The JSON body of one recorded `responses` call."""
    body = call.request.body
    assert isinstance(body, bytes)
    return json.loads(body.decode("utf-8"))


def sent_json(mock: responses.RequestsMock, index: int = -1) -> Any:
    """The JSON body of the `index`-th request the mock received."""
    return payload(mock.calls[index])
