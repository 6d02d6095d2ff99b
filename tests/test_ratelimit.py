"""Rate limits: parsing, the never-over-the-rate guarantee, spill and wait, shared stores."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from mailfailover.ratelimit import Rate, RateLimiter
from mailfailover.state import MemoryStore, open_store
from mailfailover.testing import FakeClock


@pytest.mark.parametrize(
    ("text", "count", "per"),
    [
        ("14/s", 14, 1.0),
        ("1000/min", 1000, 60.0),
        ("50000/h", 50000, 3600.0),
        ("5/10s", 5, 10.0),
        (" 3 / 2 minutes ", 3, 120.0),
        ("100/day", 100, 86400.0),
    ],
)
def test_parse_reads_count_per_period(text: str, count: int, per: float) -> None:
    assert Rate.parse(text) == Rate(count, per)


@pytest.mark.parametrize(
    "text", ["", "14", "/s", "0/s", "-1/s", "1.5/s", "14/fortnight", "14/0s", "nan/s", "1/infs"]
)
def test_parse_refuses_what_is_not_a_rate(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate.parse(text)


def sends_in_any_window(times: list[float], per: float) -> int:
    """The most sends inside any half-open window [t, t + per)."""
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + per))
    return best


def test_spill_mode_never_exceeds_the_rate_in_any_window() -> None:
    clock = FakeClock(start=1_800_000_000.0)
    limiter = RateLimiter(MemoryStore(clock=clock), "primary", Rate.parse("50/s"))
    granted: list[float] = []
    for _ in range(2000):  # an offered load of 200/s for 10 s
        if limiter.reserve() == 0.0:
            granted.append(clock())
        clock.advance(0.005)
    assert sends_in_any_window(granted, 1.0) <= 50
    assert len(granted) >= 490  # and the budget is used, not wasted


def test_a_refused_reservation_claims_nothing() -> None:
    clock = FakeClock(start=1_800_000_000.0)
    limiter = RateLimiter(MemoryStore(clock=clock), "p", Rate.parse("1/s"))
    assert limiter.reserve() == 0.0
    for _ in range(10):
        assert limiter.reserve() is None
    clock.advance(1.0)
    assert limiter.reserve() == 0.0


def test_wait_mode_hands_out_future_slots_in_order() -> None:
    clock = FakeClock(start=1_800_000_000.0)
    limiter = RateLimiter(MemoryStore(clock=clock), "p", Rate.parse("10/s"))
    waits = [limiter.reserve(max_wait=1.0) for _ in range(12)]
    assert waits[:11] == pytest.approx([i * 0.1 for i in range(11)])
    assert waits[11] is None  # 1.1 s away: beyond the budget of 1 s


def test_burst_lets_a_quiet_driver_send_at_once() -> None:
    clock = FakeClock(start=1_800_000_000.0)
    limiter = RateLimiter(MemoryStore(clock=clock), "p", Rate.parse("10/s"), burst=5)
    assert [limiter.reserve() for _ in range(6)] == [0.0] * 5 + [None]


def test_garbage_in_the_store_counts_as_a_full_budget() -> None:
    clock = FakeClock(start=1_800_000_000.0)
    store = MemoryStore(clock=clock)
    store.set("rate:p", b"{not json")
    assert RateLimiter(store, "p", Rate.parse("1/s")).reserve() == 0.0
    store.set("rate:p", b"NaN")
    assert RateLimiter(store, "p", Rate.parse("1/s")).reserve() == 0.0


WORKER = """
import sys, time
from mailfailover.ratelimit import Rate, RateLimiter
from mailfailover.state import open_store

url, namespace = sys.argv[1:]
limiter = RateLimiter(open_store(url, namespace=namespace), "primary", Rate.parse("20/s"))
end = time.time() + 1.5
while time.time() < end:
    asked = time.time()  # the store's clock reads this host's time.time() right after
    if limiter.reserve() == 0.0:
        print(repr(asked))
    time.sleep(0.002)
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_on_one_store_share_one_budget(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'state.db'}"
    else:
        url = request.getfixturevalue("redis_server").url
    namespace = f"rl{uuid.uuid4().hex[:8]}"
    open_store(url, namespace=namespace).close()  # create the database before the race
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, namespace],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    times: list[float] = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
            times += [float(line) for line in out.split()]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    times.sort()
    assert times, "no process got a slot"
    # Three processes offering ~400/s each share 20/s: never more than 20 in any second
    # (+1 for the microseconds between reading the clock and the store reading it).
    assert sends_in_any_window(times, 1.0) <= 21
    assert len(times) >= 20
