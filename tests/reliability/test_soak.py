"""Soak: 8 threads send 2,000 messages through two flapping providers; nothing is lost or
doubled, no thread hangs, memory does not grow.

Both providers are real HTTP drivers talking to their own stand-in server on loopback, each
in its own process (so the servers share neither this process's GIL nor its tracemalloc).
A seeded flapper inside each server switches it between the provider's success answer and
a 5xx at random moments a few milliseconds apart, while the mailer (short cooldown, real
clock) fails over between them. Every message carries a unique Message-ID that the servers
pick out of the bodies they accept, so the accounting is by identity, not only by counts.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator

import pytest
from _reliability import READY
from _servers import spawn, stats

from mailfailover import AllProvidersFailed, FailoverMailer, MailError, Message, SendResult

pytestmark = pytest.mark.slow

THREADS = 8
PER_THREAD = 125  # per half: 2 halves x 8 threads x 125 = 2,000 messages
JOIN_TIMEOUT = 90.0
FLAPS = ("20260601:0.5", "20260602:0.7")  # seed:share of the time up, per server
ID_PATTERN = r"<soak-\d+@example\.com>"
#: Bytes allocated during the second half and still alive after it. The test keeps ~200
#: bytes of accounting per message (1,000 in a half); keeping one request, response or
#: message per send would be several times more.
MAX_GROWTH = 600_000


class CountingFilter(logging.Filter):
    """Counts the mailer's log records by level and lets none through: pytest attaches its
    own capture, which keeps every record, even to a non-propagating logger, and that would
    be memory growth of the test, not of the library."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[int] = Counter()
        self.failovers = 0
        #: WARNING records saying an attempt found its provider unavailable.
        self.unavailable = 0

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()  # pay what a real handler pays to format it
        if text.startswith("failover: "):
            self.failovers += 1
        else:
            self.counts[record.levelno] += 1
        if record.levelno == logging.WARNING and record.msg == "%s unavailable (%s%s): %s":
            self.unavailable += 1
        return False


@pytest.fixture
def counted_logs() -> Iterator[CountingFilter]:
    logger = logging.getLogger("mailfailover")
    counter = CountingFilter()
    logger.addFilter(counter)
    try:
        yield counter
    finally:
        logger.removeFilter(counter)


@pytest.fixture
def flapping_ports() -> Iterator[tuple[int, int]]:
    if len(READY) < 2:
        pytest.skip("the soak needs two importable HTTP drivers")
    with (
        spawn("http", "--flap", FLAPS[0], "--id-pattern", ID_PATTERN) as port_a,
        spawn("http", "--flap", FLAPS[1], "--id-pattern", ID_PATTERN) as port_b,
    ):
        yield port_a, port_b


def _message(index: int) -> Message:
    return Message(
        "Soak <soak@example.com>",
        f"rcpt{index % 50}@example.com",
        f"soak {index}",
        "body " * 20,
        message_id=f"<soak-{index}@example.com>",
    )


def _summary(result: SendResult | MailError) -> tuple[object, ...]:
    """A compact record of one outcome: kept for 2,000 messages, so it must be small."""
    attempts = tuple((a.driver, a.outcome) for a in result.attempts)  # type: ignore[union-attr]
    if isinstance(result, SendResult):
        return ("sent", result.driver, attempts)
    assert isinstance(result, AllProvidersFailed), f"unexpected failure: {result!r}"
    return ("failed", None, attempts)


def _run_half(mailer: FailoverMailer, start: int, outcomes: list[object]) -> None:
    """Send PER_THREAD messages from each of THREADS threads, recording each outcome at its
    message's index; fail if a thread does not finish in time or raises."""
    errors: list[BaseException] = []

    def worker(first: int) -> None:
        try:
            for index in range(first, first + PER_THREAD):
                try:
                    result: SendResult | MailError = mailer.send(_message(index))
                except MailError as exc:
                    result = exc
                outcomes[index] = _summary(result)
        except BaseException as exc:  # anything but a MailError fails the test, after the joins
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(start + n * PER_THREAD,), daemon=True)
        for n in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for thread in threads:
        thread.join(timeout=max(deadline - time.monotonic(), 0.1))
    assert not any(t.is_alive() for t in threads), "a sending thread hung"
    assert not errors, f"a send raised something other than a MailError: {errors[0]!r}"


def test_flapping_providers_lose_and_double_nothing(
    flapping_ports: tuple[int, int], counted_logs: CountingFilter
) -> None:
    """2,000 sends from 8 threads through two flapping providers: each message is delivered
    by exactly one provider (which received it exactly once) or failed with its attempts;
    every attempt reached a server and was logged; the second half leaks nothing."""
    port_a, port_b = flapping_ports
    driver_a = READY[0].make(f"http://127.0.0.1:{port_a}", name="a", timeout=5.0)
    driver_b = READY[1].make(f"http://127.0.0.1:{port_b}", name="b", timeout=5.0)
    total = 2 * THREADS * PER_THREAD
    outcomes: list[object] = [None] * total
    with FailoverMailer([driver_a, driver_b], failure_threshold=2, cooldown=0.02) as mailer:
        _run_half(mailer, 0, outcomes)
        gc.collect()
        # Only what the second half allocates and keeps is traced: that is the growth.
        tracemalloc.start()
        try:
            _run_half(mailer, total // 2, outcomes)
            gc.collect()
            growth = tracemalloc.get_traced_memory()[0]
            top = tracemalloc.take_snapshot().statistics("lineno")[:5]
        finally:
            tracemalloc.stop()
    served = {"a": stats(port_a), "b": stats(port_b)}

    delivered: dict[str, Counter[str]] = {"a": Counter(), "b": Counter()}
    tried = unavailable = failed = failed_over = 0
    for index, outcome in enumerate(outcomes):
        assert outcome is not None, f"message {index} has no outcome"
        kind, driver, attempts = outcome  # type: ignore[misc]
        tried_here = [d for d, result in attempts if result != "skipped"]
        assert len(tried_here) == len(set(tried_here)), "a driver was tried twice for one send"
        tried += len(tried_here)
        unavailable += sum(result == "unavailable" for _, result in attempts)
        if kind == "sent":
            assert attempts[-1] == (driver, "sent")
            assert all(result in ("unavailable", "skipped") for _, result in attempts[:-1])
            delivered[driver][f"<soak-{index}@example.com>"] += 1
            failed_over += attempts[0][0] != driver
        else:
            failed += 1
            assert attempts, f"message {index} failed without any attempt"
            assert all(result in ("unavailable", "skipped") for _, result in attempts)

    for name, server in served.items():
        # What each server accepted is exactly, by Message-ID, what the mailer says it sent.
        assert Counter(server["ids"]) == delivered[name]
        assert server["accepted"] == sum(delivered[name].values())
    # Every attempt the mailer made reached a server, and nothing else did.
    assert served["a"]["received"] + served["b"]["received"] == tried
    # Every failed attempt was logged, once (cooldown warnings are lines of their own).
    assert counted_logs.unavailable == unavailable
    # And every message delivered by a driver other than the first it tried was logged, once.
    assert counted_logs.failovers == failed_over
    # The providers really flapped: both delivered, and failovers happened.
    assert delivered["a"] and delivered["b"]
    assert unavailable > 100, "the providers hardly went down"
    assert sum(map(len, delivered.values())) + failed == total

    detail = "\n".join(str(stat) for stat in top)
    assert growth < MAX_GROWTH, f"{growth} bytes kept from 1,000 sends; largest:\n{detail}"
