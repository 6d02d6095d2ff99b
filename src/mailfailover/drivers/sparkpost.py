"""``sparkpost``: SparkPost Transmissions API (``POST /api/v1/transmissions``).

``Authorization`` carries the bare API key (no scheme). SparkPost has no Cc or Bcc fields:
every recipient, To, Cc and Bcc alike, is an entry of ``recipients`` whose ``header_to``
is the visible To line, and the Cc line goes in ``content.headers.Cc`` (SparkPost's
"Using CC and BCC with the REST API"). Tags are each recipient's ``tags`` (up to 10, shown
in webhook events); ``campaign_id`` is left to the account's own use.

SparkPost runs its template language over every transmission unless told not to, so a
``{{amount}}`` in a body would be replaced (by nothing). The driver sends
``options.perform_substitutions: false`` unless the ``templating`` setting asks for it; as
SparkPost still substitutes in headers then, a ``{{`` in the subject, a header or a display
name is refused rather than sent changed. ``test_mode`` sends every recipient to SparkPost's
sink server (SparkPost's sandbox domain cannot send a message's own content).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from ..driver import Receipt, Setting
from ..errors import ConfigError, DeliveryError
from ..message import Attachment, Mailbox, Message
from ..webhooks.sparkpost import WEBHOOKS
from ._http import HTTP_SETTINGS, HttpDriver, Outcome
from ._wire import B64, MAX_RETRY_AFTER, HttpRequest, HttpResponse

__all__ = ["SparkPostDriver"]

#: Transmission metadata: "Maximum length - 10KB" (SparkPost's Transmissions reference).
MAX_METADATA_BYTES = 10 * 1024
#: SparkPost's sink server: "append the email addresses you are injecting into our system
#: with *.sink.sparkpostmail.com"; such mail is processed but never delivered.
SINK_DOMAIN = ".sink.sparkpostmail.com"
#: Bound on the To lines repeated in every recipient's header_to (see build_request).
MAX_HEADER_TO_BYTES = 20 * 1024 * 1024
#: Error codes that mean the account is not set up to send this (another provider may be):
#: 7001 "Unconfigured or unverified sending domain."
ERROR_CODES: Mapping[str | int, Outcome] = {"7001": "account"}


class SparkPostDriver(HttpDriver):
    """Sends through SparkPost's Transmissions API (US or EU)."""

    webhooks = WEBHOOKS

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,
        "api_key": Setting(secret=True, help="an API key with Transmissions: Read/Write"),
        "region": Setting("us", choices=("us", "eu"), help="SparkPost (us) or SparkPost EU"),
        "test_mode": Setting(
            False, bool, help="send to SparkPost's sink server: processed, never delivered"
        ),
        "templating": Setting(
            False, bool, help="let SparkPost's template language ({{...}}) run on the content"
        ),
    }
    default_base_url: ClassVar[str] = "https://api.sparkpost.com"
    regional_base_urls: ClassVar[Mapping[str, str]] = {
        "us": "https://api.sparkpost.com",
        "eu": "https://api.eu.sparkpost.com",
    }
    #: "Maximum number of tags - 10 per recipient ... Any tags over the limits are ignored."
    max_tags: ClassVar[int | None] = 10
    #: "The transmission content (text + html + attachments + inline images) is limited to
    #: 20 MBs."
    max_message_bytes: ClassVar[int | None] = 20 * 1024 * 1024
    max_metadata_bytes: ClassVar[int | None] = MAX_METADATA_BYTES
    error_codes: ClassVar[Mapping[str | int, Outcome]] = ERROR_CODES

    @classmethod
    def validate_settings(cls, settings: Mapping[str, Any], *, driver: str) -> dict[str, Any]:
        if "sandbox" in settings:
            raise ConfigError(
                "setting 'sandbox' was removed: SparkPost's sandbox domain sends only its "
                "'my-first-email' template, never your message; use 'test_mode: true' "
                "(SparkPost's sink server) to send without delivering",
                driver=driver,
            )
        return super().validate_settings(settings, driver=driver)

    def build_request(self, message: Message) -> HttpRequest:
        templating = bool(self.settings["templating"])
        if not templating:
            self._check_no_template_syntax(message)
        to_line = ", ".join(_display(mb) for mb in message.mailboxes("to"))
        # Every recipient carries the whole visible To line in its header_to, so the body
        # grows with recipients x To addresses: refuse before building what SparkPost
        # could never take (10,000 To addresses would make a body of about 2 GB).
        repeated = len(to_line.encode("utf-8")) * len(message.recipients())
        if repeated > MAX_HEADER_TO_BYTES:
            self.unsupported(
                f"{len(message.recipients())} recipients each repeating a {len(to_line)}-"
                f"character To line exceed SparkPost's request size",
                field="to",
            )
        recipients: list[dict[str, Any]] = []
        seen: set[str] = set()
        for field in ("to", "cc", "bcc"):
            for mailbox in message.mailboxes(field):
                key = f"{mailbox.local}@{mailbox.ascii_domain.lower()}"
                if key in seen:  # one envelope recipient per address, as SMTP would do
                    continue
                seen.add(key)
                envelope = mailbox.ascii_email
                if self.settings["test_mode"]:
                    envelope += SINK_DOMAIN
                recipient: dict[str, Any] = {"address": {"email": envelope, "header_to": to_line}}
                if message.tags:
                    recipient["tags"] = list(message.tags)
                recipients.append(recipient)
        sender = message.sender_mailbox
        sender_obj = {"email": sender.ascii_email}
        if sender.name:
            sender_obj["name"] = sender.name
        content: dict[str, Any] = {"from": sender_obj, "subject": message.subject}
        if message.text is not None:
            content["text"] = message.text
        if message.html is not None:
            content["html"] = message.html
        if message.reply_to:
            content["reply_to"] = ", ".join(_display(mb) for mb in message.mailboxes("reply_to"))
        headers: dict[str, str] = {}
        if message.cc:
            headers["Cc"] = ", ".join(_display(mb) for mb in message.mailboxes("cc"))
        headers["Message-ID"] = message.message_id
        headers.update(message.headers)
        content["headers"] = headers
        attachments = [_part(a) for a in message.attachments if not a.inline]
        inline_images = [_part(a) for a in message.attachments if a.inline]
        if attachments:
            content["attachments"] = attachments
        if inline_images:
            content["inline_images"] = inline_images
        payload: dict[str, Any] = {}
        if not templating:
            # "Can only be set to false when using an inline template": always the case here.
            payload["options"] = {"perform_substitutions": False}
        payload["recipients"] = recipients
        payload["content"] = content
        if message.metadata:
            payload["metadata"] = dict(message.metadata)
        auth_header = {"Authorization": str(self.settings["api_key"])}
        return HttpRequest("/api/v1/transmissions", json=payload, headers=auth_header)

    def _check_no_template_syntax(self, message: Message) -> None:
        """With substitutions off SparkPost still runs headers through its template engine
        ("Headers are still passed to the substitution engine"): refuse a ``{{`` there."""
        fields: list[tuple[str, str]] = [("subject", message.subject)]
        fields += [("headers", value) for value in message.headers.values()]
        for field in ("sender", "to", "cc", "reply_to"):
            mailboxes = (message.sender_mailbox,) if field == "sender" else message.mailboxes(field)
            fields += [(field, mailbox.name or "") for mailbox in mailboxes]
        for field, text in fields:
            if "{{" in text or "}}" in text:
                self.unsupported(
                    "SparkPost would run '{{ }}' in a header through its template language; "
                    "set templating: true if that is meant",
                    field=field,
                )

    def parse_success(self, response: HttpResponse, message: Message) -> Receipt:
        body = self.json_object(response)
        transmission_id = self.required_id(body, ("results", "id"), response)
        accepted = body["results"].get("total_accepted_recipients")
        if not isinstance(accepted, int) or isinstance(accepted, bool):
            self.bad_response("no results.total_accepted_recipients in the answer", response)
        if accepted == 0:
            errors = body["results"].get("rcpt_to_errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
                # "transmission created, but with validation errors": every recipient was
                # refused as invalid, which another provider would refuse as well.
                detail, code = _describe(errors[0])
                raise self.error("rejected", f"no recipient was accepted: {detail}", response,
                                 code)  # fmt: skip
            self.bad_response("SparkPost accepted none of the recipients", response)
        return Receipt(driver=self.name, message_id=transmission_id, response=body)

    def error_detail(self, response: HttpResponse) -> tuple[str, Any]:
        body = response.json
        errors = body.get("errors") if isinstance(body, Mapping) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            return _describe(errors[0])
        return super().error_detail(response)

    def classify(
        self, response: HttpResponse, detail: str, code: str | int | None
    ) -> DeliveryError | None:
        if response.status == 420:
            # "If a transmission will push you over the sandbox, hourly, daily, or monthly
            # sending limit ... 420": no limit resets sooner than the hour.
            wait = self.retry_after(response) or MAX_RETRY_AFTER
            return self.error("rate_limited", detail, response, code, retry_after=wait)
        return None


def _display(mailbox: Mailbox) -> str:
    """``Name <local@domain>``, the domain in IDNA: SparkPost encodes names, not domains."""
    return str(mailbox.address(ascii_domain=True))


def _part(attachment: Attachment) -> dict[str, Any]:
    # SparkPost writes an inline image's `name` into its Content-ID.
    name = str(attachment.content_id) if attachment.inline else attachment.filename_or()
    return {"name": name, "type": attachment.mimetype, "data": B64(attachment.content)}


def _describe(error: Mapping[str, Any]) -> tuple[str, Any]:
    message = str(error.get("message") or "").strip()
    description = str(error.get("description") or "").strip()
    text = f"{message}: {description}" if message and description else message or description
    return text or json.dumps(dict(error))[:300], error.get("code")
