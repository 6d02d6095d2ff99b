"""Every provider re-sends webhooks: through the mailer, a second delivery of the same
signed request gives no events and calls no hook; a hard bounce suppresses once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
import test_brevo_webhooks as brevo
import test_mailgun_webhooks as mailgun
import test_mailjet_webhooks as mailjet
import test_mandrill_webhooks as mandrill
import test_postmark_webhooks as postmark
import test_resend_webhooks as resend
import test_sendgrid_webhooks as sendgrid
import test_ses_webhooks as ses
import test_sparkpost_webhooks as sparkpost
from webhook_support import NOW, basic

from mailfailover import DeliveryEvent, FailoverMailer
from mailfailover.state import MemoryStore
from mailfailover.webhooks.ses import clear_certificate_cache

Case = Callable[[], tuple[Any, dict[str, str], bytes, str]]


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


CASES: dict[str, Case] = {
    "mailgun": lambda: (mailgun.driver(), {}, mailgun.signed(mailgun.FAILED_PERMANENT),
                        mailgun.URL),
    "sendgrid": lambda: (sendgrid.driver(), sendgrid.sign(sendgrid.BATCH), sendgrid.BATCH,
                         sendgrid.URL),
    "mandrill": lambda: (mandrill.driver(), {"X-Mandrill-Signature": mandrill.SIGNATURE},
                         mandrill.BODY, mandrill.URL),
    "resend": lambda: (resend.driver(), resend.sign(resend.BODY), resend.BODY, resend.URL),
    "postmark": lambda: (postmark.driver(), basic(postmark.CREDENTIALS),
                         _json(postmark.BOUNCE), postmark.URL),
    "mailjet": lambda: (mailjet.driver(), basic(mailjet.CREDENTIALS),
                        _json([v[0] for v in mailjet.EXAMPLES.values()]), mailjet.URL),
    "sparkpost": lambda: (sparkpost.driver(), basic(sparkpost.CREDENTIALS),
                          _json(sparkpost.EXAMPLES), sparkpost.URL),
    "brevo": lambda: (brevo.driver(), basic(brevo.CREDENTIALS),
                      _json([v[0] for v in brevo.EXAMPLES.values()]), brevo.URL),
    "ses": lambda: (ses.driver(), {}, _json(ses.envelope(ses.BOUNCE)), ses.URL),
}  # fmt: skip


@pytest.fixture(autouse=True)
def sns_certificate() -> Iterator[None]:
    clear_certificate_cache()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(ses.CERT_URL, body=ses.CERT_PEM)
        yield
    clear_certificate_cache()


@pytest.mark.parametrize("provider", sorted(CASES))
def test_a_redelivered_webhook_is_dropped(provider: str) -> None:
    driver, headers, body, url = CASES[provider]()
    seen: list[DeliveryEvent] = []
    mailer = FailoverMailer([driver], state=MemoryStore(clock=lambda: NOW), on_event=seen.append)
    first = mailer.handle_webhook(driver.name, headers, body, url)
    assert first
    assert len({e.event_id for e in first}) == len(first)
    suppressed = len(mailer.suppressions)
    assert mailer.handle_webhook(driver.name, headers, body, url) == []
    assert seen == first
    assert len(mailer.suppressions) == suppressed
