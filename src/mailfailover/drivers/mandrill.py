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

from ..driver import Receipt, Setting
from ..errors import DeliveryError
from ..message import Message
from ..webhooks.mandrill import WEBHOOKS
from ._http import HTTP_SETTINGS, HttpDriver, Outcome
from ._wire import B64, HttpRequest, HttpResponse

__all__ = ["MandrillDriver"]

ACCEPTED = frozenset({"sent", "queued", "scheduled"})
REFUSED = frozenset({"rejected", "invalid"})
#: reject_reason values that say this Mandrill account cannot send (another provider can):
#: an unverified sending domain, or a test key past its limit. Every other reason is about
#: the message or its recipients (hard/soft bounce, spam complaint, unsubscribe, the
#: account's own deny list or rules, an invalid sender) and is a rejection.
PROVIDER_SIDE_REASONS = frozenset({"unsigned", "test-mode-limit"})
#: Error ``name`` s by classification; any other name falls back to the HTTP status.
ERROR_NAMES: Mapping[str | int, Outcome] = {
    **dict.fromkeys(("ValidationError", "Invalid_Reject", "Invalid_Tag_Name"), "rejected"),
    "Invalid_Key": "auth",
    **dict.fromkeys(("PaymentRequired", "Unknown_Subaccount", "Unknown_Sender"), "account"),
    **dict.fromkeys(("GeneralError", "ServiceUnavailable"), "server_error"),
    # The spec's RateLimited error: {"code": 429, "name": "RequestLimitExceeded"}, which
    # (like every Mandrill error) may come with HTTP 500.
    "RequestLimitExceeded": "rate_limited",
}
MAX_TAG_LENGTH = 50


class MandrillDriver(HttpDriver):
    """Sends through Mandrill; a Mandrill test key (created in its settings) never delivers."""

    webhooks = WEBHOOKS

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,
        "api_key": Setting(secret=True, help="Mandrill API key (a test key sends nothing)"),
    }
    default_base_url: ClassVar[str] = "https://mandrillapp.com"
    max_message_bytes: ClassVar[int | None] = 25 * 1024 * 1024
    tag_pattern: ClassVar[str | None] = rf"(?!_).{{1,{MAX_TAG_LENGTH}}}"
    tag_rule: ClassVar[str] = (
        f"Mandrill tags may not start with '_' and are at most {MAX_TAG_LENGTH} characters"
    )
    error_codes: ClassVar[Mapping[str | int, Outcome]] = ERROR_NAMES

    def build_request(self, message: Message) -> HttpRequest:
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
            headers["Reply-To"] = ", ".join(m.header_text() for m in message.mailboxes("reply_to"))
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

    def parse_success(self, response: HttpResponse, message: Message) -> Receipt:
        results = response.json
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
        self, refused: list[Mapping[str, Any]], response: HttpResponse
    ) -> DeliveryError:
        """The failure for a 200 in which Mandrill refused every recipient."""
        reasons = [str(r.get("reject_reason") or r["status"]) for r in refused]
        detail = "every recipient was refused: " + ", ".join(
            f"{r.get('email', '?')} {r['status']} ({reason})"
            for r, reason in zip(refused, reasons, strict=True)
        )
        outcome: Outcome = "account" if PROVIDER_SIDE_REASONS.intersection(reasons) else "rejected"
        error = self.error(outcome, detail, response, ",".join(sorted(set(reasons))))
        error.response = {"recipients": refused}
        return error

    def error_detail(self, response: HttpResponse) -> tuple[str, Any]:
        """Mandrill's ``message``, and its error ``name`` as the code the table is keyed by."""
        detail, code = super().error_detail(response)
        body = response.json
        name = body.get("name") if isinstance(body, Mapping) else None
        return detail, name if isinstance(name, str) else code
