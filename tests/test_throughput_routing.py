"""Rate limits and brownouts in the failover core, with fake clocks (and, across processes,
on a shared store through the mailer)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest

from mailfailover import (
    AllProvidersFailed,
    ConfigError,
    DriverPolicy,
    FailoverMailer,
    ProviderUnavailable,
    Rate,
    load_config,
)
from mailfailover.driver import Receipt
from mailfailover.health import State
from mailfailover.message import Message
from mailfailover.state import MemoryStore, open_store
from mailfailover.testing import FakeClock, MemoryDriver, simple_message


class SlowDriver(MemoryDriver):
    """A MemoryDriver whose sends take ``seconds`` on the fake clock."""

    def __init__(self, clock: FakeClock, seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.seconds = seconds

    def send(self, message: Message) -> Receipt:
        self.clock.advance(self.seconds)
        return super().send(message)


class LimitedDriver(MemoryDriver):
    """Answers 429 with Retry-After, as a provider does when its own limit is hit."""

    def send(self, message: Message) -> Receipt:
        self.calls += 1
        raise ProviderUnavailable(
            "too many requests", reason="rate_limited", driver=self.name, status=429,
            retry_after=20.0,
        )  # fmt: skip


def mailer_for(clock: FakeClock, drivers: list[Any], **policies: DriverPolicy) -> FailoverMailer:
    return FailoverMailer(
        drivers, clock=clock, sleep=clock.advance, policies=policies, failure_threshold=2,
        cooldown=30.0,
    )  # fmt: skip


def test_a_message_over_the_rate_spills_to_the_next_driver_at_no_cost_to_health() -> None:
    clock = FakeClock()
    primary, backup = MemoryDriver(name="primary"), MemoryDriver(name="backup")
    mailer = mailer_for(clock, [primary, backup], primary=DriverPolicy(rate=Rate.parse("2/s")))
    results = [mailer.send(simple_message()) for _ in range(5)]
    assert [r.driver for r in results] == ["primary"] + ["backup"] * 4
    spilled = results[1].attempts
    assert [(a.driver, a.outcome, a.reason) for a in spilled] == [
        ("primary", "skipped", "rate limited"),
        ("backup", "sent", None),
    ]
    assert spilled[0].to_dict()["reason"] == "rate limited"
    primary_health = mailer.health()[0]
    assert primary_health.state is State.HEALTHY
    assert primary_health.consecutive_failures == 0
    clock.advance(0.5)  # the next slot
    assert mailer.send(simple_message()).driver == "primary"
    assert mailer.send(simple_message()).driver == "backup"
    assert len(primary.outbox) == 2 and len(backup.outbox) == 5


def test_spill_mode_keeps_the_primary_under_its_rate_in_every_window() -> None:
    clock = FakeClock()
    primary, backup = MemoryDriver(name="primary"), MemoryDriver(name="backup")
    mailer = mailer_for(clock, [primary, backup], primary=DriverPolicy(rate="50/s"))
    times: list[float] = []
    for _ in range(1000):  # 200 messages a second for 5 s
        if mailer.send(simple_message()).driver == "primary":
            times.append(clock())
        clock.advance(0.005)
    # (1e-9: the fake clock adds 0.005 s a thousand times in binary floating point)
    assert max(sum(1 for t in times if s <= t < s + 1.0 - 1e-9) for s in times) <= 50
    assert len(times) >= 245
    assert len(primary.outbox) + len(backup.outbox) == 1000


def test_wait_mode_waits_for_the_next_slot_on_the_same_driver() -> None:
    clock = FakeClock()
    primary, backup = MemoryDriver(name="primary"), MemoryDriver(name="backup")
    mailer = mailer_for(
        clock, [primary, backup], primary=DriverPolicy(rate="4/s", rate_mode="wait")
    )
    start = clock()
    results = [mailer.send(simple_message()) for _ in range(3)]
    assert [r.driver for r in results] == ["primary"] * 3
    assert clock() - start == pytest.approx(0.5)  # two waits of 0.25 s, on the fake clock
    assert len(backup.outbox) == 0


def test_wait_mode_spills_what_the_deadline_cannot_wait_for() -> None:
    clock = FakeClock()
    primary, backup = MemoryDriver(name="primary"), MemoryDriver(name="backup")
    mailer = FailoverMailer(
        [primary, backup], clock=clock, sleep=clock.advance, deadline=0.3,
        policies={"primary": DriverPolicy(rate="1/s", rate_mode="wait")},
    )  # fmt: skip
    assert mailer.send(simple_message()).driver == "primary"
    second = mailer.send(simple_message())  # the next slot is 1 s away, the deadline 0.3 s
    assert second.driver == "backup"
    assert second.attempts[0].reason == "rate limited"
    assert clock() == pytest.approx(1000.0)  # nothing waited


def test_a_spilled_driver_is_waited_for_when_every_other_driver_failed() -> None:
    clock = FakeClock()
    primary = MemoryDriver(name="primary")
    backup = MemoryDriver(name="backup", fail="unavailable")
    mailer = mailer_for(clock, [primary, backup], primary=DriverPolicy(rate="2/s"))
    assert mailer.send(simple_message()).driver == "primary"
    result = mailer.send(simple_message())
    assert result.driver == "primary"
    assert [(a.driver, a.outcome) for a in result.attempts] == [
        ("primary", "skipped"), ("backup", "unavailable"), ("primary", "sent"),
    ]  # fmt: skip
    assert clock() == pytest.approx(1000.5)
    assert len(primary.outbox) == 2


def test_a_lone_rate_limited_driver_with_a_deadline_gives_up_in_time() -> None:
    clock = FakeClock()
    primary = MemoryDriver(name="primary")
    mailer = FailoverMailer(
        [primary], clock=clock, sleep=clock.advance, deadline=0.2,
        policies={"primary": DriverPolicy(rate="1/s")},
    )  # fmt: skip
    mailer.send(simple_message())
    with pytest.raises(AllProvidersFailed) as caught:
        mailer.send(simple_message())
    assert [(a.outcome, a.reason) for a in caught.value.attempts] == [("skipped", "rate limited")]
    assert len(primary.outbox) == 1


def test_a_429_still_cools_the_driver_down() -> None:
    clock = FakeClock()
    primary, backup = LimitedDriver(name="primary"), MemoryDriver(name="backup")
    mailer = mailer_for(clock, [primary, backup], primary=DriverPolicy(rate="100/s"))
    assert mailer.send(simple_message()).driver == "backup"
    assert mailer.health()[0].state is State.COOLING_DOWN
    clock.advance(1.0)
    result = mailer.send(simple_message())
    assert result.attempts[0].outcome == "skipped"
    assert result.attempts[0].reason != "rate limited"
    assert primary.calls == 1


def test_slow_sends_are_delivered_once_and_then_routed_around() -> None:
    clock = FakeClock()
    primary = SlowDriver(clock, 1.0, name="primary")
    backup = SlowDriver(clock, 0.01, name="backup")
    mailer = mailer_for(clock, [primary, backup], primary=DriverPolicy(slow_after=0.2))
    first, second, third = (mailer.send(simple_message()) for _ in range(3))
    assert (first.driver, second.driver) == ("primary", "primary")
    assert [(a.outcome, a.reason) for a in first.attempts] == [("sent", "slow")]
    assert first.attempts[0].elapsed == pytest.approx(1.0)
    assert first.attempts[0].to_dict()["reason"] == "slow"
    assert third.driver == "backup"  # two slow sends in a row: cooling down
    assert third.attempts[0].outcome == "skipped"
    health = mailer.health()[0]
    assert health.state is State.COOLING_DOWN
    assert health.last_error is not None and health.last_error.startswith("slow")
    assert len(primary.outbox) == 2 and len(backup.outbox) == 1  # nothing sent twice
    # After the cooldown a slow probe cools it again; a fast one brings it back.
    clock.advance(31.0)
    assert mailer.send(simple_message()).driver == "primary"
    assert mailer.health()[0].state is State.COOLING_DOWN
    assert mailer.send(simple_message()).driver == "backup"
    clock.advance(31.0)
    primary.seconds = 0.05
    assert mailer.send(simple_message()).driver == "primary"
    assert mailer.health()[0].state is State.HEALTHY
    assert mailer.send(simple_message()).driver == "primary"


def test_a_fast_send_resets_the_count_of_slow_ones() -> None:
    clock = FakeClock()
    primary = SlowDriver(clock, 1.0, name="primary")
    mailer = mailer_for(
        clock, [primary, MemoryDriver(name="backup")], primary=DriverPolicy(slow_after=0.5)
    )
    for seconds in (1.0, 0.1, 1.0, 0.1, 1.0):
        primary.seconds = seconds
        assert mailer.send(simple_message()).driver == "primary"
    assert mailer.health()[0].state is State.HEALTHY


def test_without_slow_after_a_slow_send_is_a_plain_success() -> None:
    clock = FakeClock()
    primary = SlowDriver(clock, 5.0, name="primary")
    mailer = mailer_for(clock, [primary, MemoryDriver(name="backup")])
    for _ in range(3):
        result = mailer.send(simple_message())
        assert (result.driver, result.attempts[0].reason) == ("primary", None)


def test_policies_must_name_known_drivers() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        FailoverMailer([MemoryDriver(name="a")], policies={"nope": DriverPolicy(rate="1/s")})


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"rate": "fast"}, "rate looks like"),
        ({"rate": 14}, "rate must be text"),
        ({"rate": "1/s", "rate_mode": "queue"}, "rate_mode must be one of spill, wait"),
        ({"slow_after": 0}, "slow_after must be more than 0"),
        ({"slow_after": "soon"}, "slow_after must be a number"),
        ({"slow_after": float("nan")}, "slow_after must be more than 0"),
    ],
)
def test_config_refuses_bad_policy_settings(settings: dict[str, Any], match: str) -> None:
    config = {"drivers": [{"name": "m", "module": "memory", "settings": settings}]}
    with pytest.raises(ConfigError, match=match) as caught:
        load_config(config)
    assert caught.value.driver == "m"


def test_config_takes_the_policy_out_of_any_drivers_settings() -> None:
    config = load_config({
        "drivers": [
            {"name": "m", "module": "memory",
             "settings": {"rate": "50/s", "rate_mode": "wait", "slow_after": "0.2", "seed": 3}},
            {"name": "b", "module": "memory"},
        ]
    })  # fmt: skip
    spec = config.drivers[0]
    assert dict(spec.settings) == {"seed": 3}  # the driver never sees them: no declaration
    assert spec.policy == DriverPolicy(rate=Rate(50, 1.0), rate_mode="wait", slow_after=0.2)
    assert config.policies() == {"m": spec.policy}
    mailer = FailoverMailer.from_config(
        {"drivers": [{"name": "m", "module": "memory", "settings": {"rate": "1/min"}},
                     {"name": "b", "module": "memory"}]}
    )  # fmt: skip
    assert mailer.policies == {"m": DriverPolicy(rate="1/min")}
    assert [mailer.send(simple_message()).driver for _ in range(2)] == ["m", "b"]
    other = load_config({"drivers": [{"name": "m", "module": "memory"}]})
    same = load_config({"drivers": [{"name": "m", "module": "memory", "settings": {}}]})
    changed = load_config({"drivers": [{"name": "m", "module": "memory",
                                        "settings": {"slow_after": 1}}]})  # fmt: skip
    assert other.drivers[0].key == same.drivers[0].key != changed.drivers[0].key


def test_the_rate_is_counted_in_the_mailers_store() -> None:
    clock = FakeClock(start=1_800_000_000.0)
    store = MemoryStore(clock=clock)
    one, two = (
        FailoverMailer(
            [MemoryDriver(name="primary"), MemoryDriver(name="backup")],
            clock=clock,
            state=store,
            policies={"primary": DriverPolicy(rate="1/s")},
        )
        for _ in range(2)
    )
    assert one.send(simple_message()).driver == "primary"
    assert two.send(simple_message()).driver == "backup"  # the budget is shared


WORKER = """
import sys, time
from mailfailover import DriverPolicy, FailoverMailer
from mailfailover.testing import MemoryDriver, simple_message

