"""``mailjet``: Mailjet Send API v3.1 (``POST /v3.1/send``, HTTP Basic ``api_key:secret_key``).

One message per request, in ``Messages[0]``; ``send_many`` puts up to 50 messages in one
request's ``Messages``. Mailjet answers per message, in order: a 200, or a 400/403 when a
message of the request failed, carries ``{"Status": "error", "Errors": [...]}`` for each
refused message, which is the failure it says, whatever the HTTP status; the others were
sent. The provider's ids are per
recipient (``Messages[0].To[*].MessageUUID``); the receipt keeps the first one and the
whole answer. Mailjet forbids a ``Message-ID`` header, so the stable id goes in
``CustomID``, which Mailjet hands back in its events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..driver import Receipt, Setting, is_account_problem
from ..errors import DeliveryError
from ..message import Attachment, Mailbox, Message
from ..webhooks.mailjet import WEBHOOKS
from ._http import HTTP_SETTINGS, HttpDriver, Outcome, batch_size_setting
from ._wire import B64, HttpRequest, HttpResponse

__all__ = ["MailjetDriver"]

#: Headers Mailjet refuses in ``Headers`` (send-0011): each has a message property, or is
#: Mailjet's own. From the v3.1 guide's "List of forbidden headers", plus Reply-To.
FORBIDDEN_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "Sender", "Subject", "To", "Cc", "Bcc", "Reply-To", "Return-Path",
        "Delivered-To", "DKIM-Signature", "DomainKey-Status", "Received-SPF",
        "Authentication-Results", "Received", "X-Mailjet-Prio", "X-Mailjet-Debug",
        "User-Agent", "X-Mailer", "X-MJ-CustomID", "X-MJ-EventPayload", "X-MJ-Vars",
        "X-MJ-TemplateErrorDeliver", "X-MJ-TemplateErrorReporting", "X-MJ-TemplateLanguage",
        "X-Mailjet-TrackOpen", "X-Mailjet-TrackClick", "X-MJ-TemplateID", "X-MJ-WorkflowID",
        "X-Feedback-Id", "X-Mailjet-Segmentation", "List-Id", "X-MJ-MID", "X-MJ-ErrorMessage",
        "Date", "X-CSA-Complaints", "Message-Id", "X-Mailjet-Campaign",
        "X-MJ-StatisticsContactsListID",
    )
)  # fmt: skip

#: Message-level error codes that mean "this account may not send as this sender": another
#: provider may well be allowed to, so they fail over (send-0006/0007/0008 come as 403).
SENDER_NOT_AUTHORIZED = frozenset({"send-0006", "send-0007", "send-0008"})
ERROR_CODES: Mapping[str | int, Outcome] = {
    **dict.fromkeys(SENDER_NOT_AUTHORIZED, "account"),
    "mj-0001": "account",  # 401 "when API key is suspended"
    "mj-0015": "auth",  # 401 "did not provide valid authorization credentials"
}
#: "Send API v3.1 [...] the limit is 50 messages per call" (mj-0008 above it).
MAX_BATCH = 50


class MailjetDriver(HttpDriver):
    """Sends through Mailjet's Send API v3.1."""

    webhooks = WEBHOOKS

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,
        "api_key": Setting(secret=True, help="the API key (public key of the pair)"),
        "secret_key": Setting(secret=True, help="the API secret key (private key of the pair)"),
        "region": Setting("global", choices=("global", "us"), help="account region"),
        "test_mode": Setting(False, bool, help="SandboxMode: validated, never delivered"),
        "batch_size": batch_size_setting(MAX_BATCH, "POST /v3.1/send"),
    }
    default_base_url: ClassVar[str] = "https://api.mailjet.com"
    regional_base_urls: ClassVar[Mapping[str, str]] = {
        "global": "https://api.mailjet.com",
        "us": "https://api.us.mailjet.com",
    }
    #: Mailjet counts To + Cc + Bcc of one message against 50 (send-0015).
    max_recipients: ClassVar[int | None] = 50
    #: ``CustomCampaign`` names one campaign: one tag.
    max_tags: ClassVar[int | None] = 1
    #: "Remember to keep the size of your attachments small. They should not exceed 15 MB."
    max_message_bytes: ClassVar[int | None] = 15 * 1024 * 1024
    max_reply_to: ClassVar[int | None] = 1
    forbidden_headers: ClassVar[frozenset[str]] = FORBIDDEN_HEADERS
    forbidden_header_prefixes: ClassVar[tuple[str, ...]] = ("x-mj-", "x-mailjet-")
    error_codes: ClassVar[Mapping[str | int, Outcome]] = ERROR_CODES
    max_batch: ClassVar[int] = MAX_BATCH
    #: Mailjet documents no cap on a request's size, only "mj-0011 when the payload size is
    #: over the limit"; a batch stays within what it documents for one message.
    max_batch_bytes: ClassVar[int | None] = 15 * 1024 * 1024
    #: A request-level error ("Global Error", no ``Messages`` in the answer): "Mailjet
    #: never processed the batch at all" (Mailjet's Node SDK README, retry guidance).
    rejected_batch_sent_nothing: ClassVar[bool] = True

    def batch_request(self, requests: Sequence[HttpRequest]) -> HttpRequest:
        """The same ``POST /v3.1/send`` with every message in ``Messages``, in order (the
        payload root, ``SandboxMode``, is the same for all)."""
        first = requests[0]
        messages = [item for request in requests for item in request.json["Messages"]]
        return HttpRequest(first.path, json={**first.json, "Messages": messages}, auth=first.auth)

    def batch_answer(self, response: HttpResponse) -> bool:
        """A 2xx, or a 4xx that still answers per message: "a 400 status code is returned
        if one or more of the messages fails" while the others are sent (a 403 when the
        failure is a sender's); a 4xx without ``Messages`` is a global error."""
        if 200 <= response.status < 300:
            return True
        body = response.json
        return (
            400 <= response.status < 500
            and isinstance(body, Mapping)
            and isinstance(body.get("Messages"), list)
        )

    def read_batch(
        self, response: HttpResponse, messages: Sequence[Message]
    ) -> list[Receipt | DeliveryError]:
        """``Messages``: one result per message, in the request's order ("The messages'
        order is preserved from the user input"), each read like a single send's."""
        body = response.json
        results = body.get("Messages") if isinstance(body, Mapping) else None
        if not isinstance(results, list) or not all(isinstance(r, Mapping) for r in results):
            raise self.bad_batch("no Messages array of results")
        if len(results) != len(messages):
            raise self.bad_batch(f"{len(results)} results for {len(messages)} messages")
        return [
            self.item_answer({"Messages": [result]}, message,
                             failed=result.get("Status") == "error", status=_status(result))
            for result, message in zip(results, messages, strict=True)
        ]  # fmt: skip

    def build_request(self, message: Message) -> HttpRequest:
        data: dict[str, Any] = {"From": _person(message.sender_mailbox)}
        for field, key in (("to", "To"), ("cc", "Cc"), ("bcc", "Bcc")):
            if getattr(message, field):
                data[key] = [_person(mb) for mb in message.mailboxes(field)]
        if message.reply_to:
            data["ReplyTo"] = _person(message.mailboxes("reply_to")[0])
        data["Subject"] = message.subject
        if message.text is not None:
            data["TextPart"] = message.text
        if message.html is not None:
            data["HTMLPart"] = message.html
        if message.headers:
            data["Headers"] = dict(message.headers)
        attachments = [_attachment(a) for a in message.attachments if not a.inline]
        inlined = [_attachment(a, inline=True) for a in message.attachments if a.inline]
        if attachments:
            data["Attachments"] = attachments
        if inlined:
            data["InlinedAttachments"] = inlined
        if message.tags:
            data["CustomCampaign"] = message.tags[0]
        if message.metadata:
            data["EventPayload"] = json.dumps(message.metadata, ensure_ascii=False)
        data["CustomID"] = message.message_id
        payload: dict[str, Any] = {"Messages": [data]}
        if self.settings["test_mode"]:
            payload["SandboxMode"] = True
        auth = (str(self.settings["api_key"]), str(self.settings["secret_key"]))
        return HttpRequest("/v3.1/send", json=payload, auth=auth)

    def parse_success(self, response: HttpResponse, message: Message) -> Receipt:
        body = self.json_object(response)
        result = _first_message(body)
        if result is None:
            self.bad_response("no Messages[0] in the answer", response)
        if result.get("Status") != "success":
            error = self._message_error(result, response)
            if error is None:
                self.bad_response(f"Messages[0].Status is {result.get('Status')!r}", response)
            raise error
        message_id = _provider_id(result)
        if message_id is None and not self.settings["test_mode"]:
            # SandboxMode answers MessageUUID "" and MessageID 0; otherwise an id is due.
            self.bad_response("no MessageUUID or MessageID for the recipients", response)
        return Receipt(driver=self.name, message_id=message_id, response=body)

    def classify(
        self, response: HttpResponse, detail: str, code: str | int | None
    ) -> DeliveryError | None:
        body = response.json
        result = _first_message(body) if isinstance(body, Mapping) else None
        # Validation errors come per message, even on a 400.
        return None if result is None else self._message_error(result, response)

    def _message_error(
        self, result: Mapping[str, Any], response: HttpResponse
    ) -> DeliveryError | None:
        """The error a ``{"Status": "error", "Errors": [...]}`` message entry stands for."""
        errors = result.get("Errors")
        if result.get("Status") != "error" or not isinstance(errors, list) or not errors:
            return None
        first = errors[0] if isinstance(errors[0], Mapping) else {}
        code = first.get("ErrorCode")
        text = str(first.get("ErrorMessage") or "the message was refused")
        related = first.get("ErrorRelatedTo")
        if isinstance(related, list) and related:
            text += f" ({', '.join(str(r) for r in related)})"
        if len(errors) > 1:
            text += f"; and {len(errors) - 1} more error(s)"
        inner = first.get("StatusCode")
        outcome = ERROR_CODES.get(code) if isinstance(code, str) else None
        if outcome is None:
            outcome = _BY_INNER_STATUS.get(inner) if isinstance(inner, int) else None
        if outcome is None:
            server = isinstance(inner, int) and inner >= 500
            outcome = "server_error" if server else "rejected"
        if outcome == "rejected" and is_account_problem(text):
            outcome = "account"
        return self.error(outcome, text, response, code)


