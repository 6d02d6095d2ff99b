"""``resend``: Resend's ``POST /emails`` with ``Authorization: Bearer <key>``.

Every request carries an ``Idempotency-Key`` derived from the message's stable
``message_id``: a retry of the same message within Resend's 24 hours (after a timeout,
or a later ``send`` of the same message) gets the first answer back instead of a second
delivery. Resend's tags are key/value pairs restricted to ASCII letters, digits, ``_`` and
``-``; they carry both our tags (``{name: tag, value: "true"}``) and our metadata
(``{name: key, value: value}``), and a tag or metadata entry outside that alphabet is
:class:`~mailfailover.errors.UnsupportedFeature`, never silently rewritten.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..driver import Receipt, Setting, content_digest
from ..errors import DeliveryError
from ..message import Attachment, Message
from ..webhooks.resend import WEBHOOKS
from ._http import HTTP_SETTINGS, HttpDriver, batch_size_setting
from ._wire import B64, MAX_RETRY_AFTER, HttpRequest, HttpResponse

__all__ = ["ResendDriver", "idempotency_key"]

#: "It can only contain ASCII letters (a-z, A-Z), numbers (0-9), underscores (_), or
#: dashes (-). It can contain no more than 256 characters." (tag name and value)
TAG_TEXT = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: "Recipient email address. For multiple addresses, send as an array of strings. Max 50."
MAX_TO = 50
#: "send up to 100 batch emails at once" (``POST /emails/batch``).
MAX_BATCH = 100
#: Error names for a key Resend does not accept at all (as opposed to one without rights).
AUTH_ERRORS = frozenset({"missing_api_key", "invalid_api_key", "restricted_api_key"})
QUOTA_ERRORS = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})


def idempotency_key(message: Message) -> str:
    """The ``Idempotency-Key`` for ``message``: its Message-ID without the angle brackets,
    a ``/`` and the first 32 hex digits of the digest of its content and recipients
    (:func:`content_digest`), so a different message that reused the id gets another key;
    a SHA-256 of both when that is longer than Resend's 256 characters."""
    digest = content_digest(message)
    key = f"{message.message_id.strip('<>')}/{digest[:32]}"
    if len(key) > 256:
        both = f"{message.message_id}\n{digest}".encode()
        key = "sha256-" + hashlib.sha256(both).hexdigest()
    return key