class Stamped(MemoryDriver):
    def send(self, message):
        print("primary", repr(time.time()), flush=True)
        return super().send(message)

url, namespace = sys.argv[1:]
primary, backup = Stamped(name="primary"), MemoryDriver(name="backup")
mailer = FailoverMailer([primary, backup], state={"url": url, "namespace": namespace},
                        policies={"primary": DriverPolicy(rate="10/s")})
results = []
end = time.time() + 1.5
while time.time() < end:  # as fast as possible for 1.5 s
    results.append(mailer.send(simple_message()))
time.sleep(0.002)
print("done", len(primary.outbox), len(backup.outbox),
      sum(r.driver == "primary" for r in results), len(results), flush=True)
"""


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_mailers_in_several_processes_share_one_rate(
    kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'state.db'}"
    else:
        url = request.getfixturevalue("redis_server").url
    namespace = f"rm{uuid.uuid4().hex[:8]}"
    open_store(url, namespace=namespace).close()
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
            lines = out.decode().split("\n")
            done = [line.split() for line in lines if line.startswith("done")]
            assert len(done) == 1
            _, on_primary, on_backup, counted, sent = done[0]
            assert int(on_primary) + int(on_backup) == int(sent)  # each delivered once
            stamps = [float(line.split()[1]) for line in lines if line.startswith("primary")]
            assert len(stamps) == int(on_primary) == int(counted)
            times += stamps
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    times.sort()
    assert len(times) >= 5  # the primary did take its share (about 15 slots in 1.5 s)
    # 10/s shared by three processes: never more than 10 sends in any second, with 50 ms
    # allowed for the time between the store granting a slot and the driver stamping it.
    assert max(sum(1 for t in times if s <= t < s + 0.95) for s in times) <= 10
