"""Helpers shared by the reliability suite's modules."""

from __future__ import annotations

from typing import Any

import pytest
from _servers import PROVIDERS, http_drivers

READY, MISSING = http_drivers()


def provider_params() -> list[Any]:
    """One param per HTTP driver in the stand-in table; a driver that cannot be imported is
    skipped with the reason why, never silently dropped."""
    ready = {provider.driver for provider in READY}
    params = []
    for name, provider in PROVIDERS.items():
        marks: Any = ()
        if name not in ready:
            marks = pytest.mark.skip(reason=f"driver {name!r} not importable: {MISSING[name]}")
        params.append(pytest.param(provider, id=name, marks=marks))
    return params
