"""mailfailover: send transactional email through several providers, with failover.

>>> from mailfailover import FailoverMailer, Message
>>> mailer = FailoverMailer.from_config("config/mail.yml")  # doctest: +SKIP
>>> mailer.send(Message("a@example.com", "b@example.com", "Hi", "Hello"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import HttpConfig, MailerConfig, load_config
from .driver import Driver, Receipt, Setting
from .errors import (
    AllProvidersFailed,
    ConfigError,
    DeliveryError,
    InvalidMessage,
    MailError,
    MessageRejected,
    MessageSuppressed,
    MissingDependency,
    ProviderUnavailable,
    UnsupportedFeature,
    WebhookError,
)
from .events import DeliveryEvent
from .health import DriverHealth, State
from .mailer import FailoverMailer
from .message import Attachment, Mailbox, Message
from .policy import DriverPolicy
from .ratelimit import Rate
from .results import Attempt, SendResult

# A library leaves logging to the application: without this, Python's last-resort handler
# prints the library's warnings on stderr of an application that configured no logging.
logging.getLogger("mailfailover").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .testing import MemoryDriver

__all__ = [
    "AllProvidersFailed",
    "Attachment",
    "Attempt",
    "ConfigError",
    "DeliveryError",
    "DeliveryEvent",
    "Driver",
    "DriverHealth",
    "DriverPolicy",
    "FailoverMailer",
    "HttpConfig",
    "InvalidMessage",
    "MailError",
    "Mailbox",
    "MailerConfig",
    "MemoryDriver",
    "Message",
    "MessageRejected",
    "MessageSuppressed",
    "MissingDependency",
    "ProviderUnavailable",
    "Rate",
    "Receipt",
    "SendResult",
    "Setting",
    "State",
    "UnsupportedFeature",
    "WebhookError",
    "__version__",
    "load_config",
]


def __getattr__(name: str) -> Any:
    # MemoryDriver lives in mailfailover.testing (with the other test helpers) and is loaded
    # on first use: importing the package loads no driver module, so the core names none.
    if name == "MemoryDriver":
        from .testing import MemoryDriver

        return MemoryDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
