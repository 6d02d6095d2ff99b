"""``mailgun``: Mailgun's Messages API (``POST /v3/{domain}/messages``, multipart form).

Addresses, subject and bodies are form fields; headers travel as ``h:<Name>`` (Reply-To and
the message's ``Message-Id`` too), tags as repeated ``o:tag`` (at most 3, ASCII, 128
characters), metadata as ``v:<key>``, attachments as ``attachment`` file parts and inline
images as ``inline`` file parts whose filename is the Content-ID. The API key is HTTP Basic
auth (``api:<key>``). A 200 ``{"id": "<...>", "message": "Queued. Thank you."}`` is success
and the id keeps its angle brackets; a 200 saying "Mailgun Magnificent API" is Mailgun's
index page, which means the URL was wrong and nothing was sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from ..driver import Receipt, Setting
from ..errors import ConfigError, DeliveryError
from ..message import Message
from ..webhooks.mailgun import WEBHOOKS
from ._http import HTTP_SETTINGS, HttpDriver
from ._wire import MAX_RETRY_AFTER, HttpRequest, HttpResponse, parse_retry_after

__all__ = ["MailgunDriver"]

#: Mailgun's documented limits on tags: ASCII only, at most 128 characters each.
MAX_TAG_LENGTH = 128
#: "Send options (parameters starting with o:, h:, v:, or t:) are limited to 16KB total"
#: (Mailgun's spec for POST /v3/{domain}/messages): field names and values, in UTF-8.
MAX_OPTIONS_BYTES = 16 * 1024
_OPTION_FIELDS = {"o": "tags", "h": "headers", "v": "metadata", "t": "headers"}

_TRY_AGAIN = re.compile(r"try again (after|in)\s+([^\"}\n]+)", re.IGNORECASE)
_DURATION = re.compile(
    r"^(\d+(?:\.\d+)?)(?![\d.])\s*(?:(hours?|h|minutes?|mins?|m|seconds?|secs?|s)\b)?(?!\s*[a-z])",
    re.IGNORECASE,
)


class MailgunDriver(HttpDriver):
    """Sends through Mailgun; ``domain`` is the sending domain configured at Mailgun."""

    webhooks = WEBHOOKS

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,
        "api_key": Setting(secret=True, help="Mailgun private API key"),
        "domain": Setting(help="the sending domain, as configured at Mailgun"),
        "region": Setting("us", choices=("us", "eu"), help="the region the domain lives in"),
        "test_mode": Setting(False, bool, help="o:testmode=yes: accepted, never delivered"),
    }
    default_base_url: ClassVar[str] = "https://api.mailgun.net"
    regional_base_urls: ClassVar[Mapping[str, str]] = {
        "us": "https://api.mailgun.net",
        "eu": "https://api.eu.mailgun.net",
    }
    max_recipients: ClassVar[int | None] = 1000
    max_tags: ClassVar[int | None] = 3
    max_message_bytes: ClassVar[int | None] = 25 * 1024 * 1024
    tag_pattern: ClassVar[str | None] = rf"[\x00-\x7f]{{1,{MAX_TAG_LENGTH}}}"
    tag_rule: ClassVar[str] = f"ASCII, at most {MAX_TAG_LENGTH} characters"
    message_id_path: ClassVar[tuple[str, ...]] = ("id",)

    def __init__(self, *, name: str, **settings: Any) -> None:
        super().__init__(name=name, **settings)
        domain = str(self.settings["domain"]).strip()
        # A '/' (even %2F) makes Mailgun answer its 200 index page instead of sending.
        if not domain or "/" in domain or "%2f" in domain.lower():
            raise ConfigError(f"setting 'domain': {domain!r} is not a domain name", driver=name)
        self.path = f"/v3/{quote(domain, safe='')}/messages"

    def build_request(self, message: Message) -> HttpRequest:
        sender = message.sender_mailbox
        if sender.needs_smtputf8:
            self.unsupported("Mailgun cannot send from a non-ASCII local part", field="sender")
        fields: list[tuple[str, str]] = [("from", sender.header_text())]
        for field in ("to", "cc", "bcc"):
            fields += [(field, mailbox.header_text()) for mailbox in message.mailboxes(field)]
        fields.append(("subject", message.subject))
        if message.text is not None:
            fields.append(("text", message.text))
        if message.html is not None:
            fields.append(("html", message.html))
        if message.reply_to:
            replies = ", ".join(mailbox.header_text() for mailbox in message.mailboxes("reply_to"))
            fields.append(("h:Reply-To", replies))
        fields.append(("h:Message-Id", message.message_id))
        fields += [(f"h:{name}", value) for name, value in message.headers.items()]
        fields += [("o:tag", tag) for tag in message.tags]
        fields += [(f"v:{key}", value) for key, value in message.metadata.items()]
        if self.settings["test_mode"]:
            fields.append(("o:testmode", "yes"))
        self._check_options(fields)
        files = [
            (
                "inline" if attachment.inline else "attachment",
                (
                    (attachment.content_id if attachment.inline else None)
                    or attachment.filename_or(),
                    attachment.content,
                    attachment.mimetype,
                ),
            )
            for attachment in message.attachments
        ]
        # Text fields go as file-less parts so requests always builds multipart/form-data
        # (the only form that carries files) and keeps repeated fields in order.
        parts = [(key, (None, value.encode("utf-8"))) for key, value in fields]
        return HttpRequest(
            path=self.path, files=parts + files, auth=("api", str(self.settings["api_key"]))
        )

    def _check_options(self, fields: list[tuple[str, str]]) -> None:
        """Refuse more than Mailgun's 16 KB of ``o:``/``h:``/``v:``/``t:`` fields, naming the
        message field that contributes most (headers, tags or metadata)."""
        sizes: dict[str, int] = {}
        for key, value in fields:
            prefix = key.partition(":")[0]
            if ":" in key and prefix in _OPTION_FIELDS:
                size = len(key.encode("utf-8")) + len(value.encode("utf-8"))
                sizes[_OPTION_FIELDS[prefix]] = sizes.get(_OPTION_FIELDS[prefix], 0) + size
        total = sum(sizes.values())
        if total > MAX_OPTIONS_BYTES:
            largest = max(sizes, key=lambda field: sizes[field])
            self.unsupported(
                f"headers, tags and metadata take {total} bytes as Mailgun options; Mailgun "
                f"takes at most {MAX_OPTIONS_BYTES} (16 KB) in total",
                field=largest,
            )

    def parse_success(self, response: HttpResponse, message: Message) -> Receipt:
        if "Mailgun Magnificent API" in response.text:
            self.bad_response(
                "Mailgun answered with its API index page: the URL is wrong (check the "
                "domain and base_url settings); nothing was sent",
                response,
            )
        return super().parse_success(response, message)

    def classify(
        self, response: HttpResponse, detail: str, code: str | int | None
    ) -> DeliveryError | None:
        status = response.status
        # 429 and the non-standard 420 ("... try again after <date>") are throttling.
        if status in (420, 429) or (status < 500 and _TRY_AGAIN.search(detail)):
            return self.error("rate_limited", detail, response, code)
        if status == 404 and "domain not found" in detail.lower():
            region = self.settings["region"]
            hint = f"{detail} (is the domain set up at Mailgun, in the {region!r} region?)"
            return self.error("account", hint, response, code)
        return None  # the defaults, with the shared account rule

    def retry_after(self, response: HttpResponse) -> float | None:
        """``Retry-After`` if sent, else the wait in Mailgun's "try again after/in ..." text."""
        header = super().retry_after(response)
        return header if header is not None else wait_from_text(response.text)


def wait_from_text(text: str) -> float | None:
    """Seconds to wait from "try again after <HTTP date>", "try again after 120 seconds"
    (Mailgun's documented 429) or "try again in 15 seconds"."""
    match = _TRY_AGAIN.search(text)
    if match is None:
        return None
    when = match.group(2).strip().rstrip(".")
    if match.group(1).lower() == "after":
        at = parse_retry_after(when)
        if at is not None:
            return at
    duration = _DURATION.match(when)
    # After "after", a bare number is no duration (it may start a date Mailgun reworded).
    if duration is None or (match.group(1).lower() == "after" and not duration.group(2)):
        return None
    unit = (duration.group(2) or "s").lower()
    scale = 3600 if unit.startswith("h") else 60 if unit.startswith("m") else 1
    return min(float(duration.group(1)) * scale, MAX_RETRY_AFTER)
