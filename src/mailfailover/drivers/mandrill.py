"""``mandrill``: Mailchimp Transactional (Mandrill) ``POST /api/1.0/messages/send``, JSON.

Mandrill takes its API key only as the ``key`` field of the JSON body (it has no auth
header); the key never appears in ``repr``, errors or receipts. ``message`` carries
``from_email``/``from_name``, one ``to`` list with ``type`` to/cc/bcc, ``headers``
(Reply-To, the message's ``Message-Id`` and custom headers), ``attachments``, ``images``
(inline images, ``name`` = Content-ID), ``tags`` and ``metadata``; ``preserve_recipients``
is set so every recipient sees the real To and Cc lines, as with every other driver.

A 200 answers one object per recipient (``sent``/``queued``/``scheduled``/``rejected``/
``invalid``): when no recipient was accepted the send failed, judged by ``reject_reason``.
Errors are ``{"status": "error", "code", "name", "message"}`` and are classified by
``name``: a ``ValidationError`` is a rejection even when it comes with HTTP 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import requests

from ..driver import Receipt, Setting
from ..errors import DeliveryError, MessageRejected, ProviderUnavailable
from ..message import Message
from ._http import B64, HTTP_SETTINGS, HttpDriver, HttpRequest

__all__ = ["MandrillDriver"]

ACCEPTED = frozenset({"sent", "queued", "scheduled"})
REFUSED = frozenset({"rejected", "invalid"})
#: reject_reason values that say this Mandrill account cannot send (another provider can):
#: an unverified sending domain, or a test key past its limit. Every other reason is about
#: the message or its recipients (hard/soft bounce, spam complaint, unsubscribe, the
#: account's own deny list or rules, an invalid sender) and is a rejection.
PROVIDER_SIDE_REASONS = frozenset({"unsigned", "test-mode-limit"})
#: Error names by classification; any other name falls back to the HTTP status.
REJECTED_NAMES = frozenset({"ValidationError", "Invalid_Reject", "Invalid_Tag_Name"})
AUTH_NAMES = frozenset({"Invalid_Key"})
ACCOUNT_NAMES = frozenset({"PaymentRequired", "Unknown_Subaccount", "Unknown_Sender"})
SERVER_NAMES = frozenset({"GeneralError", "ServiceUnavailable"})
MAX_TAG_LENGTH = 50


class MandrillDriver(HttpDriver):
    """Sends through Mandrill; a Mandrill test key (created in its settings) never delivers."""

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,
        "api_key": Setting(secret=True, help="Mandrill API key (a test key sends nothing)"),
    }
    default_base_url: ClassVar[str] = "https://mandrillapp.com"
    max_message_bytes: ClassVar[int | None] = 25 * 1024 * 1024

    def build_request(self, message: Message) -> HttpRequest:
        for tag in message.tags:
            if tag.startswith("_") or len(tag) > MAX_TAG_LENGTH:
                self.unsupported(
                    f"Mandrill tags may not start with '_' and are at most {MAX_TAG_LENGTH} "
                    "characters",
                    field="tags",
                )
        sender = message.sender_mailbox
        body: dict[str, Any] = {"from_email": sender.ascii_email}
        if sender.name:
            body["from_name"] = sender.name
        body["to"] = [
            {"email": m.ascii_email, **({"name": m.name} if m.name else {}), "type": field}
            for field in ("to", "cc", "bcc")
            for m in message.mailboxes(field)
        ]
        body["subject"] = message.subject
        if message.text is not None:
            body["text"] = message.text
        if message.html is not None:
            body["html"] = message.html
        headers: dict[str, str] = {}
        if message.reply_to:
            headers["Reply-To"] = ", ".join(str(m.address()) for m in message.mailboxes("reply_to"))
        headers["Message-Id"] = message.message_id
        body["headers"] = {**headers, **message.headers}
        attachments: list[dict[str, Any]] = []
        images: list[dict[str, Any]] = []
        for attachment in message.attachments:
            if attachment.inline and attachment.maintype != "image":
                self.unsupported("Mandrill can only inline images", field="attachments")
            part = {
                "type": attachment.mimetype,
                "name": (attachment.content_id if attachment.inline else None)
                or attachment.filename_or(),
                "content": B64(attachment.content),
            }
            (images if attachment.inline else attachments).append(part)
        if attachments:
            body["attachments"] = attachments
        if images:
            body["images"] = images
        if message.tags:
            body["tags"] = list(message.tags)
        if message.metadata:
            body["metadata"] = dict(message.metadata)
        body["preserve_recipients"] = True
        return HttpRequest(
            path="/api/1.0/messages/send",
            json={"key": str(self.settings["api_key"]), "message": body},
        )

    def parse_success(self, response: requests.Response, message: Message) -> Receipt:
        results = self.try_json(response)
        if isinstance(results, Mapping) and results.get("status") == "error":
            raise self.error_for(response)
        if (
            not isinstance(results, list)
            or not results
            or not all(isinstance(r, Mapping) and isinstance(r.get("status"), str) for r in results)
        ):
            self.bad_response("the body is not a list of recipient results", response)
        accepted = [r for r in results if r["status"] in ACCEPTED]
        refused = [r for r in results if r["status"] in REFUSED]
        if not accepted:
            if len(refused) != len(results):
                self.bad_response("no recipient has a known status", response)
            raise self.all_refused(refused, response)
        return Receipt(
            driver=self.name,
            message_id=str(accepted[0].get("_id") or "") or None,
            response={"recipients": results},
            refused_recipients=tuple(str(r.get("email", "")) for r in refused),
        )

    def all_refused(
        self, refused: list[Mapping[str, Any]], response: requests.Response
    ) -> DeliveryError:
        """The failure for a 200 in which Mandrill refused every recipient."""
        reasons = [str(r.get("reject_reason") or r["status"]) for r in refused]
        detail = "every recipient was refused: " + ", ".join(
            f"{r.get('email', '?')} {r['status']} ({reason})"
            for r, reason in zip(refused, reasons, strict=True)
        )
        extra: dict[str, Any] = {
            "driver": self.name, "status": response.status_code,
            "provider_code": ",".join(sorted(set(reasons))), "response": {"recipients": refused},
        }  # fmt: skip
        if PROVIDER_SIDE_REASONS.intersection(reasons):
            return ProviderUnavailable(detail, reason="account", **extra)
        return MessageRejected(detail, **extra)

    def classify(
        self, response: requests.Response, body: Any, detail: str, code: str | int | None
    ) -> DeliveryError | None:
        name = body.get("name") if isinstance(body, Mapping) else None
        if not isinstance(name, str):
            return None
        extra: dict[str, Any] = {
            "driver": self.name, "status": response.status_code, "provider_code": name,
            "response": body,
        }  # fmt: skip
        if name in REJECTED_NAMES:
            return MessageRejected(detail, **extra)
        if name in AUTH_NAMES:
            return ProviderUnavailable(detail, reason="auth", **extra)
        if name in ACCOUNT_NAMES:
            return ProviderUnavailable(detail, reason="account", **extra)
        if name in SERVER_NAMES:
            return self.unavailable(detail, response=response, reason="server_error", extra=extra)
        return self.default_error(response, body, detail, name)
