"""Every number a bundled driver takes is bounded, so a typo fails at load, not at send.

The rule is declared once (``timeout_setting``, ``pool_size_setting`` in
:mod:`mailfailover.driver`); this test walks every installed bundled driver so a new
timeout-like setting that forgets it fails here.
"""

from __future__ import annotations

import pytest

from mailfailover import ConfigError, load_config
from mailfailover.config import build_drivers
from mailfailover.registry import available_drivers, load_driver

BUNDLED = [
    e.name for e in available_drivers() if e.target.startswith("mailfailover.") and e.status == "ok"
]


@pytest.mark.parametrize("name", BUNDLED)
def test_every_timeout_and_pool_size_has_a_ceiling(name: str) -> None:
    spec = load_driver(name).settings_spec
    for key, setting in spec.items():
        if "timeout" in key or key == "pool_size":
            assert setting.maximum is not None, f"{name}.{key} has no maximum"
        if "timeout" in key:
            assert setting.minimum is not None and setting.minimum > 0, f"{name}.{key} may be 0"


@pytest.mark.parametrize(
    ("module", "settings"),
    [
        ("mailgun", {"api_key": "k", "domain": "mg.example.com"}),
        ("smtp", {"host": "localhost"}),
        ("ses", {"region": "eu-west-1"}),
    ],
)
@pytest.mark.parametrize(
    ("key", "value"), [("timeout", 1e300), ("timeout", 0), ("connect_timeout", 86400.0)]
)
def test_absurd_timeouts_are_config_errors(
    module: str, settings: dict[str, object], key: str, value: float
) -> None:
    if key not in load_driver(module).settings_spec:
        pytest.skip(f"{module} has no {key}")
    config = {"drivers": [{"name": "d", "module": module, "settings": {**settings, key: value}}]}
    with pytest.raises(ConfigError, match=key):
        build_drivers(load_config(config))
