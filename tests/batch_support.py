"""What the Postmark batch tests share, sync and async (``POST /email/batch``)."""

from __future__ import annotations

from typing import Any

from mailfailover.message import Message
from mailfailover.testing import simple_message

__all__ = ["BATCH_URL", "ONE_URL", "TOKEN", "messages", "ok"]

TOKEN = "b1e2c3d4-aaaa-bbbb-cccc-0123456789ab"  # made up
BATCH_URL = "https://api.postmarkapp.com/email/batch"
ONE_URL = "https://api.postmarkapp.com/email"


def ok(n: int) -> dict[str, Any]:
    """Postmark's documented answer for the ``n``-th message of a batch, sent."""
    return {"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{n}",
            "SubmittedAt": "2026-03-01T12:00:00.0000000Z", "To": f"r{n}@example.com"}  # fmt: skip


def messages(n: int, start: int = 0) -> list[Message]:
    """``n`` distinct messages, to ``r<i>@example.com`` with subject ``Hello <i>``."""
    return [simple_message(to=[f"r{i}@example.com"], subject=f"Hello {i}")
            for i in range(start, start + n)]  # fmt: skip
