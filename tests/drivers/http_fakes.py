"""Small helpers the HTTP driver tests share (the `mock` fixture is in conftest.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses

from mailfailover.driver import Driver


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


class ResponsesHarness:
    """A ``responses`` mock per test on ``self.mock``, and a ``driver`` fixture built by the
    subclass's ``make`` (and closed after the test)."""

    mock: responses.RequestsMock
    make: Callable[..., Driver]

    @pytest.fixture(autouse=True)
    def _responses(self) -> Iterator[responses.RequestsMock]:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            self.mock = mock
            yield mock

    @pytest.fixture
    def driver(self) -> Iterator[Driver]:
        driver = type(self).make()
        yield driver
        driver.close()
