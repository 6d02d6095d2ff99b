"""The ``mailfailover`` command: ``send``, ``check``, ``drivers``, ``health``, ``serve``,
``worker`` and ``queue`` (the last two in :mod:`mailfailover._cli_queue`).

Exit codes: 0 sent (or the config is valid), 1 rejected or every provider failed,
2 usage, invalid message or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import mimetypes
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from . import _cli_queue, _cli_suppressions
from ._version import __version__
from .config import build_drivers, load_config
from .errors import (
    AllProvidersFailed,
    ConfigError,
    InvalidMessage,
    MailError,
    MessageRejected,
)
from .mailer import Attempt, FailoverMailer
from .message import Attachment, Message, split_addresses
from .registry import available_drivers

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit code 2 is ours too
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mailfailover",
        description="Send email through several providers, failing over when one is down.",
    )
    parser.add_argument("--version", action="version", version=f"mailfailover {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every attempt")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    send = commands.add_parser("send", help="send one message, or a batch from a JSONL file")
    send.add_argument("--from", dest="sender", metavar="ADDRESS")
    send.add_argument("--to", action="append", default=[], metavar="ADDRESS",
                      help="recipient; repeat or separate with commas")  # fmt: skip
    send.add_argument("--cc", action="append", default=[], metavar="ADDRESS")
    send.add_argument("--bcc", action="append", default=[], metavar="ADDRESS")
    send.add_argument("--reply-to", action="append", default=[], metavar="ADDRESS")
    send.add_argument("--subject")
    body = send.add_mutually_exclusive_group()
    body.add_argument("--text", help="the plain-text body")
    body.add_argument(
        "--text-file", type=Path, metavar="FILE", help="read the text body ('-': stdin)"
    )
    send.add_argument("--html-file", type=Path, metavar="FILE", help="read an HTML body")
    send.add_argument("--attach", action="append", default=[], type=Path, metavar="FILE")
    send.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    send.add_argument("--tag", action="append", default=[], metavar="TAG")
    send.add_argument("--batch", type=Path, metavar="FILE.jsonl",
                      help="send one message per line (Message.to_dict() JSON)")  # fmt: skip
    send.add_argument("--eml", action="append", default=[], type=Path, metavar="PATH",
                      help="re-send an .eml file, or every *.eml in a folder (an outbox); "
                           "each is moved to a sent/ folder beside it once sent")  # fmt: skip
    send.add_argument("--sent-log", type=Path, metavar="FILE",
                      help="append each sent Message-ID to FILE and skip those already "
                           "in it, so re-running never re-sends")  # fmt: skip
    send.add_argument("--workers", type=int, default=4, help="parallel sends for --batch")
    _common(send)

    check = commands.add_parser("check", help="validate a configuration and build its drivers")
    _common(check)

    health = commands.add_parser(
        "health", help="each driver's state as the configured state store holds it"
    )
    _common(health)

    drivers = commands.add_parser("drivers", help="list installed drivers")
    drivers.add_argument("--json", action="store_true", help="machine-readable output")

    serve = commands.add_parser("serve", help="run the HTTP adapter (POST /send)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8025)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--threads", type=int, default=4)
    serve.add_argument("--config", metavar="PATH")
    _cli_queue.add_commands(commands)
    _cli_suppressions.add_commands(commands)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH",
                        help="YAML file or folder (default: $MAILFAILOVER_CONFIG, "
                             "./config/mail.yml, else the built-in default)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="mailfailover: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "send":
            return _batch(args) if args.batch or args.eml else _send(args)
        if args.command == "check":
            return _check(args)
        if args.command == "drivers":
            return _drivers(args)
        if args.command in _cli_queue.COMMANDS:
            return _cli_queue.run(args)
        if args.command == "health":
            return _health(args)
        if args.command in _cli_suppressions.COMMANDS:
            return _cli_suppressions.run(args)
        return _serve(args)
    except (ConfigError, InvalidMessage) as exc:
        _fail(args, exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _fail(args: argparse.Namespace, exc: MailError) -> None:
    if getattr(args, "json", False):
        payload = {"status": "error", "error": exc.code, "message": exc.message}
        if isinstance(exc, InvalidMessage):
            payload["field"] = exc.field
        print(json.dumps(payload))
    else:
        kind = "invalid message" if isinstance(exc, InvalidMessage) else "configuration error"
        print(f"mailfailover: {kind}: {exc.message}", file=sys.stderr)


# -- send -------------------------------------------------------------------------------------


def _read_text(path: Path, field: str) -> str:
    try:
        if str(path) == "-":
            return sys.stdin.read()
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"{field}: cannot read {path}: {exc}", field=field) from None


def _message_from_args(args: argparse.Namespace) -> Message:
    missing = [flag for flag, value in (("--from", args.sender), ("--to", args.to),
                                        ("--subject", args.subject)) if not value]  # fmt: skip
    if missing:
        raise InvalidMessage(f"{missing[0]} is required", field=missing[0][2:], code=1)
    if args.text is None and args.text_file is None and args.html_file is None:
        raise InvalidMessage("--text, --text-file or --html-file is required", field="text", code=1)
    headers: dict[str, str] = {}
    for header in args.header:
        name, colon, value = header.partition(":")
        if not colon:
            raise InvalidMessage(f"--header {header!r} is not 'Name: value'", field="headers")
        headers[name.strip()] = value.strip()
    attachments = []
    for path in args.attach:
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise InvalidMessage(
                f"--attach: cannot read {path}: {exc.strerror}", field="attachments"
            ) from None
        mimetype = mimetypes.guess_type(path.name, strict=False)[0]
        attachments.append(Attachment(path.name, content, mimetype))
    return Message(
        sender=args.sender,
        to=[a for value in args.to for a in split_addresses(value)],
        cc=[a for value in args.cc for a in split_addresses(value)],
        bcc=[a for value in args.bcc for a in split_addresses(value)],
        reply_to=[a for value in args.reply_to for a in split_addresses(value)],
        subject=args.subject,
        text=_read_text(args.text_file, "text") if args.text_file else args.text,
        html=_read_text(args.html_file, "html") if args.html_file else None,
        headers=headers,
        attachments=attachments,
        tags=args.tag,
    )


def _send(args: argparse.Namespace) -> int:
    message = _message_from_args(args)
    with FailoverMailer.from_config(args.config) as mailer:
        try:
            result = mailer.send(message)
        except (MessageRejected, AllProvidersFailed) as exc:
            _report_failure(args, exc)
            return EXIT_FAILED
    if args.json:
        payload = {"status": "sent", **result.to_dict()}
        if result.receipt is not None and result.receipt.response:
            payload["response"] = dict(result.receipt.response)
        print(json.dumps(payload))
    else:
        print(f"sent via {result.driver}: message id {result.message_id}")
        _print_attempts(result.attempts)
        path = (result.receipt.response or {}).get("path") if result.receipt else None
        if path:
            print(f"wrote {path}")
    return EXIT_OK


def _report_failure(args: argparse.Namespace, exc: MessageRejected | AllProvidersFailed) -> None:
    attempts = exc.attempts
    if args.json:
        print(json.dumps({
            "status": "rejected" if isinstance(exc, MessageRejected) else "failed",
            "error": exc.code,
            "message": exc.message,
            "attempts": [attempt.to_dict() for attempt in attempts],
        }))  # fmt: skip
        return
    if isinstance(exc, MessageRejected):
        print(f"rejected by {exc.driver}: {exc.detail}", file=sys.stderr)
    else:
        print("not sent: no provider was able to send the message", file=sys.stderr)
    _print_attempts(attempts, stream=sys.stderr)


def _print_attempts(attempts: Sequence[Attempt], stream: IO[str] | None = None) -> None:
    out = stream or sys.stdout
    width = max((len(a.driver) for a in attempts), default=0)
    for attempt in attempts:
        why = ""
        if attempt.error is not None:
            why = f"  {attempt.error.detail}"
        elif attempt.reason:
            why = f"  {attempt.reason}"
        ms = f"{attempt.elapsed * 1000:.0f} ms"
        print(f"  {attempt.driver:<{width}}  {attempt.outcome:<11}  {ms:>7}{why}", file=out)


# -- batch ------------------------------------------------------------------------------------


def _progress(total: int | None) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # the `cli` extra is not installed: no bar, the summary still prints
        return None
    return tqdm(total=total, unit="msg", file=sys.stderr, disable=not sys.stderr.isatty())


def _batch(args: argparse.Namespace) -> int:
    from ._batch import eml_items, jsonl_items, run_batch

    if args.batch and args.eml:
        raise InvalidMessage("--batch and --eml: give one of them", field="eml")
    if args.eml:
        items = eml_items(args.eml)
    else:
        items = jsonl_items(args.batch, stable_ids=args.sent_log is not None)
    return run_batch(
        items,
        config=args.config,
        workers=args.workers,
        as_json=args.json,
        sent_log=args.sent_log,
        progress=_progress(None),
    )


# -- check, drivers, serve --------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    drivers = build_drivers(config)
    try:
        if args.json:
            print(json.dumps({
                "status": "ok",
                "source": config.source,
                "drivers": [{"name": s.name, "module": s.module} for s in config.drivers],
            }))  # fmt: skip
        else:
            print(f"{config.source}: ok, {len(drivers)} driver(s)")
            for spec, driver in zip(config.drivers, drivers, strict=True):
                print(f"  {spec.name} ({spec.module}): {driver!r}")
    finally:
        for driver in drivers:
            driver.close()
    return EXIT_OK


def _health(args: argparse.Namespace) -> int:
    """Read every configured driver's shared health record; build no driver, write nothing."""
    from .health import read_health
    from .state import StoreError, open_store

    config = load_config(args.config)
    store = open_store(config.state if config.state is not None else "memory://")
    try:
        states = read_health(store, [d.name for d in config.drivers])
    except StoreError as exc:
        message = f"the state store {store.url} did not answer: {exc}"
        if args.json:
            print(json.dumps({"status": "error", "error": EXIT_FAILED, "message": message}))
        else:
            print(f"mailfailover: {message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    drivers = [
        {key: value for key, value in h.to_dict().items() if key not in ("sent", "failed")}
        for h in states
    ]
    healthy = sum(1 for d in drivers if d["state"] == "healthy")
    status = "ok" if healthy == len(drivers) else ("degraded" if healthy else "down")
    if args.json:
        print(json.dumps({"status": status, "store": store.url, "namespace": store.namespace,
                          "drivers": drivers}))  # fmt: skip
        return EXIT_OK
    print(f"{status} ({store.url}, namespace {store.namespace})")
    width = max(len(d["name"]) for d in drivers)  # type: ignore[arg-type]
    for d in drivers:
        line = f"  {d['name']:<{width}}  {d['state']:<12}  failures {d['consecutive_failures']}"
        if d["state"] == "cooling_down":
            line += f"  cooldown {d['cooldown_remaining']:.1f} s left"
        if d["last_error"]:
            line += f"  last error: {d['last_error']}"
        print(line)
    return EXIT_OK


def _drivers(args: argparse.Namespace) -> int:
    entries = available_drivers()
    if args.json:
        print(json.dumps([
            {"name": e.name, "target": e.target, "distribution": e.distribution,
             "status": e.status, "detail": e.detail}
            for e in entries
        ]))  # fmt: skip
        return EXIT_OK
    width = max((len(e.name) for e in entries), default=0)
    for entry in entries:
        note = "" if entry.status == "ok" else f"  [{entry.status}: {entry.detail}]"
        source = entry.distribution or "?"
        print(f"{entry.name:<{width}}  {entry.target}  ({source}){note}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from .driver import require

    require("flask", "flask")
    require("gunicorn", "flask")
    from .flask import serve

    return serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
        config=args.config,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
