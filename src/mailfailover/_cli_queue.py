"""The queue's commands: ``mailfailover worker`` and ``mailfailover queue
status|dead|redrive``.

Exit codes follow the ``mailfailover`` command's: 0 done (a status was found), 1 the message
is unknown or a re-drive failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .errors import MailError
from .state import StoreError

__all__ = ["add_commands", "run"]

COMMANDS = ("worker", "queue")


def add_commands(commands: Any) -> None:
    """Add ``worker`` and ``queue`` to the ``mailfailover`` sub-command parsers."""
    worker = commands.add_parser("worker", help="run a Celery worker for the queue")
    worker.add_argument("--config", metavar="PATH")
    worker.add_argument("--concurrency", type=int, metavar="N",
                        help="pool processes (default: one per CPU)")  # fmt: skip
    worker.add_argument("--pool", choices=("prefork", "threads", "solo"), help="Celery pool")
    worker.add_argument("--loglevel", default="INFO")

    queue = commands.add_parser("queue", help="inspect queued messages and dead letters")
    actions = queue.add_subparsers(dest="queue_command", required=True,
                                   parser_class=type(commands._parser_class("x")))  # fmt: skip
    status = actions.add_parser("status", help="what became of a message")
    status.add_argument("message_id", help="the Message-ID, <...@...>")
    dead = actions.add_parser("dead", help="list dead letters (or --retry them)")
    dead.add_argument("--retry", nargs="?", const="all", metavar="MESSAGE_ID",
                      help="put one dead letter (or all) back on the queue")  # fmt: skip
    redrive = actions.add_parser(
        "redrive", help="publish again the tasks of queued messages no worker has touched"
    )
    redrive.add_argument(
        "--older-than",
        type=_seconds,
        metavar="SECONDS",
        help="untouched for this long (default: the visibility timeout)",
    )
    for parser in (status, dead, redrive):
        parser.add_argument("--config", metavar="PATH")
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``worker`` or ``queue ...``; ConfigError propagates to the caller's handler."""
    if args.command == "worker":
        from .celery._worker import run_worker

        run_worker(args.config, concurrency=args.concurrency, pool=args.pool,
                   loglevel=args.loglevel)  # fmt: skip
        return 0
    from .celery import Outbox

    outbox = Outbox(args.config)
    try:
        if args.queue_command == "status":
            return _status(outbox, args)
        if args.queue_command == "redrive":
            return _redrive(outbox, args)
        return _dead(outbox, args)
    except StoreError as exc:
        print(f"mailfailover: the state store did not answer: {exc}", file=sys.stderr)
        return 1
    finally:
        outbox.close()


def _redrive(outbox: Any, args: argparse.Namespace) -> int:
    try:
        published = outbox.redrive_lost(older_than=args.older_than)
    except MailError as exc:
        print(f"mailfailover: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"published": published}))
    else:
        print(f"{published} lost task{'' if published == 1 else 's'} published again")
    return 0


def _status(outbox: Any, args: argparse.Namespace) -> int:
    view = outbox.status(args.message_id)
    if view is None:
        if args.json:
            print(json.dumps({"message_id": args.message_id, "status": "unknown"}))
        else:
            print(f"{args.message_id}: unknown (no delivery record)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        _print_view(view)
    return 0


def _print_view(view: dict[str, Any]) -> None:
    line = f"{view['message_id']}: {view['status']}"
    if view["driver"]:
        line += f" via {view['driver']}"
    line += f" after {view['tries']} tr{'y' if view['tries'] == 1 else 'ies'}"
    if view["sending"]:
        line += " (sending now)"
    if view.get("redrives"):
        line += f"; its task was lost and published again {view['redrives']}x"
    print(line)
    if view["error"] and view["status"] != "sent":
        print(f"  last error: {view['error']}")
    for attempt in view["attempts"]:
        detail = attempt.get("error") or attempt.get("reason") or ""
        print(f"  try {attempt.get('try')}: {attempt.get('driver') or '-'} "
              f"{attempt['outcome']}{': ' + detail if detail else ''}")  # fmt: skip
    for event in view["events"]:
        print(f"  event: {event}")


def _dead(outbox: Any, args: argparse.Namespace) -> int:
    if args.retry is None:
        letters = outbox.dead()
        if args.json:
            print(json.dumps(letters, indent=2))
        else:
            for view in letters:
                print(f"{view['message_id']}  tries={view['tries']}  {view['error']}")
            print(f"{len(letters)} dead letter{'' if len(letters) == 1 else 's'}",
                  file=sys.stderr)  # fmt: skip
        return 0
    wanted = [view["message_id"] for view in outbox.dead()] if args.retry == "all" else [args.retry]
    failed = 0
    for message_id in wanted:
        try:
            revived = outbox.retry_dead(message_id)
        except MailError as exc:
            print(f"{message_id}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if not revived:
            print(f"{message_id}: not a dead letter", file=sys.stderr)
            failed += 1
        elif not args.json:
            print(f"{message_id}: queued again")
    if args.json:
        print(json.dumps({"queued": len(wanted) - failed, "failed": failed}))
    return 1 if failed else 0
