"""Imports go one way: model <- drivers <- mailer/config <- adapters.

Each check imports a module in a fresh interpreter and looks at ``sys.modules``, so an
import hidden in a function body called at import time, or a new ``from .. import x``,
is caught as surely as a top-level one. The package root is replaced by an empty package
object first: importing ``mailfailover.errors`` normally runs ``mailfailover/__init__.py``,
which loads everything, and would hide what the module itself pulls in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import mailfailover.drivers

#: The model: what a message, an error, a result and the driver API are.
MODEL = (
    "mailfailover._version",
    "mailfailover.message",
    "mailfailover.errors",
    "mailfailover.results",
    "mailfailover.driver",
    "mailfailover.health",
)
#: What sits above the model and the drivers: the model must never import these.
ABOVE = (
    "mailfailover.mailer",
    "mailfailover.aio",
    "mailfailover.config",
    "mailfailover.registry",
    "mailfailover.cli",
    "mailfailover.flask",
    "mailfailover.testing",
)
DRIVERS = tuple(
    f"mailfailover.drivers.{info.name}"
    for info in pkgutil.iter_modules(mailfailover.drivers.__path__)
)


def loaded_by(module: str, *, stub_root: bool = True) -> set[str]:
    """The ``mailfailover`` modules (and pytest) in ``sys.modules`` after importing ``module``."""
    code = textwrap.dedent(
        f"""
        import importlib, importlib.util, json, sys, types
        if {stub_root!r}:
            spec = importlib.util.find_spec("mailfailover")
            root = types.ModuleType("mailfailover")
            root.__path__ = list(spec.submodule_search_locations)
            sys.modules["mailfailover"] = root
        importlib.import_module({module!r})
        print(json.dumps(sorted(
            m for m in sys.modules if m.startswith("mailfailover") or m == "pytest"
        )))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("module", MODEL)
def test_the_model_imports_nothing_above_it(module: str) -> None:
    loaded = loaded_by(module)
    assert module in loaded
    assert not loaded & set(ABOVE), f"{module} imports {sorted(loaded & set(ABOVE))}"
    assert not {m for m in loaded if m.startswith("mailfailover.drivers")}


@pytest.mark.parametrize("module", DRIVERS)
def test_drivers_import_only_the_model(module: str) -> None:
    """A driver needs the model and the driver API, never the mailer, config or root
    (``from .. import __version__`` used to load all of them)."""
    loaded = loaded_by(module)
    assert module in loaded
    assert not loaded & set(ABOVE), f"{module} imports {sorted(loaded & set(ABOVE))}"


def test_the_package_root_loads_no_driver_and_no_pytest() -> None:
    """The core knows no driver by name: ``mailfailover.MemoryDriver`` is loaded lazily."""
    loaded = loaded_by("mailfailover", stub_root=False)
    assert not {m for m in loaded if m.startswith("mailfailover.drivers.")}
    assert "mailfailover.testing" not in loaded
    assert "pytest" not in loaded


def test_memory_driver_is_still_importable_from_the_root() -> None:
    import mailfailover
    import mailfailover.testing

    assert mailfailover.MemoryDriver is mailfailover.testing.MemoryDriver
    assert "MemoryDriver" in dir(mailfailover) or "MemoryDriver" in mailfailover.__all__
    with pytest.raises(AttributeError):
        mailfailover.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


def test_results_are_the_mailer_s_results() -> None:
    """The move kept the old import path working."""
    import mailfailover.mailer
    import mailfailover.results

    assert mailfailover.mailer.Attempt is mailfailover.results.Attempt
    assert mailfailover.mailer.SendResult is mailfailover.results.SendResult


def test_testing_imports_without_pytest() -> None:
    """FakeClock, the message factories and MemoryDriver need no pytest (doc examples use
    them in applications); only the contract test classes do, and say so."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["pytest"] = None  # any `import pytest` now raises ImportError
        from mailfailover.testing import FakeClock, MemoryDriver, full_message, simple_message
        clock = FakeClock()
        clock.advance(5)
        assert clock() == 1005.0
        driver = MemoryDriver()
        driver.send(simple_message())
        driver.send(full_message())
        assert len(driver.outbox) == 2
        try:
            from mailfailover.testing import DriverContractTests
        except ImportError as exc:
            print("contract:", type(exc).__name__)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "contract: ModuleNotFoundError"


def _flask_rank(module: str) -> int:
    order = ["_send_request", "_auth_guard", "_base", "_activity", "_metrics", "_page_auth",
             "_route_", "_app", "_multiprocess", "_server", "__init__"]  # fmt: skip
    return next(i for i, prefix in enumerate(order) if module.startswith(prefix))


def test_the_http_adapter_imports_only_downwards() -> None:
    """In ``mailfailover/flask/``: _server -> _app -> _route_* -> _base -> _auth_guard ->
    _send_request.
    Read from the source (every ``from .x import`` anywhere in a module), because importing
    any submodule runs the package's ``__init__`` first."""
    import ast
    from pathlib import Path

    package = Path(mailfailover.drivers.__file__).parent.parent / "flask"
    modules = sorted(path.stem for path in package.glob("*.py"))
    assert {"_app", "_base", "_route_health", "_route_send", "_send_request", "_server"} <= set(
        modules
    )
    for module in modules:
        tree = ast.parse((package / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [node.module] if node.module else [a.name for a in node.names]
                for target in targets:
                    assert _flask_rank(target) < _flask_rank(module), (
                        f"{module} imports {target}: imports go down only"
                    )
