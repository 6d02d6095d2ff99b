"""Entry-point discovery: bundled drivers, broken and duplicate plugins, missing extras."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Iterator

import pytest

from mailfailover import ConfigError, Driver, MissingDependency, registry
from mailfailover.drivers.memory import MemoryDriver

BUNDLED = {
    "memory", "file", "console", "smtp", "ses", "mailgun", "sendgrid", "postmark",
    "mandrill", "mailjet", "sparkpost", "resend", "brevo",
}  # fmt: skip


class NeedsExtra(Driver):
    requires = (("surely_not_installed_pkg", "nothere"),)


class NotADriver:
    pass


@pytest.fixture
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[importlib.metadata.EntryPoint]]:
    """Add entry points to the group as an installed third-party package would."""
    extra: list[importlib.metadata.EntryPoint] = []
    real = importlib.metadata.entry_points

    def entry_points(**kwargs: object) -> object:
        found = list(real(**kwargs))  # type: ignore[arg-type]
        if kwargs.get("group") == registry.GROUP:
            return found + extra
        return found

    module = types.ModuleType("fake_plugin_mod")
    module.Good = type("Good", (MemoryDriver,), {})  # type: ignore[attr-defined]
    module.NeedsExtra = NeedsExtra  # type: ignore[attr-defined]
    module.NotADriver = NotADriver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_plugin_mod", module)
    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    registry.refresh()
    yield extra
    registry.refresh()


def ep(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=registry.GROUP)


def test_bundled_drivers_register_through_the_entry_point_group() -> None:
    registry.refresh()
    names = {entry.name for entry in registry.available_drivers()}
    assert names >= BUNDLED


def test_load_driver_imports_only_the_named_module() -> None:
    registry.refresh()
    sys.modules.pop("mailfailover.drivers.console", None)
    registry.load_driver("memory")
    assert "mailfailover.drivers.console" not in sys.modules


def test_a_third_party_driver_is_found(fake_plugins: list) -> None:
    fake_plugins.append(ep("good", "fake_plugin_mod:Good"))
    assert registry.load_driver("good").__name__ == "Good"


def test_a_broken_plugin_is_reported_and_never_breaks_the_others(
    fake_plugins: list, caplog: pytest.LogCaptureFixture
) -> None:
    fake_plugins.append(ep("broken", "no_such_module_anywhere:Driver"))
    fake_plugins.append(ep("notdriver", "fake_plugin_mod:NotADriver"))
    fake_plugins.append(ep("good", "fake_plugin_mod:Good"))
    entries = {e.name: e for e in registry.available_drivers()}
    assert entries["broken"].status == "broken"
    assert "ModuleNotFoundError" in str(entries["broken"].detail)
    assert entries["notdriver"].status == "broken"
    assert entries["good"].status == "ok"
    assert entries["memory"].status == "ok"
    with pytest.raises(ConfigError, match="failed to load"):
        registry.load_driver("broken")
    assert any("broken" in r.getMessage() for r in caplog.records)


def test_a_duplicate_name_keeps_the_bundled_driver(fake_plugins: list) -> None:
    fake_plugins.append(ep("memory", "fake_plugin_mod:Good"))
    assert registry.load_driver("memory") is MemoryDriver
    duplicates = [e for e in registry.available_drivers() if e.status == "duplicate"]
    assert [(d.name, d.target) for d in duplicates] == [("memory", "fake_plugin_mod:Good")]


def test_two_third_party_plugins_with_one_name_first_wins(fake_plugins: list) -> None:
    fake_plugins.append(ep("twin", "fake_plugin_mod:Good"))
    fake_plugins.append(ep("twin", "fake_plugin_mod:NeedsExtra"))
    assert registry.load_driver("twin").__name__ == "Good"


def test_missing_extra_names_the_pip_install_line(fake_plugins: list) -> None:
    fake_plugins.append(ep("needy", "fake_plugin_mod:NeedsExtra"))
    with pytest.raises(MissingDependency) as caught:
        registry.load_driver("needy")
    assert 'pip install "mailfailover[nothere]"' in str(caught.value)
    entry = next(e for e in registry.available_drivers() if e.name == "needy")
    assert entry.status == "missing dependency"


def test_unknown_name_lists_installed_drivers() -> None:
    with pytest.raises(ConfigError) as caught:
        registry.load_driver("postmrak")
    assert "postmrak" in str(caught.value)
    assert "postmark" in str(caught.value)
