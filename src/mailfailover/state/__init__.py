"""Where state shared between processes lives: health, suppressions, delivery records.

``open_store("memory://")`` (this process only; the default), ``"sqlite:///path"`` (one host,
many processes) or ``"redis://host:6379/0"`` (many hosts, extra ``redis``). Backends are
found by URL scheme in the entry-point group ``mailfailover.stores`` — the built-in ones
register there the way a plugin would — so a third-party package can add one.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ._base import UNCHANGED, StateStore, StoreError, Unchanged
from .memory import MemoryStore
from .resilient import ResilientStore

__all__ = [
    "UNCHANGED",
    "MemoryStore",
    "ResilientStore",
    "StateStore",
    "StoreError",
    "Unchanged",
    "open_store",
    "store_schemes",
]

ENTRY_POINT_GROUP = "mailfailover.stores"
DEFAULT_NAMESPACE = "mailfailover"


def store_schemes() -> list[str]:
    """The URL schemes an installed backend serves, sorted."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def open_store(
    spec: str | Mapping[str, Any] | StateStore | None = None, *, namespace: str | None = None
) -> StateStore:
    """Build the store ``spec`` names: a URL, ``{"url": ..., "namespace": ...}``, or a store.

    A store object is returned as it is. An unknown scheme or a malformed URL is a
    :class:`ConfigError` that never shows the URL's password.
    """
    if isinstance(spec, StateStore):
        return spec
    if spec is None:
        spec = "memory://"
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"url", "namespace"})
        if unknown:
            raise ConfigError(f"state: unknown key {unknown[0]!r} (known: url, namespace)")
        url = spec.get("url", "memory://")
        namespace = namespace or spec.get("namespace")
    else:
        url = spec
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError("state: a store URL such as memory://, sqlite:///path or redis://host")
    namespace = namespace or DEFAULT_NAMESPACE
    if not isinstance(namespace, str):
        raise ConfigError("state.namespace must be a string")
    scheme = urlsplit(url).scheme.lower()
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
    if not found:
        known = ", ".join(store_schemes()) or "none"
        raise ConfigError(f"state: no store backend for {scheme!r}:// (installed: {known})")
    backend = found[0].load()
    try:
        store: StateStore = backend.from_url(url, namespace=namespace)
    except ValueError as exc:
        raise ConfigError(f"state: {exc}") from None
    return store
