"""Queued delivery end to end: real redis-server, real ``mailfailover worker`` processes,
a Postmark stand-in on a loopback socket that notes every Message-ID it accepts.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import queued_message, wait_final

from mailfailover.celery import Outbox
from mailfailover.errors import QueueUnavailable

pytestmark = pytest.mark.slow


def _delivered(stand_in: Any) -> Counter[str]:
    return Counter(i.decode() for i in stand_in.ids if i is not None)


def test_sigkill_of_a_worker_mid_run_sends_nothing_twice_and_loses_nothing(
    queue_config, workers, stand_in, run_id, redis_server
):
    """500 messages, two workers; one is killed with SIGKILL (pool and all) while it holds
    tasks. Its tasks come back after the visibility timeout and the other worker finishes
    them: every message is sent exactly once, or dead because it was mid-send (ambiguous).
    A task lost in kombu's Redis window (taken off the queue, not yet recorded as
    unacknowledged) is published again by the sweep, so none is left `queued`."""
    config = queue_config()
    first, second = workers(config), workers(config)
    first.wait_ready()
    second.wait_ready()
    outbox = Outbox(config)
    ids = [outbox.enqueue(queued_message(i, run_id)) for i in range(500)]
    deadline = time.monotonic() + 60
    while stand_in.accepted < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stand_in.accepted >= 100, "the workers did not get going"
    first.kill()
    assert stand_in.accepted < 500, "the run ended before the kill: nothing was tested"
    # Tasks the killed worker had taken stay unacknowledged in the broker; the live worker
    # acknowledges its own within milliseconds. What is still there a moment later is the
    # dead worker's, and only the visibility timeout brings it back.
    broker = redis.Redis(port=redis_server.port, db=1)
    taken = set(broker.hkeys("unacked"))
    time.sleep(1.5)
    orphaned = taken & set(broker.hkeys("unacked"))
    assert orphaned, "the killed worker held no task: the redelivery was not tested"
    records = wait_final(config, ids, timeout=90)
    outbox.close()
    # Every record may be final before the visibility timeout: a task the killed worker had
    # run but not yet acknowledged. It still comes back (and does nothing): wait for that.
    deadline = time.monotonic() + 60
    while orphaned & set(broker.hkeys("unacked")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not orphaned & set(broker.hkeys("unacked")), "an orphaned task never came back"
    broker.close()

    statuses = Counter(r["status"] for r in records.values())
    assert len(records) == 500, "a message has no delivery record"
    assert set(statuses) <= {"sent", "dead"}, statuses
    delivered = _delivered(stand_in)
    assert max(delivered.values()) == 1, [m for m, n in delivered.items() if n > 1]
    assert set(delivered) <= set(ids)
    interrupted = 0
    for message_id, record in records.items():
        if record["status"] == "sent":
            assert delivered[message_id] == 1, message_id
            continue
        # Dead only when the provider may or may not have it (on_ambiguous: dead): killed
        # in the middle of its send, or — on a machine loaded enough that the stand-in
        # answers after the 2 s timeout — an ambiguous read timeout on the live worker.
        assert record["ambiguous"] is True, record
        last = record["attempts"][-1]
        assert last["outcome"] in ("interrupted", "unavailable"), last
        if last["outcome"] == "interrupted":
            interrupted += 1
        else:
            assert last.get("reason") == "timeout" and last.get("ambiguous") is True, last
    # At most the tasks the killed worker was running at that moment were interrupted.
    assert interrupted <= 2


def test_tasks_the_broker_lost_are_published_again_and_sent_once(
    queue_config, workers, stand_in, run_id, redis_server
):
    """The broker loses every task (its queue emptied before any worker ran, as kombu's
    Redis window loses one to a SIGKILL). The workers' sweep finds the records `queued` and
    untouched past the visibility timeout and publishes them again from the content kept
    in the store: each message is sent exactly once, and the content is dropped after."""
    config = queue_config()
    outbox = Outbox(config)
    ids = [outbox.enqueue(queued_message(i, run_id)) for i in range(20)]
    broker = redis.Redis(port=redis_server.port, db=1)
    assert broker.llen(f"mail-{run_id}") == 20
    broker.delete(f"mail-{run_id}")
    broker.close()
    worker = workers(config)
    worker.wait_ready()
    records = wait_final(config, ids, timeout=60)
    pending = outbox.records.pending()
    outbox.close()
    assert len(records) == 20 and {r["status"] for r in records.values()} == {"sent"}
    assert all(r["redrives"] == 1 for r in records.values())
    assert _delivered(stand_in) == Counter(ids)
    assert pending == []
    assert "its task was lost; published again" in worker.log.read_text()


def test_all_providers_down_then_back_every_message_once(queue_config, workers, stand_in,
                                                          run_id):  # fmt: skip
    """During an outage every try fails and is retried with backoff; after recovery every
    queued message is delivered once, none lost, none twice."""
    from _servers import SUCCESS, Answer

    stand_in.default = Answer(503, {"ErrorCode": 500, "Message": "down for maintenance"})
    config = queue_config()
    worker = workers(config)
    worker.wait_ready()
    outbox = Outbox(config)
    ids = [outbox.enqueue(queued_message(i, run_id)) for i in range(40)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        views = [outbox.status(m) for m in ids]
        if all(v is not None and v["tries"] >= 2 for v in views):
            break
        time.sleep(0.2)
    assert all(v is not None and v["tries"] >= 2 for v in views), "not every message was retried"
    assert stand_in.accepted == 0
    stand_in.default = SUCCESS
    records = wait_final(config, ids, timeout=60)
    assert {m: r["status"] for m, r in records.items()} == dict.fromkeys(ids, "sent")
    assert _delivered(stand_in) == Counter(ids)
    sample = outbox.status(ids[0])
    assert sample is not None
    assert sample["driver"] == "postmark"
    outcomes = [a["outcome"] for a in sample["attempts"]]
    assert outcomes[-1] == "sent" and set(outcomes[:-1]) <= {"unavailable", "skipped"}
    outbox.close()


def test_broker_down_at_enqueue_is_a_clear_error_and_nothing_is_recorded(
    queue_config, private_redis
):
    config = queue_config(broker=private_redis.url)
    outbox = Outbox(config)
    private_redis.stop()
    message = queued_message(1, "down0000")
    with pytest.raises(
        QueueUnavailable, match="did not take the message: OperationalError"
    ) as info:
        outbox.enqueue(message)
    assert info.value.code == 5
    assert outbox.status(message.message_id) is None
    assert outbox.records.content(message.message_id) is None
    assert outbox.records.pending() == []
    outbox.close()


def test_a_rejected_message_is_not_retried(queue_config, workers, stand_in, run_id):
    from _servers import Answer

    stand_in.default = Answer(422, {"ErrorCode": 300, "Message": "Invalid 'To' address."})
    config = queue_config()
    worker = workers(config, 1, "solo")
    worker.wait_ready()
    outbox = Outbox(config)
    message_id = outbox.enqueue(queued_message(1, run_id))
    records = wait_final(config, [message_id], timeout=30)
    assert records[message_id]["status"] == "rejected"
    assert stand_in.received == 1
    time.sleep(1)  # a retry would have come by now (backoff 0.2 s)
    assert stand_in.received == 1
    outbox.close()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_pool_process_killed_mid_send_gives_the_task_back_at_once(
    queue_config, workers, stand_in, run_id
):
    """reject_on_worker_lost: the worker's main process sees its pool process die and hands
    the task back to the broker at once, long before the (here 60 s) visibility timeout.
    The next try finds the send interrupted; with on_ambiguous: retry it sends again."""
    from _servers import HANG

    stand_in.then(HANG)
    config = queue_config(on_ambiguous="retry", visibility_timeout=60)
    worker = workers(config, 1)
    worker.wait_ready()
    outbox = Outbox(config)
    message_id = outbox.enqueue(queued_message(1, run_id))
    deadline = time.monotonic() + 30
    while stand_in.received == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stand_in.received == 1, "the first send never reached the stand-in"
    pool = _children(worker.process.pid)
    assert len(pool) == 1
    os.kill(pool[0], signal.SIGKILL)
    # Within 30 s, half the visibility timeout: only the rejection can bring it back so soon.
    records = wait_final(config, [message_id], timeout=30)
    record = records[message_id]
    assert record["status"] == "sent", "the task did not come back before the visibility timeout"
    assert [a["outcome"] for a in record["attempts"]] == ["interrupted", "sent"]
    assert _delivered(stand_in) == Counter([message_id])
    outbox.close()
