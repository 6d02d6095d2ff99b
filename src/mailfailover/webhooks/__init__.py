"""Providers' tracking webhooks: verified first, then normalised into delivery events.

One module per provider holds its verification and its mapping to
:class:`~mailfailover.events.DeliveryEvent`; every check an authenticity decision rests on
lives in ``_verify.py``. A driver declares its provider's module as ``webhooks = ...`` and
:meth:`mailfailover.Driver.parse_webhook` does the rest.
"""

from __future__ import annotations

from ._base import ReplayGuard, WebhookRequest, Webhooks

__all__ = ["ReplayGuard", "WebhookRequest", "Webhooks"]
