"""mailfailover vs django-anymail, same provider, same messages, same local server.

Each variant builds one typical transactional message (text + HTML, a tag, metadata) and
sends it through the provider's API to a local stand-in server (its own process) that
answers the provider's documented success. Variants, timed in interleaved blocks:

  mailfailover          FailoverMailer([driver]).send(Message(...))
  anymail connection    EmailMultiAlternatives(...).send() on one anymail connection
                        opened once (anymail's best case: one requests.Session)
  anymail send_mail     django.core.mail.send_mail(...) per message: what most Django
                        code does; anymail opens a new connection (Session) every time

Target: mailfailover at least 1.5x faster per message than anymail.

Needs Django and django-anymail, which are not mailfailover dependencies:
    pip install django django-anymail
    python bench/vs_anymail.py [--providers sendgrid,mailgun] [--rounds 20] [--block 25]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import PROVIDERS, spawn
from _timing import compare, print_load_at_end, print_machine
from happy_path import HTML, TEXT

from mailfailover import FailoverMailer, Message

SENDER = "Example Shop <orders@mg.example.com>"
RECIPIENT = "Ann Example <ann@example.net>"
SUBJECT = "Your order A-1017 has shipped"

#: anymail's ESP name and the settings that point it at the stand-in.
ANYMAIL = {
    "sendgrid": ("anymail.backends.sendgrid.EmailBackend",
                 lambda url: {"SENDGRID_API_KEY": PROVIDERS["sendgrid"].secrets[0],
                              "SENDGRID_API_URL": f"{url}/v3/"}),
    "mailgun": ("anymail.backends.mailgun.EmailBackend",
                lambda url: {"MAILGUN_API_KEY": PROVIDERS["mailgun"].secrets[0],
                             "MAILGUN_API_URL": f"{url}/v3"}),
}  # fmt: skip


def setup_django(url: str) -> None:
    # anymail warns that it no longer officially supports SendGrid; the API is unchanged.
    warnings.filterwarnings("ignore", message="django-anymail has dropped official support")
    try:
        import django
        from django.conf import settings
    except ImportError:
        sys.exit(
            "this benchmark needs Django and django-anymail: pip install django django-anymail"
        )
    anymail: dict[str, Any] = {}
    for _, make_settings in ANYMAIL.values():
        anymail.update(make_settings(url))
    settings.configure(
        EMAIL_BACKEND=ANYMAIL["sendgrid"][0],
        ANYMAIL=anymail,
        INSTALLED_APPS=["anymail"],
        DEFAULT_FROM_EMAIL=SENDER,
    )
    django.setup()


def variants_for(provider: str, url: str) -> dict[str, Any]:
    from django.core.mail import EmailMultiAlternatives, get_connection, send_mail

    backend = ANYMAIL[provider][0]
    driver = PROVIDERS[provider].make(url, name=provider)
    mailer = FailoverMailer([driver])
    connection = get_connection(backend)
    connection.open()

    def ours(n: int) -> None:
        for _ in range(n):
            mailer.send(
                Message(
                    SENDER,
                    RECIPIENT,
                    SUBJECT,
                    TEXT,
                    html=HTML,
                    tags=["shipping"],
                    metadata={"order": "A-1017"},
                )
            )

    def anymail_connection(n: int) -> None:
        for _ in range(n):
            message = EmailMultiAlternatives(
                SUBJECT, TEXT, SENDER, [RECIPIENT], connection=connection
            )
            message.attach_alternative(HTML, "text/html")
            message.tags = ["shipping"]  # type: ignore[attr-defined]
            message.metadata = {"order": "A-1017"}  # type: ignore[attr-defined]
            if message.send() != 1:
                raise RuntimeError("anymail did not send")

    def anymail_send_mail(n: int) -> None:
        for _ in range(n):
            sent = send_mail(SUBJECT, TEXT, SENDER, [RECIPIENT], html_message=HTML,
                             connection=get_connection(backend))  # fmt: skip
            if sent != 1:
                raise RuntimeError("anymail did not send")

    return {
        "mailfailover": ours,
        "anymail connection": anymail_connection,
        "anymail send_mail": anymail_send_mail,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", default="sendgrid,mailgun")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block", type=int, default=25)
    options = parser.parse_args(argv)
    print_machine()
    failed = False
    with spawn("http") as port:
        url = f"http://127.0.0.1:{port}"
        setup_django(url)
        import anymail

        print(f"django-anymail {anymail.VERSION if hasattr(anymail, 'VERSION') else '?'}")
        for provider in options.providers.split(","):
            result = compare(variants_for(provider, url), block=options.block,
                             rounds=options.rounds)  # fmt: skip
            print(f"== {provider}: {options.rounds} rounds x {options.block} messages")
            print(result.table("mailfailover"))
            for other in ("anymail connection", "anymail send_mail"):
                speedup = result.ratio(other, "mailfailover")[0]
                verdict = "met" if speedup >= 1.5 else "NOT met"
                print(f"mailfailover is {speedup:.2f}x faster than {other} "
                      f"(target >= 1.5x: {verdict})")  # fmt: skip
                failed |= other == "anymail connection" and speedup < 1.5
            print()
    print_load_at_end()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
