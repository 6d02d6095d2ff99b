"""mailfailover: send transactional email through several providers, with failover."""

from __future__ import annotations

__version__ = "0.1.0"

from .driver import Driver, Receipt, Setting
from .errors import (
    AllProvidersFailed,
    ConfigError,
    DeliveryError,
    InvalidMessage,
    MailError,
    MessageRejected,
    MissingDependency,
    ProviderUnavailable,
    UnsupportedFeature,
)
from .message import Attachment, Message

__all__ = [
    "AllProvidersFailed",
    "Attachment",
    "ConfigError",
    "DeliveryError",
    "Driver",
    "InvalidMessage",
    "MailError",
    "Message",
    "MessageRejected",
    "MissingDependency",
    "ProviderUnavailable",
    "Receipt",
    "Setting",
    "UnsupportedFeature",
    "__version__",
]
