"""``postmark``: Postmark's Email API (``POST /email``, JSON).

Addresses are ``"Name <addr>"`` strings, comma-separated in ``To``/``Cc``/``Bcc``/``ReplyTo``;
custom headers and the message's ``Message-ID`` go in ``Headers [{Name, Value}]``; one tag
(``Tag``); ``Metadata``; attachments ``{Name, Content (base64), ContentType}`` with
``ContentID: "cid:..."`` for inline images; ``MessageStream``. The server token travels in
``X-Postmark-Server-Token``. Success is 200 with ``ErrorCode: 0`` and ``MessageID``; errors
(mostly 422) carry ``ErrorCode``, which is what decides the classification.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..driver import Receipt, Setting
from ..errors import DeliveryError
from ..message import Message
from ..webhooks.postmark import WEBHOOKS
from ._http import HTTP_SETTINGS, HttpDriver, Outcome, batch_size_setting
from ._wire import B64, HttpRequest, HttpResponse

__all__ = ["PostmarkDriver"]

#: The token Postmark documents for test sends: validated like a real send, never delivered.
TEST_TOKEN = "POSTMARK_API_TEST"  # noqa: S105 - a public, documented value, not a secret
MAX_TAG_LENGTH = 1000
#: Postmark's batch endpoint takes at most 500 messages (and 50 MB) per call.
MAX_BATCH = 500
# Postmark's custom metadata FAQ: at most 10 fields, names <= 20 and values <= 80 characters,
# no keys that differ only in case.
MAX_METADATA_FIELDS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 10, 20, 80

#: Postmark ``ErrorCode`` values, by what they mean for failover.
ERROR_CODES: Mapping[str | int, Outcome] = {
    10: "auth",  # bad or missing server token
    # sender signature not found / not confirmed, no credits, account pending, may not send
    **dict.fromkeys((400, 401, 405, 412, 413), "account"),
    # invalid request/JSON, inactive recipient
    **dict.fromkeys((300, 402, 403, 406, 409, 411), "rejected"),
    100: "server_error",  # maintenance
    429: "rate_limited",
}
_STREAM = re.compile(r"\bmessage ?stream\b", re.IGNORECASE)
_INACTIVE = re.compile(r"inactive addresses:\s*(.*?)\.\s*Inactive recipients", re.I | re.S)


class PostmarkDriver(HttpDriver):
    """Sends through a Postmark server; ``test_mode`` sends with the POSTMARK_API_TEST token."""

    webhooks = WEBHOOKS

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,
        "server_token": Setting(secret=True, help="the Postmark server's API token"),
        "message_stream": Setting("outbound", help="the message stream ID to send through"),
        "test_mode": Setting(False, bool, help="send with POSTMARK_API_TEST: nothing delivered"),
        "batch_size": batch_size_setting(MAX_BATCH, "POST /email/batch"),
    }
    default_base_url: ClassVar[str] = "https://api.postmarkapp.com"
    max_recipients: ClassVar[int | None] = 50
    max_tags: ClassVar[int | None] = 1
    max_message_bytes: ClassVar[int | None] = 10 * 1024 * 1024
    tag_pattern: ClassVar[str | None] = rf".{{1,{MAX_TAG_LENGTH}}}"
    tag_rule: ClassVar[str] = f"Postmark tags are at most {MAX_TAG_LENGTH} characters"
    error_codes: ClassVar[Mapping[str | int, Outcome]] = ERROR_CODES
    max_batch: ClassVar[int] = MAX_BATCH
    max_batch_bytes: ClassVar[int | None] = 50 * 1024 * 1024
    #: "The /batch endpoint will return a 200-level http status, even when validation for
    #: individual messages may fail": an error status refuses the request itself (more
    #: than 500 messages, over 50 MB, not JSON), with nothing of it sent.
    rejected_batch_sent_nothing: ClassVar[bool] = True

    def batch_request(self, requests: Sequence[HttpRequest]) -> HttpRequest:
        """``POST /email/batch``: a JSON array of the single-send bodies (one server token)."""
        return HttpRequest(
            path="/email/batch", json=[r.json for r in requests], headers=requests[0].headers
        )

    def read_batch(
        self, response: HttpResponse, messages: Sequence[Message]
    ) -> list[Receipt | DeliveryError]:
        """A 200 whatever each message's fate: an array in the messages' order, each entry
        the single send's answer (``ErrorCode`` 0 and ``MessageID``, or the error)."""
        body = response.json
        if not isinstance(body, list) or not all(isinstance(item, Mapping) for item in body):
            raise self.bad_batch("not a JSON array of results")
        if len(body) != len(messages):
            raise self.bad_batch(f"{len(body)} results for {len(messages)} messages")
        return [
            self.item_answer(item, message, failed=item.get("ErrorCode", 0) not in (0, None))
            for item, message in zip(body, messages, strict=True)
        ]

    def build_request(self, message: Message) -> HttpRequest:
        self._check(message)
        payload: dict[str, Any] = {"From": message.sender_mailbox.header_text()}
        for field, key in (("to", "To"), ("cc", "Cc"), ("bcc", "Bcc"), ("reply_to", "ReplyTo")):
            if getattr(message, field):
                payload[key] = ", ".join(m.header_text() for m in message.mailboxes(field))
        payload["Subject"] = message.subject
        if message.text is not None:
            payload["TextBody"] = message.text
        if message.html is not None:
            payload["HtmlBody"] = message.html
        headers = {**message.headers, "Message-ID": message.message_id}
        payload["Headers"] = [{"Name": name, "Value": value} for name, value in headers.items()]
        if message.attachments:
            payload["Attachments"] = [
                {
                    "Name": attachment.filename_or(),
                    "Content": B64(attachment.content),
                    "ContentType": attachment.mimetype,
                    **({"ContentID": f"cid:{attachment.content_id}"} if attachment.inline else {}),
                }
                for attachment in message.attachments
            ]
        if message.tags:
            payload["Tag"] = message.tags[0]
        if message.metadata:
            payload["Metadata"] = dict(message.metadata)
        payload["MessageStream"] = self.settings["message_stream"]
        token = TEST_TOKEN if self.settings["test_mode"] else str(self.settings["server_token"])
        return HttpRequest(path="/email", json=payload, headers={"X-Postmark-Server-Token": token})

    def _check(self, message: Message) -> None:
        """Refuse, before any request, what Postmark's validation would reject."""
        for field in ("sender", "to", "cc", "bcc", "reply_to"):
            given = (message.sender,) if field == "sender" else getattr(message, field)
            if all(address.isascii() for address in given):
                continue  # an ASCII address has an ASCII local part: no need to parse it
            mailboxes = (message.sender_mailbox,) if field == "sender" else message.mailboxes(field)
            if any(mailbox.needs_smtputf8 for mailbox in mailboxes):
                self.unsupported("Postmark takes only ASCII local parts", field=field)
        metadata = message.metadata
        if (
            len(metadata) > MAX_METADATA_FIELDS
            or len({key.lower() for key in metadata}) != len(metadata)
            or any(len(key) > MAX_METADATA_KEY for key in metadata)
            or any(len(value) > MAX_METADATA_VALUE for value in metadata.values())
        ):
            self.unsupported(
                f"Postmark takes at most {MAX_METADATA_FIELDS} metadata fields, names up to "
                f"{MAX_METADATA_KEY} and values up to {MAX_METADATA_VALUE} characters, no "
                "names differing only in case",
                field="metadata",
            )

    def parse_success(self, response: HttpResponse, message: Message) -> Receipt:
        body = self.json_object(response)
        error_code = body.get("ErrorCode", 0)
        if error_code not in (0, None):
            raise self.error_for(response)  # a 200 that reports an error is that error
        message_id = self.required_id(body, ("MessageID",), response)
        refused: tuple[str, ...] = ()
        match = _INACTIVE.search(str(body.get("Message") or ""))
        if match:
            refused = tuple(a.strip() for a in match.group(1).split(",") if a.strip())
        return Receipt(
            driver=self.name, message_id=message_id, response=dict(body),
            refused_recipients=refused,
        )  # fmt: skip

    def error_detail(self, response: HttpResponse) -> tuple[str, Any]:
        detail, _ = super().error_detail(response)
        body = response.json
        return detail, body.get("ErrorCode") if isinstance(body, Mapping) else None

    def classify(
        self, response: HttpResponse, detail: str, code: str | int | None
    ) -> DeliveryError | None:
        if response.status == 429 or code == 429:
            return self.error("rate_limited", detail, response, code)
        if isinstance(code, int) and code not in ERROR_CODES and _STREAM.search(detail):
            # the message_stream setting names no stream of this server: configuration
            return self.error("account", detail, response, code)
        return None  # the table, then the defaults
