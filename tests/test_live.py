"""Live sends against real providers: skipped unless credentials are in the environment.

For a driver NAME, set ``MAILFAILOVER_LIVE_<NAME>`` to a JSON object of its settings (use
the provider's test or sandbox mode where it has one: ``{"api_key": "...", "domain": "...",
"test_mode": true}``), and ``MAILFAILOVER_LIVE_FROM`` / ``MAILFAILOVER_LIVE_TO`` to a sender
the provider accepts and a recipient you own. Then::

    python -m pytest -m live tests/test_live.py

CI has no credentials (and no network): these tests are always skipped there.
"""

from __future__ import annotations

import json
import os

import pytest

from mailfailover import FailoverMailer, Receipt
from mailfailover.testing import simple_message

DRIVERS = ("smtp", "ses", "mailgun", "sendgrid", "postmark", "mandrill", "mailjet",
           "sparkpost", "resend", "brevo")  # fmt: skip


@pytest.mark.live
@pytest.mark.parametrize("driver", DRIVERS)
def test_live_send(driver: str) -> None:
    """The driver delivers a real message to the real provider and gets its id back."""
    raw = os.environ.get(f"MAILFAILOVER_LIVE_{driver.upper()}")
    sender = os.environ.get("MAILFAILOVER_LIVE_FROM")
    recipient = os.environ.get("MAILFAILOVER_LIVE_TO")
    if not (raw and sender and recipient):
        pytest.skip(f"no live credentials for {driver} in the environment")
    settings = json.loads(raw)
    config = {"drivers": [{"name": f"live {driver}", "module": driver, "settings": settings}]}
    with FailoverMailer.from_config(config) as mailer:
        result = mailer.send(
            simple_message(sender=sender, to=[recipient], subject=f"mailfailover live: {driver}")
        )
    assert result.driver == f"live {driver}"
    assert isinstance(result.receipt, Receipt)
    assert result.message_id
