"""``brevo``: Brevo (formerly Sendinblue) transactional email, ``POST /v3/smtp/email``.

The key goes in the ``api-key`` header. Brevo cannot carry inline images, takes one
Reply-To address, display names of at most 70 characters and attachments whose name ends in
one of its allowed extensions (it infers the content type from it); anything else is
:class:`~mailfailover.errors.UnsupportedFeature` before any request. A text-only message
also gets its text as ``htmlContent`` (see :func:`_text_as_html`). Metadata travels as
JSON in the ``X-Mailin-custom`` header, which Brevo returns in its webhooks. Each request
carries Brevo's ``idempotencyKey`` (a UUID derived from the stable Message-ID), so the same
message sent again within Brevo's 30 minutes is not delivered twice.
"""

from __future__ import annotations

import email.header
import html
import json
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from ..driver import Receipt, Setting, content_digest
from ..errors import DeliveryError, MessageRejected
from ..message import Attachment, Mailbox, Message
from ..webhooks.brevo import WEBHOOKS
from ._http import HTTP_SETTINGS, HttpDriver, Outcome
from ._wire import B64, HttpRequest, HttpResponse, parse_retry_after, seconds_until

__all__ = ["BrevoDriver", "idempotency_key"]

#: "Allowed extensions for attachment file" (sendTransacEmail reference).
ALLOWED_EXTENSIONS = frozenset(
    (
        "xlsx", "xls", "ods", "docx", "docm", "doc", "csv", "pdf", "txt", "gif", "jpg", "jpeg",
        "png", "tif", "tiff", "rtf", "bmp", "cgm", "css", "shtml", "html", "htm", "zip", "xml",
        "ppt", "pptx", "tar", "ez", "ics", "mobi", "msg", "pub", "eps", "odt", "mp3", "m4a",
        "m4v", "wma", "ogg", "flac", "wav", "aif", "aifc", "aiff", "mp4", "mov", "avi", "mkv",
        "mpeg", "mpg", "wmv", "pkpass", "xlsm",
    )
)  # fmt: skip
#: Characters after which Brevo drops a non-ASCII display name (django-anymail's finding).
_NAME_SPECIALS = frozenset('()<>@,;:\\".[]')
_KEY_NAMESPACE = uuid.UUID("6f1c1a52-3f7e-4d0b-9a53-6d61696c666f")
#: "Name of the recipient. **Maximum allowed characters are 70**" (and of the sender).
MAX_NAME_LENGTH = 70


def idempotency_key(message: Message) -> str:
    """Brevo's ``idempotencyKey`` must be a UUID: a name-based one from the Message-ID and
    the digest of the message's content and recipients (:func:`content_digest`), so only
    the very same message shares it; a copy that reused the id does not."""
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{message.message_id}\n{content_digest(message)}"))


