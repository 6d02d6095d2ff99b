"""``mailfailover send --batch`` and ``send --eml``: many messages, streamed and stoppable.

Messages are read lazily and at most ``2 * --workers`` are in flight, so a file of any size
runs in constant memory. Each result is printed the moment its send completes (a JSON line
with ``--json``, flushed). SIGINT or SIGTERM stops reading at once: only the sends already
in flight are finished and reported, then a summary, and the exit code is 130 (143 for
SIGTERM).

Re-running never re-sends: ``--sent-log FILE`` appends the Message-ID of every message sent
(one per line, flushed as it happens) and skips the messages already listed there; a batch
line without a ``message_id`` then gets one derived from its text and its occurrence, the
same on every run. ``.eml`` files are moved into a ``sent/`` folder beside them once sent.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from types import FrameType
from typing import IO, Any

import attrs

from .errors import InvalidMessage, MailError
from .mailer import FailoverMailer
from .message import Message, parse_mailbox
from .results import SendResult

__all__ = ["BatchItem", "eml_items", "jsonl_items", "run_batch"]

EXIT_OK, EXIT_FAILED = 0, 1
_POLL_SECONDS = 0.2


@attrs.frozen
class BatchItem:
    """One message of a batch (or why it is not one), and where it came from."""

    where: dict[str, Any]  # {"line": 7} or {"file": "outbox/x.eml"}
    message: Message | None = None
    error: MailError | None = None
    #: Called once the message is sent (the .eml source moves the file away).
    on_sent: Callable[[], None] | None = None

    @property
    def label(self) -> str:
        if "line" in self.where:
            return f"line {self.where['line']}"
        return str(self.where["file"])


# -- sources ----------------------------------------------------------------------------------


def jsonl_items(path: Path, *, stable_ids: bool) -> Iterator[BatchItem]:
    """One item per non-blank line of a JSONL file (``-``: standard input)."""
    try:
        handle = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    except OSError as exc:
        raise InvalidMessage(
            f"--batch: cannot read {path}: {exc.strerror}", field="batch"
        ) from None
    seen: dict[str, int] = {}
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = {"line": number}
            try:
                data = json.loads(line)
            except ValueError:
                yield BatchItem(where, error=InvalidMessage("not valid JSON", field=None, code=3))
                continue
            if stable_ids and isinstance(data, dict) and not data.get("message_id"):
                data["message_id"] = _stable_id(line.strip(), data.get("sender"), seen)
            try:
                yield BatchItem(where, message=Message.from_dict(data))
            except InvalidMessage as exc:
                yield BatchItem(where, error=exc)


def _stable_id(text: str, sender: Any, seen: dict[str, int]) -> str | None:
    """A Message-ID from the line's text and how many identical lines came before it."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    occurrence = seen.get(digest, 0)
    seen[digest] = occurrence + 1
    try:
        domain = parse_mailbox(sender).ascii_domain
    except (TypeError, ValueError):
        return None  # the sender is invalid: from_dict will say so
    unique = hashlib.sha256(f"{digest}:{occurrence}".encode()).hexdigest()[:32]
    return f"<{unique}.batch@{domain}>"


def eml_items(paths: list[Path]) -> Iterator[BatchItem]:
    """One item per ``.eml`` file, or per ``*.eml`` directly in a folder (an outbox)."""
    from ._eml import message_from_eml

    for path in paths:
        files = sorted(path.glob("*.eml")) if path.is_dir() else [path]
        for file in files:
            where = {"file": str(file)}
            try:
                raw = file.read_bytes()
            except OSError as exc:
                error = InvalidMessage(f"cannot read {file}: {exc.strerror}", field="eml")
                yield BatchItem(where, error=error)
                continue
            try:
                message = message_from_eml(raw)
            except InvalidMessage as exc:
                yield BatchItem(where, error=exc)
                continue
            yield BatchItem(where, message=message, on_sent=_mover(file))


def _mover(file: Path) -> Callable[[], None]:
    def move() -> None:
        done = file.parent / "sent"
        done.mkdir(exist_ok=True)
        file.replace(done / file.name)

    return move


# -- running ----------------------------------------------------------------------------------


