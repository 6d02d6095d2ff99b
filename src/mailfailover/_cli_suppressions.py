"""``mailfailover suppressions list|add|remove|import FILE.csv|export [--json]``.

The list is the one in the configuration's state store (``state:``), shared with every
mailer using that store. A ``memory://`` store lives in one process only, so changing it
from the command line would change nothing: ``add``, ``remove`` and ``import`` refuse it.

Exit codes: 0 done, 1 some rows of an import were invalid (the valid ones were imported) or
the store did not answer, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from .config import load_config
from .errors import ConfigError
from .state import StateStore, StoreError, open_store
from .suppressions import REASONS, SuppressionList

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = ("suppressions",)
CSV_FIELDS = ("address", "reason", "driver", "created")


def add_commands(commands: Any) -> None:
    """Add ``suppressions`` and its actions to the ``mailfailover`` sub-command parsers."""
    parser = commands.add_parser("suppressions", help="the suppression list shared by every driver")
    actions = parser.add_subparsers(dest="suppressions_command", required=True,
                                    parser_class=type(commands._parser_class("x")))  # fmt: skip
    listing = actions.add_parser("list", help="show every suppressed address")
    add = actions.add_parser("add", help="suppress addresses")
    add.add_argument("addresses", nargs="+", metavar="ADDRESS")
    add.add_argument("--reason", choices=REASONS, default="manual")
    remove = actions.add_parser("remove", help="take addresses off the list")
    remove.add_argument("addresses", nargs="+", metavar="ADDRESS")
    load = actions.add_parser("import", help="add the addresses of a CSV file")
    load.add_argument("file", type=Path, metavar="FILE.csv",
                      help="an 'address' (and 'reason') column, or one address a line")  # fmt: skip
    load.add_argument("--reason", choices=REASONS, default="manual",
                      help="for rows without a reason")  # fmt: skip
    export = actions.add_parser("export", help="write the list as CSV (or JSON) to stdout")
    for action in (listing, add, remove, load, export):
        action.add_argument("--config", metavar="PATH")
    for action in (listing, export):
        action.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    """Run ``suppressions ...``; ConfigError propagates to the caller's handler."""
    config = load_config(args.config)
    store = open_store(config.state)
    try:
        changing = args.suppressions_command in ("add", "remove", "import")
        if changing and store.url.startswith("memory:"):
            raise ConfigError(
                "the suppression list is in the 'state' store, and this configuration has none "
                "shared (memory://): set 'state' to sqlite:///path or redis://host"
            )
        suppressions = SuppressionList(store)
        action = {"list": _list, "add": _add, "remove": _remove, "import": _import,
                  "export": _export}[args.suppressions_command]  # fmt: skip
        return action(suppressions, args, store)
    except StoreError as exc:
        print(f"mailfailover: the state store did not answer: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _list(suppressions: SuppressionList, args: argparse.Namespace, store: StateStore) -> int:
    entries = list(suppressions)
    if args.json:
        print(json.dumps([entry.to_dict() for entry in entries], indent=2))
        return 0
    for entry in entries:
        print(
            f"{entry.address}  {entry.reason}  {entry.driver or '-'}  {entry.created.isoformat()}"
        )
    print(f"{len(entries)} suppressed ({store.url})", file=sys.stderr)
    return 0


def _add(suppressions: SuppressionList, args: argparse.Namespace, store: StateStore) -> int:
    for address in args.addresses:
        try:
            entry = suppressions.add(address, args.reason)
        except ValueError as exc:
            raise ConfigError(f"{address!r} is not an address: {exc}") from None
        print(f"suppressed {entry.address} ({entry.reason})")
    return 0


def _remove(suppressions: SuppressionList, args: argparse.Namespace, store: StateStore) -> int:
    for address in args.addresses:
        done = suppressions.remove(address)
        print(f"{'removed' if done else 'not on the list:'} {address}")
    return 0


def _import(suppressions: SuppressionList, args: argparse.Namespace, store: StateStore) -> int:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {args.file}: {exc}") from None
    rows = list(csv.reader(io.StringIO(text)))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    has_header = "address" in header
    column = header.index("address") if has_header else 0
    reason_column = header.index("reason") if has_header and "reason" in header else None
    added = kept = 0
    bad: list[str] = []
    for number, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        address = row[column].strip() if column < len(row) else ""
        reason = args.reason
        if reason_column is not None and reason_column < len(row) and row[reason_column].strip():
            reason = row[reason_column].strip().lower()
        if reason not in REASONS:
            bad.append(f"line {number}: reason {reason!r} is not one of {', '.join(REASONS)}")
            continue
        try:
            present = address in suppressions
            suppressions.add(address, reason)
        except ValueError:
            bad.append(f"line {number}: {address!r} is not an address")
            continue
        kept += present
        added += not present
    for problem in bad:
        print(f"mailfailover: {args.file}: {problem}", file=sys.stderr)
    print(f"imported {added} new, {kept} already suppressed, {len(bad)} invalid")
    return 1 if bad else 0


def _export(suppressions: SuppressionList, args: argparse.Namespace, store: StateStore) -> int:
    entries = [entry.to_dict() for entry in suppressions]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(entries)
    return 0
