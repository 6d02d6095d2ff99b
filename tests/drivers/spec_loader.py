"""Read the providers' own published API specs kept in ``tests/provider_specs/``.

The files are copies of what the providers publish (``SOURCES.json`` there says where each
came from, at which commit). This module turns each kind into something a test can check a
request against: OpenAPI/Swagger documents give JSON Schemas with every ``$ref`` inlined,
Mailjet's TypeScript SDK types give a JSON Schema of the fields they declare, and SparkPost's
API Blueprint gives its attribute lists (as JSON Schema) and its JSON request/response
examples. It knows nothing about the drivers.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SPEC_DIR = Path(__file__).resolve().parent.parent / "provider_specs"


def sources() -> dict[str, Any]:
    """``SOURCES.json``: where each provider's spec came from."""
    loaded: dict[str, Any] = json.loads((SPEC_DIR / "SOURCES.json").read_text("utf-8"))
    return loaded


def spec_file(provider: str, kind: str) -> Path:
    """The copied file ``SOURCES.json`` names for ``provider`` and ``kind``."""
    return SPEC_DIR / sources()[provider]["files"][kind]


@cache
def document(provider: str, kind: str | None = None) -> Any:
    """A JSON or YAML spec document (``kind`` defaults to its OpenAPI or Swagger file),
    parsed (cached; treat it as read-only)."""
    files = sources()[provider]["files"]
    path = spec_file(provider, kind or ("openapi" if "openapi" in files else "swagger"))
    text = path.read_text("utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


# -- OpenAPI / Swagger --------------------------------------------------------------------


def pointer(doc: Any, ref: str) -> Any:
    """The value a local JSON pointer (``#/components/schemas/X``) names."""
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def inline_refs(doc: Any, node: Any, seen: tuple[str, ...] = ()) -> Any:
    """``node`` with every local ``$ref`` replaced by a copy of what it points to."""
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref not in seen, f"recursive $ref {ref}"
            target = inline_refs(doc, pointer(doc, ref), (*seen, ref))
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            # In OpenAPI 3.1 a $ref may have siblings (type, description...): keep both.
            return {"allOf": [target, inline_refs(doc, siblings, seen)]} if siblings else target
        return {key: inline_refs(doc, value, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [inline_refs(doc, item, seen) for item in node]
    return node


def operation(doc: Any, path: str, method: str) -> dict[str, Any]:
    op: dict[str, Any] = doc["paths"][path][method.lower()]
    return op


def request_schema(doc: Any, path: str, method: str = "post") -> dict[str, Any]:
    """The JSON request body's schema of an OpenAPI 3 or Swagger 2 operation, refs inlined."""
    op = operation(doc, path, method)
    if "swagger" in doc:  # Swagger 2: an `in: body` parameter
        body = next(p for p in op["parameters"] if p.get("in") == "body")
        schema = body["schema"]
    else:
        request_body = op["requestBody"]
        if "$ref" in request_body:
            request_body = pointer(doc, request_body["$ref"])
        content = request_body["content"]
        media = "application/json" if "application/json" in content else next(iter(content))
        schema = content[media]["schema"]
    inlined: dict[str, Any] = inline_refs(doc, schema)
    return inlined


def request_examples(doc: Any, path: str, method: str = "post") -> dict[str, Any]:
    op = operation(doc, path, method)
    request_body = op.get("requestBody", {})
    if "$ref" in request_body:
        request_body = pointer(doc, request_body["$ref"])
    media = request_body.get("content", {}).get("application/json", {})
    return {name: ex["value"] for name, ex in media.get("examples", {}).items()}


def responses(doc: Any, path: str, method: str = "post") -> dict[str, dict[str, Any]]:
    """``{status: response object}`` of an operation, response ``$ref``s resolved."""
    out: dict[str, dict[str, Any]] = {}
    for status, response in operation(doc, path, method)["responses"].items():
        out[str(status)] = inline_refs(doc, response)
    return out


def response_examples(response: Mapping[str, Any]) -> list[Any]:
    """Every example a response documents: its ``examples`` and its schema's ``example``."""
    found: list[Any] = []
    for media in response.get("content", {}).values():
        found += [ex["value"] for ex in media.get("examples", {}).values() if "value" in ex]
        if "example" in media:
            found.append(media["example"])
        found += _schema_examples(media.get("schema", {}))
    return found


def _schema_examples(schema: Mapping[str, Any]) -> list[Any]:
    if "example" in schema and isinstance(schema["example"], Mapping):
        return [schema["example"]]
    for part in schema.get("allOf", ()):
        found = _schema_examples(part)
        if found:
            return found
    return []


def servers(doc: Any) -> list[str]:
    """The base URLs a spec declares (OpenAPI ``servers`` or Swagger ``host`` + ``basePath``)."""
    if "swagger" in doc:
        base = doc.get("basePath", "/").rstrip("/")
        return [f"https://{doc['host']}{base}"]
    return [server["url"].rstrip("/") for server in doc.get("servers", ())]


def security_schemes(doc: Any, path: str, method: str = "post") -> list[dict[str, Any]]:
    """The security schemes that apply to an operation (operation-level, else global)."""
    requirements = operation(doc, path, method).get("security", doc.get("security", ()))
    schemes = doc.get("components", {}).get("securitySchemes", {})
    return [schemes[name] for requirement in requirements for name in requirement]


def validator(schema: Mapping[str, Any], doc: Any) -> jsonschema.protocols.Validator:
    """A validator of the spec's JSON Schema dialect: 2020-12 for OpenAPI 3.1, draft 4 (the
    base OpenAPI 3.0 and Swagger 2 extend) otherwise; ``format`` checked."""
    version = str(doc.get("openapi", ""))
    cls: Any = (
        jsonschema.Draft202012Validator if version.startswith("3.1") else jsonschema.Draft4Validator
    )
    checker = cls.FORMAT_CHECKER
    return cls(dict(schema), format_checker=checker)  # type: ignore[no-any-return]


def errors(schema: Mapping[str, Any], doc: Any, instance: Any) -> list[str]:
    """Every way ``instance`` breaks ``schema``, as readable lines (empty when it is valid)."""
    found = validator(schema, doc).iter_errors(instance)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}" for e in found)


def closed(schema: Any) -> Any:
    """A copy of ``schema`` where every object that lists its ``properties`` takes no others.

    Specs leave ``additionalProperties`` open, so a misspelt field would validate; closing
    them checks that every field a driver sends is one the provider documents.
    """
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return schema


# -- multipart/form-data (Mailgun) ---------------------------------------------------------


def form_fields(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """``(name, filename, content)`` of each part of a multipart/form-data body, in order."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    assert parsed.is_multipart(), content_type
    parts: list[tuple[str, str | None, bytes]] = []
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_param("filename", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str), part
        parts.append((name, filename if isinstance(filename, str) else None, payload or b""))
    return parts


# -- TypeScript SDK types (Mailjet) --------------------------------------------------------

_TS_INTERFACE = re.compile(
    r"export interface (\w+)(?:<[^>]*>)?(?: extends (\w+))? \{(.*?)\n  \}", re.DOTALL
)
_TS_FIELD = re.compile(r"^\s*'?([\w-]+)'?(\?)?: (.+?);\s*$")
_TS_ENUM = re.compile(r"export enum (\w+) \{(.*?)\}", re.DOTALL)


def typescript_schema(source: str, namespace: str, root: str) -> dict[str, Any]:
    """A JSON Schema of interface ``root`` in ``namespace`` of a TypeScript types file.

    Understands what Mailjet's SDK types use: interfaces (optional ``?`` fields, one
    ``extends``), string enums, ``string``/``number``/``boolean``, ``T[]``/``Array<T>``, and
    generic record parameters (``Headers``, ``Variables``) as objects. Every interface is a
    closed object: a field it does not declare is an error.
    """
    start = source.index(f"export namespace {namespace} {{")
    end = source.find("\nexport namespace", start + 1)
    body = source[start : end if end != -1 else len(source)]
    enums = {name: re.findall(r"= '([^']*)'", members) for name, members in _TS_ENUM.findall(body)}
    interfaces: dict[str, tuple[str | None, dict[str, tuple[str, bool]]]] = {}
    for name, parent, members in _TS_INTERFACE.findall(body):
        fields: dict[str, tuple[str, bool]] = {}
        for line in members.splitlines():
            match = _TS_FIELD.match(line)
            if match:
                fields[match.group(1)] = (match.group(3).strip(), match.group(2) is None)
        interfaces[name] = (parent or None, fields)

    def type_schema(ts: str) -> dict[str, Any]:
        ts = ts.strip()
        if ts.endswith("[]"):
            return {"type": "array", "items": type_schema(ts[:-2])}
        generic = re.fullmatch(r"Array<(.+)>", ts)
        if generic:
            return {"type": "array", "items": type_schema(generic.group(1))}
        if ts in ("string", "number", "boolean"):
            return {"type": ts}
        if ts in enums:
            return {"type": "string", "enum": enums[ts]}
        if ts in interfaces:
            return interface_schema(ts)
        if ts in ("Headers", "Variables", "Globals"):  # generic record parameters
            return {"type": "object"}
        raise AssertionError(f"unknown TypeScript type {ts!r} in {namespace}")

    def all_fields(name: str) -> dict[str, tuple[str, bool]]:
        parent, fields = interfaces[name]
        return {**(all_fields(parent) if parent else {}), **fields}

    def interface_schema(name: str) -> dict[str, Any]:
        fields = all_fields(name)
        return {
            "type": "object",
            "properties": {key: type_schema(ts) for key, (ts, _) in fields.items()},
            "required": sorted(key for key, (_, required) in fields.items() if required),
            "additionalProperties": False,
        }

    return interface_schema(root)


# -- API Blueprint (SparkPost) -------------------------------------------------------------

_ATTRIBUTE = re.compile(r"^(\s*)\+ (?:(\w+) )?\(([^)]*)\)\s*(?:-\s*(.*))?$")


def blueprint_attributes(text: str, heading: str) -> dict[str, Any]:
    """The MSON attribute list under the first ``+ Data Structure`` line after ``heading``,
    as a closed JSON Schema object (nested attribute lists become nested objects; an
    ``enum`` of ``(string)``/``(object)``/``(array)`` alternatives becomes ``anyOf``)."""
    start = text.index(heading)
    lines = text[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.lstrip().startswith("+ Data Structure"))
    base = len(lines[first]) - len(lines[first].lstrip())
    entries: list[tuple[int, str | None, str, str]] = []
    for line in lines[first + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= base:
            break  # the next block (+ Sample, a heading...)
        match = _ATTRIBUTE.match(line)
        if match and "Default" not in line:
            indent, name, kind, _ = match.groups()
            entries.append((len(indent), name, kind, line))
    schema, _ = _mson_object(entries, 0, entries[0][0] if entries else 0)
    return schema


def _mson_type(kind: str) -> tuple[str, bool]:
    words = [w.strip() for w in kind.split(",")]
    return words[0], "required" in words


def _mson_object(
    entries: list[tuple[int, str | None, str, str]], index: int, indent: int
) -> tuple[dict[str, Any], int]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    while index < len(entries) and entries[index][0] == indent:
        _, name, kind, _ = entries[index]
        index += 1
        children_start = index
        while index < len(entries) and entries[index][0] > indent:
            index += 1
        children = entries[children_start:index]
        kind_name, is_required = _mson_type(kind)
        if name is None:
            continue
        properties[name] = _mson_value(kind_name, children)
        if is_required:
            required.append(name)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema, index


def _mson_value(kind: str, children: list[tuple[int, str | None, str, str]]) -> dict[str, Any]:
    base = kind.split("[")[0]
    if base == "enum" and children:
        indent = children[0][0]
        alternatives = [
            _mson_value(_mson_type(c[2])[0], [d for d in children if d[0] > indent])
            for c in children
            if c[0] == indent and c[1] is None
        ]
        return {"anyOf": alternatives}
    if base == "object":
        if children and any(c[1] for c in children):
            schema, _ = _mson_object(children, 0, children[0][0])
            return schema
        return {"type": "object"}
    if base == "array":
        return {"type": "array"}
    if base == "boolean":
        return {"type": "boolean"}
    if base == "number":
        return {"type": "number"}
    return {"type": "string"}


def blueprint_section(text: str, heading: str) -> str:
    """The text of the section that starts at ``heading`` (up to the next ``###`` heading)."""
    start = text.index(heading)
    following = re.search(r"\n#{1,3} ", text[start + len(heading) :])
    end = start + len(heading) + following.start() if following else len(text)
    return text[start:end]


def blueprint_responses(section: str) -> Iterator[tuple[int, str]]:
    """``(status, JSON body text)`` of each ``+ Response NNN (application/json)`` example."""
    pattern = re.compile(
        r"^\+ Response (\d{3})(?: \(application/json\))?\n\n((?: {8}.*\n|\n)+)", re.M
    )
    for match in pattern.finditer(section + "\n"):
        body = "\n".join(line[8:] for line in match.group(2).splitlines())
        yield int(match.group(1)), body.strip()


def blueprint_request_body(section: str) -> str:
    """The JSON body of the section's ``+ Request`` example (under ``+ Body``)."""
    match = re.search(r"^    \+ Body\n\n((?: {12}.*\n|\n)+)", section, re.M)
    assert match, "no + Body in the request example"
    return "\n".join(line[12:] for line in match.group(1).splitlines()).strip()