class _Stop:
    """SIGINT/SIGTERM handling for the duration of a batch (main thread only)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Sends in flight always finish (each is bounded by its timeouts): a message whose
        # outcome is unknown is the one a re-run could send twice.
        if self.signal is None:
            self.signal = signum
        print(
            "mailfailover: interrupted: finishing the sends in flight, sending nothing more",
            file=sys.stderr,
            flush=True,
        )

    @property
    def requested(self) -> bool:
        return self.signal is not None


@attrs.define
class _Tally:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    last: dict[str, Any] | None = None


def _send_or_error(mailer: FailoverMailer, message: Message) -> SendResult | MailError:
    try:
        return mailer.send(message)
    except MailError as exc:
        return exc


def run_batch(
    items: Iterator[BatchItem],
    *,
    config: Any,
    workers: int,
    as_json: bool,
    sent_log: Path | None = None,
    progress: Any = None,
) -> int:
    """Send every item; the exit code (0 all sent, 1 any failed, 130/143 interrupted)."""
    if workers < 1:
        raise InvalidMessage("--workers must be at least 1", field="workers")
    already = _read_log(sent_log)
    log = sent_log.open("a", encoding="utf-8") if sent_log is not None else None
    tally = _Tally()
    out = _Printer(as_json, tally, log, progress)
    try:
        with (
            FailoverMailer.from_config(config) as mailer,
            _Stop() as stop,
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            pending: dict[Future[SendResult | MailError], BatchItem] = {}
            for item in items:
                tally.last = item.where
                if item.message is None:
                    out.failed(item, item.error or MailError("not a message"))
                elif item.message.message_id in already:
                    out.skipped(item)
                else:
                    pending[pool.submit(_send_or_error, mailer, item.message)] = item
                while pending and (len(pending) >= 2 * workers or stop.requested):
                    _collect(pending, out)
                if stop.requested:
                    break
            while pending:
                _collect(pending, out)
    finally:
        if log is not None:
            log.close()
        if progress is not None:
            progress.close()
    return out.summary(stop.signal)


def _collect(pending: dict[Future[SendResult | MailError], BatchItem], out: _Printer) -> None:
    done, _ = wait(pending, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
    for future in done:
        item = pending.pop(future)
        outcome = future.result()
        if isinstance(outcome, SendResult):
            out.sent(item, outcome)
        else:
            out.failed(item, outcome)


def _read_log(path: Path | None) -> set[str]:
    if path is None or not path.exists():
        return set()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidMessage(f"--sent-log: cannot read {path}: {exc.strerror}",
                             field="sent_log") from None  # fmt: skip
    return {line.strip() for line in text.splitlines() if line.strip()}


@attrs.define
class _Printer:
    as_json: bool
    tally: _Tally
    log: IO[str] | None
    progress: Any

    def _emit(self, payload: dict[str, Any], text: str, *, error: bool = False) -> None:
        if self.as_json:
            print(json.dumps(payload), flush=True)
        else:
            print(text, file=sys.stderr if error else sys.stdout, flush=True)
        if self.progress is not None:
            self.progress.update(1)

    def sent(self, item: BatchItem, result: SendResult) -> None:
        self.tally.sent += 1
        if self.log is not None:
            self.log.write(result.message_id + "\n")
            self.log.flush()
        if item.on_sent is not None:
            item.on_sent()
        self._emit(
            {**item.where, "status": "sent", **result.to_dict()},
            f"{item.label}: sent via {result.driver}, message id {result.message_id}",
        )

    def failed(self, item: BatchItem, error: MailError) -> None:
        self.tally.failed += 1
        self._emit(
            {**item.where, "status": "failed", "error": error.code, "message": error.message},
            f"{item.label}: error {error.code}: {error.message}",
            error=True,
        )

    def skipped(self, item: BatchItem) -> None:
        self.tally.skipped += 1
        message_id = item.message.message_id if item.message else None
        self._emit(
            {**item.where, "status": "skipped", "message_id": message_id},
            f"{item.label}: skipped, already sent ({message_id})",
        )

    def summary(self, interrupted: int | None) -> int:
        t = self.tally
        total = t.sent + t.failed
        payload: dict[str, Any] = {
            "status": "done" if interrupted is None else "interrupted",
            "sent": t.sent,
            "failed": t.failed,
        }
        if t.skipped:
            payload["skipped"] = t.skipped
        if interrupted is not None and t.last is not None:
            payload["stopped_after"] = t.last
        if self.as_json:
            print(json.dumps(payload), flush=True)
        else:
            skipped = f"; {t.skipped} skipped (already sent)" if t.skipped else ""
            print(f"sent {t.sent} of {total} messages; {t.failed} failed{skipped}", flush=True)
            if interrupted is not None:
                where = f" after {BatchItem(t.last).label}" if t.last else ""
                print(f"interrupted{where}: nothing more was sent", file=sys.stderr, flush=True)
        if interrupted is not None:
            return 128 + interrupted
        return EXIT_OK if t.failed == 0 else EXIT_FAILED
