"""``sendgrid``: Twilio SendGrid's v3 Mail Send API (``POST /v3/mail/send``, JSON).

One personalization carries to/cc/bcc as ``{email, name}`` objects; ``from`` and
``reply_to_list`` use the same objects; ``content`` holds text/plain before text/html;
custom headers and the message's ``Message-ID`` go in ``headers``; tags are ``categories``
(at most 10), metadata the personalization's ``custom_args``; attachments are base64 with
``disposition`` and, for inline images, ``content_id``. The key is a Bearer token. Success
is ``202`` with an empty body and the id in the ``X-Message-Id`` response header (``200``
in sandbox mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..driver import Receipt, Setting
from ..message import Mailbox, Message
from ..webhooks.sendgrid import WEBHOOKS
from ._http import HTTP_SETTINGS, HttpDriver
from ._wire import B64, HttpRequest, HttpResponse, seconds_until

__all__ = ["SendGridDriver"]

#: Headers SendGrid's reference says a request may not set (the rest are Message fields).
FORBIDDEN_HEADERS = frozenset({"x-sg-id", "x-sg-eid", "received", "dkim-signature"})
MAX_CATEGORY_LENGTH = 255


class SendGridDriver(HttpDriver):
    """Sends through SendGrid; ``region: eu`` selects the EU endpoint for EU subusers."""

    webhooks = WEBHOOKS

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,
        "api_key": Setting(secret=True, help="SendGrid API key with Mail Send permission"),
        "region": Setting("global", choices=("global", "eu"), help="global or eu"),
        "test_mode": Setting(False, bool, help="sandbox mode: validated, never delivered"),
    }
    default_base_url: ClassVar[str] = "https://api.sendgrid.com"
    regional_base_urls: ClassVar[Mapping[str, str]] = {
        "global": "https://api.sendgrid.com",
        "eu": "https://api.eu.sendgrid.com",
    }
    max_recipients: ClassVar[int | None] = 1000
    max_tags: ClassVar[int | None] = 10
    max_message_bytes: ClassVar[int | None] = 30 * 1024 * 1024
    # custom_args "may not exceed 10,000 bytes" (tsg_mail_v3, personalizations[].custom_args).
    max_metadata_bytes: ClassVar[int | None] = 10_000
    tag_pattern: ClassVar[str | None] = rf".{{1,{MAX_CATEGORY_LENGTH}}}"
    tag_rule: ClassVar[str] = f"SendGrid categories are at most {MAX_CATEGORY_LENGTH} characters"
    forbidden_headers: ClassVar[frozenset[str]] = FORBIDDEN_HEADERS

    def build_request(self, message: Message) -> HttpRequest:
        self._check(message)
        personalization: dict[str, Any] = {
            field: [_address(mailbox, quote=True) for mailbox in message.mailboxes(field)]
            for field in ("to", "cc", "bcc")
            if getattr(message, field)
        }
        if message.metadata:
            # SendGrid's spec types the top-level custom_args as a string and the
            # personalization's as an object: the object is the one that validates, and with
            # one personalization it applies to the whole message just the same.
            personalization["custom_args"] = dict(message.metadata)
        payload: dict[str, Any] = {
            "personalizations": [personalization],
            "from": _address(message.sender_mailbox),
            "subject": message.subject,
            "content": [
                {"type": kind, "value": value}
                for kind, value in (("text/plain", message.text), ("text/html", message.html))
                if value
            ],
            "headers": {**message.headers, "Message-ID": message.message_id},
        }
        if message.reply_to:
            payload["reply_to_list"] = [_address(m) for m in message.mailboxes("reply_to")]
        if message.attachments:
            payload["attachments"] = [
                {
                    "content": B64(attachment.content),
                    "type": attachment.mimetype,
                    "filename": attachment.filename_or(),
                    "disposition": "inline" if attachment.inline else "attachment",
                    **({"content_id": attachment.content_id} if attachment.inline else {}),
                }
                for attachment in message.attachments
            ]
        if message.tags:
            payload["categories"] = list(dict.fromkeys(message.tags))
        if self.settings["test_mode"]:
            payload["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return HttpRequest(
            path="/v3/mail/send",
            json=payload,
            headers={"Authorization": f"Bearer {self.settings['api_key']}"},
        )

    def _check(self, message: Message) -> None:
        """Refuse, before any request, what SendGrid's validation would reject."""
        if not message.subject:
            self.unsupported("SendGrid refuses an empty subject", field="subject")
        if not message.text and not message.html:
            self.unsupported("SendGrid refuses an empty body", field="text")
        seen: set[str] = set()
        for field in ("to", "cc", "bcc"):
            for mailbox in message.mailboxes(field):
                key = mailbox.ascii_email.lower()
                if key in seen:
                    self.unsupported(
                        f"SendGrid refuses {mailbox.email} twice across to, cc and bcc",
                        field=field,
                    )
                seen.add(key)

    def parse_success(self, response: HttpResponse, message: Message) -> Receipt:
        sandbox = self.settings["test_mode"] and response.status == 200
        if response.status != 202 and not sandbox:
            self.bad_response(f"SendGrid accepts with 202, not {response.status}", response)
        if response.content.strip():
            self.bad_response("SendGrid's acceptance has an empty body", response)
        message_id = response.headers.get("X-Message-Id") or None
        return Receipt(
            driver=self.name,
            message_id=message_id,
            response={"status": response.status, "x_message_id": message_id},
        )

    def error_detail(self, response: HttpResponse) -> tuple[str, Any]:
        """Every ``errors[]`` entry, with the field it names."""
        body = response.json
        errors = body.get("errors") if isinstance(body, Mapping) else None
        if isinstance(errors, list) and errors and all(isinstance(e, Mapping) for e in errors):
            texts = []
            for error in errors:
                text = str(error.get("message") or "error")
                field = error.get("field")
                if field not in (None, "", "null"):
                    text += f" (field {field})"
                texts.append(text)
            return "; ".join(texts)[:1000], None
        return super().error_detail(response)

    def retry_after(self, response: HttpResponse) -> float | None:
        """``Retry-After`` if sent, else ``X-RateLimit-Reset`` (epoch seconds)."""
        header = super().retry_after(response)
        if header is not None:
            return header
        return seconds_until(response.headers.get("X-RateLimit-Reset"))


def _address(mailbox: Mailbox, *, quote: bool = False) -> dict[str, str]:
    """``{email, name}``; in personalizations SendGrid mis-quotes names with , or ; so those
    are sent already quoted."""
    result = {"email": mailbox.ascii_email}
    name = mailbox.name
    if name:
        if quote and any(char in name for char in ",;"):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        result["name"] = name
    return result