class BrevoDriver(HttpDriver):
    """Sends through Brevo's transactional email API."""

    webhooks = WEBHOOKS

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,
        "api_key": Setting(secret=True, help="a v3 API key (xkeysib-...)"),
        "test_mode": Setting(False, bool, help="X-Sib-Sandbox: drop: validated, never delivered"),
    }
    default_base_url: ClassVar[str] = "https://api.brevo.com"
    supports_inline: ClassVar[bool] = False
    max_reply_to: ClassVar[int | None] = 1
    message_id_path: ClassVar[tuple[str, ...]] = ("messageId",)
    error_codes: ClassVar[Mapping[str | int, Outcome]] = {
        "not_enough_credits": "account",
        "account_under_validation": "account",
    }

    def build_request(self, message: Message) -> HttpRequest:
        for name, value in message.headers.items():
            if not value.isascii():
                # Brevo sends header values as raw 8-bit UTF-8 (and decodes RFC 2047 first).
                self.unsupported(
                    f"Brevo cannot encode the non-ASCII {name!r} header", field="headers"
                )
        custom = json.dumps(message.metadata) if message.metadata else None
        if custom is not None and (not custom.isascii() or "\\u" in custom):
            self.unsupported("Brevo cannot encode non-ASCII metadata", field="metadata")
        attachments = [self._attachment(a) for a in message.attachments]
        data: dict[str, Any] = {"sender": self._person(message.sender_mailbox, "sender")}
        for field in ("to", "cc", "bcc"):
            if getattr(message, field):
                data[field] = [self._person(mb, field) for mb in message.mailboxes(field)]
        if message.reply_to:
            data["replyTo"] = self._person(message.mailboxes("reply_to")[0], "reply_to")
        data["subject"] = message.subject
        if message.text is not None:
            data["textContent"] = message.text
        if message.html is not None:
            data["htmlContent"] = message.html
        elif message.text is not None:
            # Brevo's spec: htmlContent is "Mandatory if 'templateId' is not passed". Brevo
            # takes textContent alone, but turns it into an HTML-only message and drops the
            # text part; with both given it sends both as they are. So a text-only message
            # carries its text unchanged plus that text as HTML (escaped, lines kept).
            data["htmlContent"] = _text_as_html(message.text)
        headers: dict[str, str] = dict(message.headers)
        if custom is not None:
            headers["X-Mailin-custom"] = custom
        headers["idempotencyKey"] = idempotency_key(message)
        if self.settings["test_mode"]:
            headers["X-Sib-Sandbox"] = "drop"
        data["headers"] = headers
        if attachments:
            data["attachment"] = attachments
        if message.tags:
            data["tags"] = list(message.tags)
        auth_header = {"api-key": str(self.settings["api_key"])}
        return HttpRequest("/v3/smtp/email", json=data, headers=auth_header)

    def _attachment(self, attachment: Attachment) -> dict[str, Any]:
        name = attachment.filename_or()
        extension = name.rpartition(".")[2].lower() if "." in name else ""
        if extension not in ALLOWED_EXTENSIONS:
            self.unsupported(
                f"Brevo does not accept attachments named {name!r} (it allows only "
                "documented extensions and infers the content type from the name)",
                field="attachments",
            )
        return {"name": name, "content": B64(attachment.content)}

    def _person(self, mailbox: Mailbox, field: str) -> dict[str, str]:
        person = _person(mailbox)
        if len(person.get("name", "")) > MAX_NAME_LENGTH:
            self.unsupported(
                f"Brevo takes display names of at most {MAX_NAME_LENGTH} characters (as sent); "
                f"{mailbox.email}'s has {len(person['name'])}",
                field=field,
            )
        return person

    def send(self, message: Message) -> Receipt:
        try:
            return super().send(message)
        except MessageRejected as exc:
            if exc.provider_code == "duplicate_parameter" and "idempotency" in exc.detail.lower():
                # Brevo already processed this idempotencyKey within its 30 minutes. The key
                # covers the Message-ID *and* the digest of the content and recipients, so
                # it was this very message: accepted then, so delivered, not refused.
                return Receipt(driver=self.name, message_id=None, response=exc.response)
            raise

    def classify(
        self, response: HttpResponse, detail: str, code: str | int | None
    ) -> DeliveryError | None:
        if code == "invalid_parameter" and "sender" in detail.lower():
            # The message's sender is a valid address (Message checks), so Brevo refusing
            # it means it is not a validated sender of this account: another may deliver.
            return self.error("account", detail, response, code)
        return None

    def retry_after(self, response: HttpResponse) -> float | None:
        """``Retry-After``, else ``x-sib-ratelimit-reset``: seconds until the window resets
        (Brevo's "Rate limit headers"); a value that looks like an epoch time is read as one."""
        standard = super().retry_after(response)
        if standard is not None:
            return standard
        reset = response.headers.get("x-sib-ratelimit-reset")
        try:
            number = float(reset) if reset else None
        except ValueError:
            return None
        if number is not None and number > 1_000_000_000:
            return seconds_until(reset)
        return parse_retry_after(reset)


def _text_as_html(text: str) -> str:
    """A plain-text body as HTML showing the same text: escaped, whitespace and lines kept."""
    return f'<pre style="white-space: pre-wrap; font-family: inherit">{html.escape(text)}</pre>'


def _person(mailbox: Mailbox) -> dict[str, str]:
    person = {"email": mailbox.email}
    if mailbox.name:
        name = mailbox.name
        if not name.isascii() and _NAME_SPECIALS.intersection(name):
            # Brevo silently drops such a name; an RFC 2047 encoded word survives.
            name = email.header.Header(name, "utf-8").encode()
        person["name"] = name
    return person
