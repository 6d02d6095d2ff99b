"""SMTP connection reuse: the pooled smtp driver vs a new connection per message.

A local aiosmtpd server (its own process) accepts and discards every message, either in
plain text (``plain``) or, as a real submission server on port 587 does, requiring
STARTTLS and AUTH (``starttls+auth``; a throw-away CA made with trustme). Variants, timed
in interleaved blocks, each building the message's MIME for every send:

  connection per message   smtplib.SMTP(...) [starttls, login] sendmail, quit for each
                           message: what Django's SMTP backend does when send_mail() is
                           called once per message
  django send_mail         django.core.mail.send_mail() with Django's own SMTP backend
                           (only when Django is installed)
  mailfailover pooled      FailoverMailer([smtp driver]).send(message): connections kept
                           in the driver's pool, RSET before reuse

Target: mailfailover at least 3x faster than a connection per message.

    python bench/smtp_reuse.py [--modes plain,starttls+auth] [--messages 1000] [--block 50]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import smtplib
import ssl
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import spawn
from _timing import compare, print_load_at_end, print_machine, quiet_library_logs
from happy_path import HTML, TEXT, make_message

from mailfailover import FailoverMailer
from mailfailover.drivers.smtp import SMTPDriver

HOST = "127.0.0.1"
LOCAL_HOSTNAME = "bench.localhost"  # as Django caches its FQDN: no DNS per connection
USER, PASSWORD = "bench", "bench-password"


@contextlib.contextmanager
def server(mode: str) -> Iterator[tuple[int, str | None]]:
    """The SMTP stand-in for ``mode``; yields its port and the CA file clients must trust."""
    if mode == "plain":
        with spawn("smtp") as port:
            yield port, None
        return
    import trustme

    ca = trustme.CA()
    with tempfile.TemporaryDirectory() as folder:
        cert, key, ca_file = (os.path.join(folder, n) for n in ("cert.pem", "key.pem", "ca.pem"))
        issued = ca.issue_cert(HOST, "localhost")
        issued.cert_chain_pems[0].write_to_path(cert)
        issued.private_key_pem.write_to_path(key)
        ca.cert_pem.write_to_path(ca_file)
        with spawn("smtp", "--tls", cert, key, "--auth", f"{USER}:{PASSWORD}") as port:
            yield port, ca_file


def variants_for(port: int, ca_file: str | None) -> dict[str, Any]:
    secure = ca_file is not None
    settings: dict[str, Any] = {"security": "none"}
    if secure:
        settings = {"security": "starttls", "ca_file": ca_file, "username": USER,
                    "password": PASSWORD}  # fmt: skip
    driver = SMTPDriver(name="smtp", host=HOST, port=port, local_hostname=LOCAL_HOSTNAME,
                        **settings)  # fmt: skip
    mailer = FailoverMailer([driver])
    context = ssl.create_default_context(cafile=ca_file) if secure else None

    def pooled(n: int) -> None:
        for _ in range(n):
            mailer.send(make_message())

    def per_message(n: int) -> None:
        for _ in range(n):
            message = make_message()
            data = message.to_mime().as_bytes()
            connection = smtplib.SMTP(HOST, port, local_hostname=LOCAL_HOSTNAME, timeout=10)
            try:
                if secure:
                    connection.starttls(context=context)
                    connection.login(USER, PASSWORD)
                connection.sendmail(message.sender_mailbox.email, message.recipients(), data)
            finally:
                connection.quit()

    variants = {"connection per message": per_message, "mailfailover pooled": pooled}
    django_send_mail = _django_variant(port, secure)
    if django_send_mail is not None:
        variants["django send_mail"] = django_send_mail
    return variants


def _django_variant(port: int, secure: bool) -> Any:
    try:
        import django
        from django.conf import settings
    except ImportError:
        return None
    if not settings.configured:
        settings.configure(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend")
        django.setup()
    from django.core.mail import get_connection, send_mail

    options: dict[str, Any] = {"host": HOST, "port": port}
    if secure:
        options.update(use_tls=True, username=USER, password=PASSWORD)

    def django_send_mail(n: int) -> None:
        for _ in range(n):
            send_mail("Your order A-1017 has shipped", TEXT,
                      "Example Shop <orders@example.com>", ["Ann Example <ann@example.net>"],
                      html_message=HTML, connection=get_connection(**options))  # fmt: skip

    return django_send_mail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="plain,starttls+auth")
    parser.add_argument("--messages", type=int, default=1000, help="per variant and mode")
    parser.add_argument("--block", type=int, default=50)
    options = parser.parse_args(argv)
    print_machine()
    quiet_library_logs()
    rounds = max(options.messages // options.block, 1)
    met = True
    for mode in options.modes.split(","):
        with server(mode) as (port, ca_file):
            if ca_file is not None:
                os.environ["SSL_CERT_FILE"] = ca_file  # Django's default SSL context
            result = compare(variants_for(port, ca_file), block=options.block, rounds=rounds)
        print(f"== {mode}: {rounds} rounds x {options.block} messages per variant")
        print(result.table("connection per message"))
        speedup = 1 / result.ratio("mailfailover pooled", "connection per message")[0]
        print(f"mailfailover pooled is {speedup:.2f}x faster than a connection per message "
              f"(target >= 3x: {'met' if speedup >= 3 else 'NOT met'})\n")  # fmt: skip
        met &= speedup >= 3
    print_load_at_end()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
