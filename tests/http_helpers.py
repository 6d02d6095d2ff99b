"""Helpers for the HTTP adapter's tests: configurations and request bodies of each kind.

A request is described once, as the JSON body's dict, and :func:`encode` turns it into the
``client.post`` arguments for ``json``, ``urlencoded`` or ``multipart``: lists become
repeated fields, ``headers``/``metadata`` dicts become JSON strings, and attachments become
uploaded files in multipart (a JSON string in urlencoded, which cannot carry files).
Multipart bodies are built by hand so a test controls every byte of every part.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

KINDS = ("json", "urlencoded", "multipart")
BOUNDARY = "mf-test-boundary-7d3a"

GOOD: dict[str, Any] = {
    "sender": "Shop <shop@example.com>",
    "to": "ann@example.com",
    "subject": "Your receipt",
    "text": "Thanks for your order.",
}


def memory_config(*modes: str | None, http: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A config of ``memory`` drivers named d0, d1, ...; a mode makes that one fail."""
    drivers = []
    for index, mode in enumerate(modes or (None,)):
        settings = {"fail": mode} if mode else {}
        drivers.append({"name": f"d{index}", "module": "memory", "settings": settings})
    config: dict[str, Any] = {"drivers": drivers}
    if http is not None:
        config["http"] = dict(http)
    return config


DOWN_UP = {
    "drivers": [
        {"name": "down", "module": "memory", "settings": {"fail": "unavailable"}},
        {"name": "up", "module": "memory"},
    ]
}


def multipart(parts: Iterable[tuple[str, str | bytes, str | None, str | None]]) -> bytes:
    """A multipart/form-data body of ``(name, value, filename, content_type)`` parts."""
    out = bytearray()
    for name, value, filename, content_type in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n"
        out += value.encode("utf-8") if isinstance(value, str) else value
        out += b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
URLENCODED_TYPE = "application/x-www-form-urlencoded"


def form_pairs(fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The request's fields as form pairs (attachments excluded)."""
    pairs: list[tuple[str, str]] = []
    for name, value in fields.items():
        if value is None or name == "attachments":
            continue
        if isinstance(value, Mapping):
            pairs.append((name, json.dumps(value)))
        elif isinstance(value, (list, tuple)):
            pairs.extend((name, str(item)) for item in value)
        else:
            pairs.append((name, str(value)))
    return pairs


def encode(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``client.post`` keyword arguments carrying ``fields`` as ``kind``."""
    if kind == "json":
        return {"data": json.dumps(fields), "content_type": "application/json"}
    attachments: Sequence[Mapping[str, Any]] = fields.get("attachments") or []
    pairs = form_pairs(fields)
    if kind == "urlencoded":
        if attachments:
            pairs.append(("attachments", json.dumps(list(attachments))))
        return {"data": urllib.parse.urlencode(pairs), "content_type": URLENCODED_TYPE}
    assert kind == "multipart", kind
    parts: list[tuple[str, str | bytes, str | None, str | None]] = [
        (name, value, None, None) for name, value in pairs
    ]
    for item in attachments:
        parts.append(
            (
                "attachments",
                base64.b64decode(item["data"]),
                item.get("filename") or "",
                item.get("mimetype"),
            )
        )
    return {"data": multipart(parts), "content_type": MULTIPART_TYPE}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
