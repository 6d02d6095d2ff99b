"""``file``: writes each message as an ``.eml`` file into a folder (an outbox).

The file is the message as an SMTP server would receive it plus a ``Bcc`` header when the
message has Bcc recipients, so that re-sending the outbox (``mailfailover send --eml``)
reaches them too.

The file name is made only from the time, a counter and a random part: no message field
(subject, message id, attachment names) takes part in it, so nothing a caller sends can
steer a write outside the folder. Each file is written to a temporary name in the same
folder and renamed into place, so a reader never sees half a message.
"""

from __future__ import annotations

import email.policy
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from ..driver import Driver, Receipt, Setting, check_tags_and_metadata, tracking_headers
from ..errors import ProviderUnavailable
from ..message import Message

__all__ = ["FileDriver"]


class FileDriver(Driver):
    """Delivers into ``directory`` (default ``./outbox``), one ``.eml`` per message."""

    settings_spec: ClassVar[Mapping[str, Setting]] = {
        "directory": Setting("./outbox", help="folder the .eml files go to; created if missing"),
        "tags_and_metadata": Setting("headers", choices=("headers", "refuse"),
                                     help="carry them as X-Tags/X-Metadata, or refuse them"),
    }  # fmt: skip

    @property
    def directory(self) -> Path:
        return Path(self.settings["directory"])

    def send(self, message: Message) -> Receipt:
        self.check_limits(message)
        check_tags_and_metadata(self, message)
        policy = email.policy.SMTPUTF8 if message.needs_smtputf8 else email.policy.SMTP
        mime = message.to_mime(policy=policy)
        for name, value in tracking_headers(message).items():
            mime[name] = value
        if message.bcc:
            # The outbox is a queue that `mailfailover send --eml` re-sends from: the file
            # keeps the Bcc recipients the envelope would carry, as sendmail's -t reads them.
            ascii_domains = not getattr(policy, "utf8", False)
            mime["Bcc"] = [
                mb.address(ascii_domain=ascii_domains) for mb in message.mailboxes("bcc")
            ]
        data = mime.as_bytes()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        name = f"{stamp}-{uuid.uuid4().hex[:12]}.eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / name
            temporary = self.directory / f".{name}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ProviderUnavailable(
                f"cannot write to the outbox: {exc.strerror or exc}",
                reason="server_error",
                driver=self.name,
            ) from exc
        return Receipt(
            driver=self.name, message_id=message.message_id, response={"path": str(path)}
        )
