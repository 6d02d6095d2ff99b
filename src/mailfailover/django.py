"""A Django email backend that sends through mailfailover (extra ``django``).

In ``settings.py``::

    EMAIL_BACKEND = "mailfailover.django.EmailBackend"
    MAILFAILOVER = {"config": BASE_DIR / "config" / "mail.yml"}  # or the configuration inline

``send_mail``, ``send_mass_mail``, ``mail_admins``, ``mail_managers`` and
``EmailMessage.send()`` then go through the configured drivers with failover. Each Django
message is converted whole by :func:`to_message` or refused with :class:`InvalidEmail`
before anything is sent; after a send, ``message.mailfailover_result`` is the
:class:`~mailfailover.SendResult` (``None`` if it was not sent) and
``message.mailfailover_error`` the delivery error, if any.

One :class:`~mailfailover.FailoverMailer` serves the whole process (so every send shares the
drivers' connection pools and circuit breakers): built on first use, under a lock, from
``settings.MAILFAILOVER``; rebuilt in a forked child; closed when the interpreter exits
(``atexit``) or when the setting changes (``override_settings`` in tests).
:func:`get_mailer` returns it. ``docs/django.md`` has the whole story.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import AllProvidersFailed, ConfigError, DeliveryError, MissingDependency
from .mailer import FailoverMailer
from .message import Message

try:  # absolute imports: this is the real Django, not this module
    from django.conf import settings
    from django.core.mail import EmailMessage as DjangoEmailMessage
    from django.core.mail.backends.base import BaseEmailBackend
    from django.core.signals import setting_changed
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("django", "django") from None

from ._django_message import HeaderInjection, InvalidEmail, to_message

__all__ = ["EmailBackend", "HeaderInjection", "InvalidEmail", "get_mailer", "to_message"]

logger = logging.getLogger("mailfailover.django")

#: The Django setting read for the configuration.
SETTING = "MAILFAILOVER"
_WHERE = f"settings.{SETTING}"


def _config_source(value: Any) -> Any:
    """What :meth:`FailoverMailer.from_config` takes, from the setting's value."""
    if value is None:
        return None  # the library's own lookup: $MAILFAILOVER_CONFIG, ./config/mail.yml, ...
    if not isinstance(value, Mapping):
        raise ConfigError(
            'must be a dict: {"config": PATH} or the configuration itself', source=_WHERE
        )
    if "config" not in value:
        return dict(value)
    if len(value) != 1:
        raise ConfigError(
            '"config" (a path) takes no other keys beside it: put them in the file',
            source=_WHERE,
        )
    path = value["config"]
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError('"config" must be a path to a file or a folder', source=_WHERE)
    return path


class _ProcessMailer:
    """The one mailer of this process: built lazily and once, rebuilt after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mailer: FailoverMailer | None = None
        self._pid = 0

    def _usable(self, mailer: FailoverMailer | None) -> bool:
        # A mailer inherited through fork() is dropped, not closed: its connections are the
        # parent's. One closed by its user (get_mailer().close()) is replaced.
        return mailer is not None and self._pid == os.getpid() and not mailer._closed

    def get(self) -> FailoverMailer:
        mailer = self._mailer
        if mailer is not None and self._usable(mailer):
            return mailer
        with self._lock:
            if self._mailer is None or not self._usable(self._mailer):
                self._mailer = None
                source = _config_source(getattr(settings, SETTING, None))
                self._mailer = FailoverMailer.from_config(source)
                self._pid = os.getpid()
            return self._mailer

    def close(self) -> None:
        with self._lock:
            mailer, self._mailer = self._mailer, None
            ours = self._pid == os.getpid()
        if mailer is not None and ours:
            mailer.close()


_PROCESS = _ProcessMailer()
atexit.register(_PROCESS.close)


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        _PROCESS.close()


setting_changed.connect(_on_setting_changed, dispatch_uid="mailfailover.django.setting_changed")


def get_mailer() -> FailoverMailer:
    """This process's :class:`~mailfailover.FailoverMailer`, built from
    ``settings.MAILFAILOVER`` on first use (for ``health()``, ``suppressions``...)."""
    return _PROCESS.get()


class EmailBackend(BaseEmailBackend):
    """``EMAIL_BACKEND = "mailfailover.django.EmailBackend"``.

    Behaves as Django documents for email backends: ``send_messages`` returns how many
    messages were sent; a message with no recipients is skipped (not counted); with
    ``fail_silently`` a delivery failure (every provider down, or a provider rejecting the
    message) is swallowed and the message not counted, while a message that cannot be sent as
    written (:class:`InvalidEmail`) and a configuration error are always raised, as Django's
    SMTP backend raises for a bad header or address. Every message of a call is converted
    before the first is sent, so one invalid message means none is sent.

    ``open()`` builds the process's mailer (so a configuration error shows there);
    ``close()`` leaves it open for the next backend: its connections are pooled for the
    process. ``mailer=`` uses a mailer of your own instead.
    """

    def __init__(
        self, fail_silently: bool = False, *, mailer: FailoverMailer | None = None, **kwargs: Any
    ) -> None:
        # send_mail() passes username/password (None unless given): SMTP login details that
        # have no meaning here, where each driver's credentials are in the configuration.
        given = sorted(name for name, value in kwargs.items() if value is not None)
        if given:
            raise TypeError(
                f"mailfailover.django.EmailBackend takes no {', '.join(given)}: the providers' "
                "settings are in the mailfailover configuration"
            )
        super().__init__(fail_silently=fail_silently)
        self._given = mailer
        self._opened = False

    @property
    def mailer(self) -> FailoverMailer:
        """The mailer this backend sends through."""
        return self._given if self._given is not None else _PROCESS.get()

    def open(self) -> bool:
        """Make sure the mailer exists; True if this backend was not open yet."""
        if self._opened:
            return False
        self.mailer  # noqa: B018 - builds the process's mailer, raising a config error here
        self._opened = True
        return True

    def close(self) -> None:
        """Nothing to release per backend: the mailer's connections belong to the process."""
        self._opened = False

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send each message; return how many were sent."""
        if not email_messages:
            return 0
        pending: list[tuple[DjangoEmailMessage, Message | None]] = [
            (item, _convert(item)) for item in email_messages
        ]
        mailer = self.mailer
        sent = 0
        for django_message, message in pending:
            # Attributes of our own on Django's message, as django-anymail sets anymail_status.
            django_message.mailfailover_result = None  # type: ignore[attr-defined]
            django_message.mailfailover_error = None  # type: ignore[attr-defined]
            if message is None:
                continue
            try:
                result = mailer.send(message)
            except (DeliveryError, AllProvidersFailed) as exc:
                django_message.mailfailover_error = exc  # type: ignore[attr-defined]
                if not self.fail_silently:
                    raise
                logger.warning("message %s not sent (fail_silently): %s", message.message_id, exc)
                continue
            django_message.mailfailover_result = result  # type: ignore[attr-defined]
            sent += 1
        return sent


def _convert(django_message: object) -> Message | None:
    """The message to send, or None when it has no recipients (Django skips those)."""
    if not isinstance(django_message, DjangoEmailMessage):
        kind = type(django_message).__name__
        raise InvalidEmail(f"message: must be a Django EmailMessage, not {kind}", field="message")
    if not django_message.recipients():
        return None
    return to_message(django_message)
