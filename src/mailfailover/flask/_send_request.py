"""What ``POST /send`` accepts: parsing JSON, urlencoded and multipart bodies into a Message.

Kept apart from :mod:`mailfailover.flask` (the web side: routes, authentication, limits,
responses) so the strict parsing rules can be read, and tested, on their own. Every path
ends in the :class:`~mailfailover.Message` constructor, whose validation (the
header-injection guard) therefore always runs; every refusal is an :class:`ApiError`
carrying the original service's code.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import attrs
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder

from ..errors import (
    INVALID_JSON,
    INVALID_PARAMETER,
    MISSING_PARAMETER,
    UNSUPPORTED_MEDIA_TYPE,
    InvalidMessage,
)
from ..message import Attachment, Message, split_addresses

#: Every field ``POST /send`` takes, whatever the content type.
FIELDS = frozenset(
    {
        "sender", "to", "cc", "bcc", "reply_to", "subject", "text", "html",
        "attachments", "headers", "tags", "metadata", "message_id",
    }
)  # fmt: skip
_SINGLE_FIELDS = ("sender", "subject", "text", "html", "message_id")
_ADDRESS_FIELDS = ("to", "cc", "bcc", "reply_to")
_ATTACHMENT_KEYS = frozenset({"filename", "data", "mimetype", "inline", "content_id"})
_BRACKETED = re.compile(r"^(headers|metadata)\[(.*)\]$", re.DOTALL)
_BASE64_SPACE = re.compile(r"[\t\n\r ]+")
_BOUNDARY = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")

MAX_FORM_FIELDS = 1000


class ApiError(Exception):
    """A request the adapter answers with an error; becomes ``{"error", "message", "field"}``."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        field: str | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _missing(field: str, message: str | None = None) -> ApiError:
    return ApiError(400, MISSING_PARAMETER, message or f"{field}: is required", field)


def invalid(field: str | None, message: str) -> ApiError:
    return ApiError(400, INVALID_PARAMETER, message, field)


def _bad_json(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, INVALID_JSON, f"invalid JSON: {message}", field)


# -- parsing the three content types ----------------------------------------------------------


@attrs.frozen
class _Upload:
    filename: str | None
    content: bytes = attrs.field(repr=False)
    mimetype: str | None


def parse_body(
    body: bytes, mimetype: str, params: Mapping[str, str]
) -> tuple[dict[str, Any], list[_Upload]]:
    """The fields and uploaded files of a body of the given media type (and its params)."""
    charset = params.get("charset")
    if charset is not None and charset.strip().lower() not in ("utf-8", "utf8", "us-ascii"):
        raise ApiError(
            415,
            UNSUPPORTED_MEDIA_TYPE,
            f"charset {clip(charset, 40)!r} is not supported; send UTF-8",
        )
    if mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    ):
        return _parse_json(body), []
    if mimetype == "application/x-www-form-urlencoded":
        return _fields_from_form(_parse_urlencoded(body), [])
    if mimetype == "multipart/form-data":
        pairs, uploads = _parse_multipart(body, params.get("boundary"))
        return _fields_from_form(pairs, uploads)
    what = f"{clip(mimetype, 80)!r} is not supported" if mimetype else "no Content-Type was given"
    raise ApiError(
        415,
        UNSUPPORTED_MEDIA_TYPE,
        f"unsupported media type: {what}; send application/json, "
        "multipart/form-data or application/x-www-form-urlencoded",
    )


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates (``"\\ud800"``): no UTF-8 encoder downstream could send them."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _bad_json("a string holds an unpaired surrogate escape") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _loads(text: str) -> Any:
    return json.loads(
        text, object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant
    )