class ResendDriver(HttpDriver):
    """Sends through Resend's email API. Resend has no test mode: see the driver's docs."""

    webhooks = WEBHOOKS

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,
        "api_key": Setting(secret=True, help="an API key (sending access is enough)"),
        "batch_size": batch_size_setting(MAX_BATCH, "POST /emails/batch"),
    }
    default_base_url: ClassVar[str] = "https://api.resend.com"
    #: "max 40MB per email, after Base64 encoding of the attachments"
    max_message_bytes: ClassVar[int | None] = 40 * 1024 * 1024
    tag_pattern: ClassVar[str | None] = TAG_TEXT.pattern
    tag_rule: ClassVar[str] = "ASCII letters, digits, '_' and '-' (1 to 256 of them)"
    message_id_path: ClassVar[tuple[str, ...]] = ("id",)
    max_batch: ClassVar[int] = MAX_BATCH
    #: In permissive mode an invalid email is refused alone in ``errors``; a refusal of
    #: the whole request (more than 100 emails, a body that is not an array) created none:
    #: "When an email in your payload causes an error, that email cannot be created".
    rejected_batch_sent_nothing: ClassVar[bool] = True

    def batchable(self, message: Message) -> bool:
        """Resend's batch endpoint takes no attachments: such a message goes alone."""
        return not message.attachments

    def batch_request(self, requests: Sequence[HttpRequest]) -> HttpRequest:
        """``POST /emails/batch`` in permissive mode (``x-batch-validation: permissive``),
        so that one invalid message is refused alone instead of refusing the whole batch.
        The batch's ``Idempotency-Key`` is derived from its messages' keys."""
        keys = "\n".join(r.headers["Idempotency-Key"] for r in requests)
        headers = {
            "Authorization": requests[0].headers["Authorization"],
            "Idempotency-Key": "batch-" + hashlib.sha256(keys.encode()).hexdigest(),
            "x-batch-validation": "permissive",
        }
        return HttpRequest("/emails/batch", json=[r.json for r in requests], headers=headers)

    def read_batch(
        self, response: HttpResponse, messages: Sequence[Message]
    ) -> list[Receipt | DeliveryError]:
        """``{"data": [{"id"}...], "errors": [{"index", "message"}...]}``: ``errors`` name
        the refused messages by their index in the request; ``data`` holds the ids of the
        created ones, in request order."""
        body = response.json
        data = body.get("data") if isinstance(body, Mapping) else None
        errors = (body.get("errors") or []) if isinstance(body, Mapping) else None
        if not isinstance(data, list) or not isinstance(errors, list):
            raise self.bad_batch("no data and errors arrays")
        refused: dict[int, str] = {}
        for error in errors:
            index = error.get("index") if isinstance(error, Mapping) else None
            if not isinstance(index, int) or not 0 <= index < len(messages) or index in refused:
                raise self.bad_batch("an error names no message of the batch")
            refused[index] = str(error.get("message") or "refused")
        if len(data) != len(messages) - len(refused):
            raise self.bad_batch(f"{len(data)} ids for {len(messages) - len(refused)} messages")
        ids = iter(data)
        return [
            self.item_answer({"statusCode": 422, "name": "validation_error",
                              "message": refused[index]}, message, failed=True)
            if index in refused
            else self.item_answer(next(ids), message, failed=False)
            for index, message in enumerate(messages)
        ]  # fmt: skip

    def build_request(self, message: Message) -> HttpRequest:
        if len(message.to) > MAX_TO:
            self.unsupported(f"{len(message.to)} To addresses; Resend takes {MAX_TO}", field="to")
        tags = self._tags(message)
        data: dict[str, Any] = {"from": message.sender_mailbox.formatted()}
        for field in ("to", "cc", "bcc", "reply_to"):
            if getattr(message, field):
                data[field] = [mb.formatted() for mb in message.mailboxes(field)]
        data["subject"] = message.subject
        if message.text is not None:
            data["text"] = message.text
        if message.html is not None:
            data["html"] = message.html
        data["headers"] = {"Message-ID": message.message_id, **message.headers}
        if message.attachments:
            data["attachments"] = [_attachment(a) for a in message.attachments]
        if tags:
            data["tags"] = tags
        headers = {
            "Authorization": f"Bearer {self.settings['api_key']}",
            "Idempotency-Key": idempotency_key(message),
        }
        return HttpRequest("/emails", json=data, headers=headers)

    def _tags(self, message: Message) -> list[dict[str, str]]:
        for key, value in message.metadata.items():
            self._check_tag_text(key, "metadata")
            self._check_tag_text(value, "metadata")
        clash = sorted(set(message.tags) & set(message.metadata))
        if clash:
            self.unsupported(
                f"{clash[0]!r} is both a tag and a metadata key; Resend tags share one namespace",
                field="tags",
            )
        tags = [{"name": tag, "value": "true"} for tag in dict.fromkeys(message.tags)]
        return tags + [{"name": key, "value": value} for key, value in message.metadata.items()]

    def _check_tag_text(self, text: str, field: str) -> None:
        if not TAG_TEXT.fullmatch(text):
            self.unsupported(
                f"Resend tags take only ASCII letters, digits, '_' and '-' (1 to 256 of them); "
                f"{text!r} is not such a name or value",
                field=field,
            )

    def error_detail(self, response: HttpResponse) -> tuple[str, Any]:
        detail, code = super().error_detail(response)
        body = response.json
        if isinstance(body, Mapping) and isinstance(body.get("name"), str):
            code = body["name"]
        return detail, code

    def classify(
        self, response: HttpResponse, detail: str, code: str | int | None
    ) -> DeliveryError | None:
        status = response.status
        if status == 409:
            if code == "invalid_idempotent_request":
                # The key was already used for a different payload: another message went
                # out under it, and a failover would deliver a second one.
                return self.error(
                    "rejected",
                    f"{detail} (this Message-ID was already sent with different content)",
                    response,
                    code,
                )
            # concurrent_idempotent_requests: an earlier attempt at this very message is still
            # in progress at Resend. This request did not reach processing, so by the
            # contract (DESIGN.md) it is not ambiguous; the earlier attempt, which timed out,
            # already was.
            return self.error("server_error", detail, response, code)
        if status == 429 and code in QUOTA_ERRORS:
            wait = self.retry_after(response) or MAX_RETRY_AFTER
            return self.error("account", detail, response, code, retry_after=wait)
        if status == 403 and code not in AUTH_ERRORS:
            # e.g. validation_error "You can only send testing emails to your own email
            # address" or an unverified domain: this account cannot send it, another may.
            return self.error("account", detail, response, code)
        return None


def _attachment(attachment: Attachment) -> dict[str, Any]:
    part: dict[str, Any] = {
        "filename": attachment.filename_or(attachment.content_id or "attachment"),
        "content": B64(attachment.content),
        "content_type": attachment.mimetype,
    }
    if attachment.inline:
        part["content_id"] = attachment.content_id
    return part