#: A message-level ``StatusCode`` without a known ``ErrorCode``, by what it means.
_BY_INNER_STATUS: Mapping[int, Outcome] = {403: "account", 401: "auth", 429: "rate_limited"}


def _person(mailbox: Mailbox) -> dict[str, str]:
    person = {"Email": mailbox.email}
    if mailbox.name:
        person["Name"] = mailbox.name
    return person


def _attachment(attachment: Attachment, *, inline: bool = False) -> dict[str, Any]:
    # Mailjet refuses an empty Filename (mj-0012).
    filename = attachment.filename_or(attachment.content_id or "attachment", extension=not inline)
    part: dict[str, Any] = {"ContentType": attachment.mimetype, "Filename": filename}
    if inline:
        part["ContentID"] = attachment.content_id
    part["Base64Content"] = B64(attachment.content)
    return part


def _status(result: Mapping[str, Any]) -> int:
    """The HTTP status of a message's first error (``StatusCode``), else 400."""
    errors = result.get("Errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    status = first.get("StatusCode") if isinstance(first, Mapping) else None
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status < 600:
        return status
    return 400


def _first_message(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    messages = body.get("Messages")
    if isinstance(messages, Sequence) and messages and isinstance(messages[0], Mapping):
        return messages[0]
    return None


def _provider_id(result: Mapping[str, Any]) -> str | None:
    """The first recipient's MessageUUID (or legacy MessageID), in To, Cc, Bcc order."""
    for key in ("To", "Cc", "Bcc"):
        recipients = result.get(key)
        if not isinstance(recipients, list):
            continue
        for recipient in recipients:
            if not isinstance(recipient, Mapping):
                continue
            uuid = recipient.get("MessageUUID")
            if isinstance(uuid, str) and uuid:
                return uuid
            legacy = recipient.get("MessageID")
            if isinstance(legacy, int) and not isinstance(legacy, bool) and legacy > 0:
                return str(legacy)
    return None
