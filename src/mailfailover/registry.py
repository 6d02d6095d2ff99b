"""Driver discovery through the ``mailfailover.drivers`` entry-point group.

Bundled drivers are declared in mailfailover's own ``pyproject.toml`` exactly as a
third-party package declares its own, so both take the same path. The group is scanned
once and cached; a driver's module is imported only when a configuration names it. A
plugin that fails to import, or a second plugin claiming a name already taken, is logged
and reported by :func:`available_drivers` (``mailfailover drivers``) and never breaks the
others; naming an unknown driver is a :class:`ConfigError` listing the installed names.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import threading
from typing import Any

import attrs

from .driver import Driver
from .errors import ConfigError, MissingDependency

__all__ = ["GROUP", "DriverEntry", "available_drivers", "load_driver", "refresh"]

GROUP = "mailfailover.drivers"
logger = logging.getLogger("mailfailover")

_lock = threading.Lock()
_entries: dict[str, importlib.metadata.EntryPoint] | None = None
_duplicates: list[tuple[str, importlib.metadata.EntryPoint]] = []
_classes: dict[str, type[Driver]] = {}


@attrs.frozen
class DriverEntry:
    """One installed driver as ``mailfailover drivers`` lists it."""

    name: str
    target: str
    distribution: str | None
    status: str  # "ok", "broken", "missing dependency" or "duplicate"
    detail: str | None = None


def _distribution(entry_point: importlib.metadata.EntryPoint) -> str | None:
    dist: Any = getattr(entry_point, "dist", None)
    return None if dist is None else str(dist.metadata["Name"])


def _scan() -> dict[str, importlib.metadata.EntryPoint]:
    global _entries
    with _lock:
        if _entries is not None:
            return _entries
        found: dict[str, importlib.metadata.EntryPoint] = {}
        duplicates: list[tuple[str, importlib.metadata.EntryPoint]] = []
        for entry_point in importlib.metadata.entry_points(group=GROUP):
            taken = found.get(entry_point.name)
            if taken is None:
                found[entry_point.name] = entry_point
            elif taken.value != entry_point.value:
                # The bundled driver keeps its name; otherwise the first one found wins.
                if _distribution(entry_point) == "mailfailover":
                    found[entry_point.name], entry_point = entry_point, taken
                duplicates.append((entry_point.name, entry_point))
                logger.warning(
                    "driver name %r is claimed by %s and %s; using %s",
                    entry_point.name, found[entry_point.name].value, entry_point.value,
                    found[entry_point.name].value,
                )  # fmt: skip
        _entries, _duplicates[:] = found, duplicates
        return found


def refresh() -> None:
    """Forget the scan (after installing a plugin in a running process)."""
    global _entries
    with _lock:
        _entries = None
        _duplicates.clear()
        _classes.clear()


def load_driver(name: str) -> type[Driver]:
    """The driver class registered as ``name``; imports only its module."""
    if name in _classes:
        return _classes[name]
    entries = _scan()
    entry_point = entries.get(name)
    if entry_point is None:
        installed = ", ".join(sorted(entries)) or "none"
        raise ConfigError(f"unknown driver {name!r}; installed drivers: {installed}")
    try:
        cls = entry_point.load()
    except MissingDependency:
        raise
    except Exception as exc:
        logger.error("driver %r (%s) failed to load: %s", name, entry_point.value, exc)
        logger.debug("traceback of driver %r", name, exc_info=exc)
        raise ConfigError(
            f"driver {name!r} ({entry_point.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ConfigError(f"driver {name!r} ({entry_point.value}) is not a Driver subclass")
    for module, extra in cls.requires:
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(module, extra, module=name)
    _classes[name] = cls
    return cls


def available_drivers() -> list[DriverEntry]:
    """Every driver in the group, loading each to tell which work; sorted by name."""
    result = []
    for name, entry_point in sorted(_scan().items()):
        status, detail = "ok", None
        try:
            load_driver(name)
        except MissingDependency as exc:
            status, detail = "missing dependency", exc.message
        except ConfigError as exc:
            status, detail = "broken", exc.message
        result.append(
            DriverEntry(name, entry_point.value, _distribution(entry_point), status, detail)
        )
    for name, entry_point in _duplicates:
        result.append(
            DriverEntry(
                name,
                entry_point.value,
                _distribution(entry_point),
                "duplicate",
                f"ignored: the name is taken by {_scan()[name].value}",
            )
        )
    return result