def _parse_json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise _bad_json("the request body is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_json(f"the body is not UTF-8 (byte {exc.start})") from None
    text = text.removeprefix("\ufeff")
    try:
        data = _loads(text)
    except _DuplicateKey as exc:
        raise _bad_json(f"the key {clip(exc.key, 60)!r} appears twice", exc.key) from None
    except json.JSONDecodeError as exc:
        raise _bad_json(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise _bad_json("the document is nested too deeply") from None
    except ValueError as exc:  # NaN / Infinity, integers too long to convert
        raise _bad_json(str(exc)) from None
    if not isinstance(data, dict):
        raise _bad_json(f"the body must be a JSON object, not {_json_type(data)}")
    _check_strings(data)
    return data


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _parse_urlencoded(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
        return urllib.parse.parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise invalid(None, "the form is not UTF-8 text") from None
    except ValueError:
        raise invalid(None, f"the form has more than {MAX_FORM_FIELDS} fields") from None


def _parse_multipart(
    body: bytes, boundary: str | None
) -> tuple[list[tuple[str, str]], list[_Upload]]:
    if not boundary or not _BOUNDARY.match(boundary):
        raise invalid(None, "multipart/form-data needs a valid boundary parameter")
    decoder = MultipartDecoder(boundary.encode("ascii"), max_parts=MAX_FORM_FIELDS)
    pairs: list[tuple[str, str]] = []
    uploads: list[_Upload] = []
    current: Field | File | None = None
    buffer = bytearray()
    try:
        decoder.receive_data(body)
        decoder.receive_data(None)
        # Each event consumes input or moves the state on; the bound is a second guard.
        for _ in range(4 * MAX_FORM_FIELDS + 16):
            event = decoder.next_event()
            if isinstance(event, (Field, File)):
                current, buffer = event, bytearray()
            elif isinstance(event, Data):
                buffer += event.data
                if not event.more_data and current is not None:
                    _add_part(current, bytes(buffer), pairs, uploads)
                    current = None
            elif isinstance(event, Epilogue):
                return pairs, uploads
        raise ValueError("too many events")
    except ApiError:
        raise
    except RequestEntityTooLarge:
        raise invalid(None, f"the form has more than {MAX_FORM_FIELDS} parts") from None
    except Exception:  # the decoder's ValueError, and whatever malformed input trips in it
        raise invalid(None, "the multipart/form-data body is malformed or incomplete") from None


def _add_part(
    part: Field | File, data: bytes, pairs: list[tuple[str, str]], uploads: list[_Upload]
) -> None:
    if not part.name:
        raise invalid(None, "a form part has no name")
    if isinstance(part, File) and part.name == "attachments":
        # Browsers send an empty part with filename="" for a file input left empty.
        filename = part.filename.replace("\\", "/").rsplit("/", 1)[-1] or None
        if filename is None and not data:
            return
        mimetype = part.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        uploads.append(_Upload(filename, data, mimetype or None))
        return
    if isinstance(part, File):
        raise invalid(part.name, f"{clip(part.name, 60)}: only 'attachments' takes files")
    try:
        pairs.append((part.name, data.decode("utf-8")))
    except UnicodeDecodeError:
        raise invalid(part.name, f"{clip(part.name, 60)}: is not UTF-8 text") from None


def _json_field(name: str, value: str, expected: type) -> Any:
    try:
        parsed = _loads(value)
    except (ValueError, RecursionError, _DuplicateKey):
        parsed = None
    if not isinstance(parsed, expected):
        shape = "an object" if expected is dict else "an array"
        raise invalid(name, f"{name}: in a form, must be {shape} in JSON")
    try:
        _check_strings(parsed)
    except ApiError:
        raise invalid(name, f"{name}: holds an unpaired surrogate escape") from None
    return parsed


def _fields_from_form(
    pairs: Sequence[tuple[str, str]], uploads: list[_Upload]
) -> tuple[dict[str, Any], list[_Upload]]:
    """Turn form fields into the JSON body's shape.

    Single fields may appear once; ``to``/``cc``/``bcc``/``reply_to`` and ``tags`` repeat;
    ``headers`` and ``metadata`` are a JSON object or ``headers[Name]`` fields (or both);
    ``attachments`` fields that are not files are a JSON array like the JSON body's.
    """
    data: dict[str, Any] = {}
    lists: dict[str, list[str]] = {}
    mappings: dict[str, dict[str, str]] = {}
    attachments: list[Any] = []
    for name, value in pairs:
        bracketed = _BRACKETED.match(name)
        if bracketed:
            kind, key = bracketed.groups()
            target = mappings.setdefault(kind, {})
            if key in target:
                raise invalid(name, f"{clip(name, 60)}: is given more than once")
            target[key] = value
        elif name in _SINGLE_FIELDS:
            if name in data:
                raise invalid(name, f"{name}: is given more than once")
            data[name] = value
        elif name in _ADDRESS_FIELDS or name == "tags":
            lists.setdefault(name, []).append(value)
        elif name in ("headers", "metadata"):
            target = mappings.setdefault(name, {})
            for key, item in _json_field(name, value, dict).items():
                if key in target:
                    raise invalid(name, f"{name}: {clip(key, 60)!r} is given more than once")
                target[key] = item
        elif name == "attachments":
            attachments.extend(_json_field(name, value, list))
        else:
            raise _unknown(name)
    data.update(lists)
    if "tags" in data:
        data["tags"] = [tag for tag in data["tags"] if tag != ""]
    data.update(mappings)
    if attachments:
        data["attachments"] = attachments
    return data, uploads


def _unknown(name: str) -> ApiError:
    known = ", ".join(sorted(FIELDS))
    return invalid(name, f"{clip(name, 60)!r} is not a field; the fields are: {known}")


# -- building the message ---------------------------------------------------------------------


def _addresses(data: Mapping[str, Any], field: str) -> list[str]:
    value = data.get(field)
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise invalid(field, f"{field}: must be a string or an array of strings")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise invalid(field, f"{field}: must hold strings, not {_json_type(item)}")
        result.extend(split_addresses(item))
    return result


def _optional_text(data: Mapping[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is None or isinstance(value, str):
        return value
    raise invalid(field, f"{field}: must be a string, not {_json_type(value)}")


def _decode_base64(field: str, value: str) -> bytes:
    try:
        return base64.b64decode(_BASE64_SPACE.sub("", value).encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(field, f"{field}: is not valid base64") from None


def _renamed(exc: InvalidMessage, where: str) -> ApiError:
    field = (exc.field or "attachments").replace("attachments.", f"{where}.", 1)
    message = exc.message.replace("attachments.", f"{where}.", 1)
    return ApiError(400, exc.code, message, field)


def _attachment(index: int, item: Any) -> Attachment:
    where = f"attachments[{index}]"
    if not isinstance(item, dict):
        raise invalid(where, f"{where}: must be an object with filename, data and mimetype")
    for key in item:
        if key not in _ATTACHMENT_KEYS:
            raise invalid(f"{where}.{clip(key, 40)}", f"{where}: {clip(key, 40)!r} is "
                           "not an attachment field (filename, data, mimetype, inline, "
                           "content_id)")  # fmt: skip
    data = item.get("data")
    if data is None:
        raise _missing(f"{where}.data")
    if not isinstance(data, str):
        raise invalid(f"{where}.data", f"{where}.data: must be a base64 string")
    content = _decode_base64(f"{where}.data", data)
    try:
        return Attachment(
            filename=item.get("filename"),
            content=content,
            mimetype=item.get("mimetype"),
            inline=item.get("inline", False),
            content_id=item.get("content_id"),
        )
    except InvalidMessage as exc:
        raise _renamed(exc, where) from None


def _count_recipients(recipients: Mapping[str, list[str]], limit: int) -> None:
    """Refuse more than ``limit`` recipients before any address is parsed, naming the
    field where the count went over (a comma-separated string counts every address)."""
    total = 0
    for field, addresses in recipients.items():
        total += len(addresses)
        if total > limit:
            raise invalid(
                field,
                f"{field}: {total:,} recipients; this endpoint takes at most {limit:,} per "
                "message (to, cc and bcc together; http.max_recipients)",
            )


def build_message(
    data: Mapping[str, Any],
    uploads: Sequence[_Upload] = (),
    *,
    max_recipients: int | None = None,
) -> Message:
    """The :class:`Message` a request describes, or the :class:`ApiError` saying why not.

    ``max_recipients`` (``http.max_recipients``) caps to + cc + bcc before anything else
    is checked, so a huge list costs a split and a count, not an address parse each.
    """
    for name in data:
        if name not in FIELDS:
            raise _unknown(name)
    sender = data.get("sender")
    if sender is None or (isinstance(sender, str) and not sender.strip()):
        raise _missing("sender")
    if not isinstance(sender, str):
        raise invalid("sender", f"sender: must be a string, not {_json_type(sender)}")
    recipients = {field: _addresses(data, field) for field in ("to", "cc", "bcc")}
    _count_recipients(recipients, Message.max_recipients if max_recipients is None
                      else max_recipients)  # fmt: skip
    to = recipients["to"]
    if not to:
        raise _missing("to", "to: at least one recipient is required")
    subject = _optional_text(data, "subject")
    if subject is None:
        raise _missing("subject")
    # An empty body field is an absent one: HTML forms send empty inputs.
    text = _optional_text(data, "text") or None
    html = _optional_text(data, "html") or None
    if text is None and html is None:
        raise _missing("text", "text: a text or an html body is required")
    raw_attachments = data.get("attachments")
    if raw_attachments is None:
        raw_attachments = []
    if not isinstance(raw_attachments, list):
        raise invalid("attachments", "attachments: must be an array of objects")
    attachments = [_attachment(i, item) for i, item in enumerate(raw_attachments)]
    for upload in uploads:
        try:
            attachments.append(Attachment(upload.filename, upload.content, upload.mimetype))
        except InvalidMessage as exc:
            raise _renamed(exc, f"attachments[{len(attachments)}]") from None
    options: dict[str, Any] = {}
    message_id = _optional_text(data, "message_id")
    if message_id is not None:
        options["message_id"] = message_id
    try:
        return Message(
            sender=sender,
            to=to,
            subject=subject,
            text=text,
            html=html,
            cc=recipients["cc"],
            bcc=recipients["bcc"],
            reply_to=_addresses(data, "reply_to"),
            headers=data.get("headers"),
            tags=data.get("tags"),
            metadata=data.get("metadata"),
            attachments=attachments,
            **options,
        )
    except InvalidMessage as exc:
        raise ApiError(400, exc.code, exc.message, exc.field) from None
