"""``acme``: an example mailfailover driver for the (fictional) Acme Mail HTTP API.

Acme takes ``POST /v1/messages`` with a JSON body and a bearer token, and answers
``202 {"id": "..."}``. It cannot carry attachments and takes at most three tags, so the
driver refuses those messages with ``UnsupportedFeature`` *before* any request, and the
mailer moves on to the next driver instead of silently dropping data.

Everything else (the pooled session, timeouts, ``base_url``, turning network errors into
``ProviderUnavailable``, classifying 4xx/5xx answers, ``Retry-After``) comes from
mailfailover's shared ``HttpDriver`` base.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mailfailover import Message, Receipt, Setting
from mailfailover.drivers import HTTP_SETTINGS, HttpDriver, HttpRequest, HttpResponse

__all__ = ["AcmeDriver"]
__version__ = "0.1.0"


class AcmeDriver(HttpDriver):
    """Sends through Acme Mail; ``sandbox: true`` validates without delivering."""

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        **HTTP_SETTINGS,  # base_url, timeout, connect_timeout, pool_size
        "api_key": Setting(secret=True, help="the Acme API key (never shown in repr or errors)"),
        "sandbox": Setting(False, bool, help="validate the message but deliver nothing"),
    }
    default_base_url: ClassVar[str] = "https://api.acme-mail.example"
    max_tags: ClassVar[int | None] = 3
    supports_inline: ClassVar[bool] = False

    def build_request(self, message: Message) -> HttpRequest:
        # Checked before any network call: HttpDriver.send() calls check_limits() (max_tags,
        # supports_inline) and then this method, and only then posts.
        if message.attachments:
            self.unsupported("Acme cannot carry attachments", field="attachments")
        payload: dict[str, Any] = {
            "from": message.sender,
            "to": list(message.to),
            "subject": message.subject,
            # The message's own Message-ID, so a retry through another provider after an
            # ambiguous timeout is recognisably the same message.
            "headers": {**message.headers, "Message-ID": message.message_id},
        }
        for field in ("cc", "bcc", "reply_to", "tags"):
            if getattr(message, field):
                payload[field] = list(getattr(message, field))
        if message.text is not None:
            payload["text"] = message.text
        if message.html is not None:
            payload["html"] = message.html
        if message.metadata:
            payload["metadata"] = dict(message.metadata)
        if self.settings["sandbox"]:
            payload["sandbox"] = True
        return HttpRequest(
            path="/v1/messages",
            json=payload,
            headers={
                "Authorization": f"Bearer {self.settings['api_key']}",
                # Acme de-duplicates on this key, so a retried request is sent only once.
                "Idempotency-Key": message.message_id,
            },
        )

    def parse_success(self, response: HttpResponse, message: Message) -> Receipt:
        body = self.json_object(response)  # a 2xx that is not a JSON object is a failure
        message_id = body.get("id")
        if not isinstance(message_id, str) or not message_id:
            self.bad_response("the answer has no id", response)
        return Receipt(driver=self.name, message_id=message_id, response=dict(body))
