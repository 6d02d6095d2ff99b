"""mailfailover: send transactional email through several providers, with failover.

>>> from mailfailover import FailoverMailer, Message
>>> mailer = FailoverMailer.from_config("config/mail.yml")  # doctest: +SKIP
>>> mailer.send(Message("a@example.com", "b@example.com", "Hi", "Hello"))  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import load_config
from .driver import Driver, Receipt, Setting
from .drivers.memory import MemoryDriver
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
from .health import DriverHealth
from .mailer import Attempt, FailoverMailer, SendResult
from .message import Attachment, Message

__all__ = [
    "AllProvidersFailed",
    "Attachment",
    "Attempt",
    "ConfigError",
    "DeliveryError",
    "Driver",
    "DriverHealth",
    "FailoverMailer",
    "InvalidMessage",
    "MailError",
    "MemoryDriver",
    "Message",
    "MessageRejected",
    "MissingDependency",
    "ProviderUnavailable",
    "Receipt",
    "SendResult",
    "Setting",
    "UnsupportedFeature",
    "__version__",
    "load_config",
]
