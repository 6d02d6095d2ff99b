"""Queue mode of the HTTP adapter (``http.queue: true``) and ``mailfailover queue ...``,
against a real redis-server (broker and store) and, where a delivery is needed, a real
worker process."""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from conftest import queued_message, wait_final
from openapi_schema_validator import OAS30Validator

from mailfailover import FailoverMailer, MemoryDriver
from mailfailover.celery import Outbox
from mailfailover.cli import main
from mailfailover.delivery import DeliveryPolicy, DeliveryRecords, deliver
from mailfailover.flask import create_app
from mailfailover.state import open_store

pytestmark = pytest.mark.slow

TOKEN = "queue-test-token-5e1f"
BODY = {
    "sender": "queue@example.com",
    "to": "rcpt@example.com",
    "subject": "Queued over HTTP",
    "text": "Hello.",
}


def _app(path: Any) -> Any:
    document = yaml.safe_load(path.read_text())
    document["http"] = {"queue": True, "api_token": TOKEN}
    path.write_text(yaml.safe_dump(document))
    return create_app(config=str(path))


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _url(message_id: str) -> str:
    return "/messages/" + urllib.parse.quote(message_id, safe="")


OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


def _conforms(schema: str, instance: object) -> None:
    """``instance`` is what docs/openapi.yaml says the adapter answers."""
    components = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))["components"]
    document = {"$ref": f"#/components/schemas/{schema}", "components": components}
    OAS30Validator(document).validate(instance)


def test_post_send_queues_and_get_messages_follows_it_to_sent(queue_config, workers, stand_in):
    config = queue_config()
    client = _app(config).test_client()
    answer = client.post("/send", json=BODY, headers=_auth())
    assert answer.status_code == 202, answer.get_json()
    body = answer.get_json()
    _conforms("Queued", body)
    assert body["status"] == "queued"
    message_id = body["message_id"]
    early = client.get(_url(message_id), headers=_auth())
    assert early.status_code == 200
    assert early.get_json()["status"] == "queued"
    assert stand_in.received == 0
    worker = workers(config, 1, "solo")
    worker.wait_ready()
    assert wait_final(config, [message_id], timeout=30)[message_id]["status"] == "sent"
    done = client.get(_url(message_id), headers=_auth()).get_json()
    _conforms("MessageStatus", done)
    _conforms("MessageStatus", early.get_json())
    assert done["status"] == "sent"
    assert done["driver"] == "postmark"
    assert [a["outcome"] for a in done["attempts"]] == ["sent"]
    assert done["events"] == []
    # The angle brackets may be left out of the URL.
    bare = client.get(_url(message_id.strip("<>")), headers=_auth())
    assert bare.get_json()["status"] == "sent"


def test_get_messages_needs_the_token_and_knows_unknown_ids(queue_config):
    client = _app(queue_config()).test_client()
    assert client.get(_url("<x@example.com>")).status_code == 401
    unknown = client.get(_url("<nobody-queued-this@example.com>"), headers=_auth())
    assert unknown.status_code == 404
    assert unknown.get_json()["error"] == 10


def test_broker_down_answers_503_code_5_and_records_nothing(queue_config, private_redis):
    config = queue_config(broker=private_redis.url)
    client = _app(config).test_client()
    private_redis.stop()
    answer = client.post("/send", json=BODY, headers=_auth())
    assert answer.status_code == 503
    assert answer.get_json()["error"] == 5
    assert "did not take the message" in answer.get_json()["message"]
    store = open_store(yaml.safe_load(config.read_text())["state"])
    assert store.scan("delivery:") == []
    assert store.scan("") == []
    store.close()


def _dead_letter(config: Any, run_id: str) -> str:
    """Make a dead letter the way a worker does: a try that fails, with no time left."""
    loaded = yaml.safe_load(config.read_text())
    records = DeliveryRecords(open_store(loaded["state"]))
    message = queued_message(1, run_id)
    with FailoverMailer([MemoryDriver(name="down", fail="unavailable")]) as mailer:
        outcome = deliver(message.to_dict(), mailer=mailer, records=records,
                          policy=DeliveryPolicy(max_age=0.001, lease=5), token="t")  # fmt: skip
    assert outcome.status == "dead"
    records.store.close()
    return message.message_id


def test_queue_status_and_dead_and_retry_from_the_command_line(queue_config, capsys, run_id,
                                                                redis_server):  # fmt: skip
    config = queue_config()
    message_id = _dead_letter(config, run_id)

    assert main(["queue", "status", message_id, "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"{message_id}: dead after 1 try" in out
    assert "down unavailable" in out

    assert main(["queue", "dead", "--config", str(config), "--json"]) == 0
    letters = json.loads(capsys.readouterr().out)
    assert [letter["message_id"] for letter in letters] == [message_id]

    assert main(["queue", "dead", "--retry", "--config", str(config)]) == 0
    assert f"{message_id}: queued again" in capsys.readouterr().out
    broker = redis.Redis(port=redis_server.port, db=1)
    queued = broker.lrange(f"mail-{run_id}", 0, -1)
    broker.close()
    assert len(queued) == 1
    assert json.loads(queued[0])["headers"]["task"] == "mailfailover.deliver"
    outbox = Outbox(config)
    view = outbox.status(message_id)
    outbox.close()
    assert view is not None
    assert view["status"] == "queued"
    assert [a["outcome"] for a in view["attempts"]] == ["unavailable"]  # kept

    assert main(["queue", "dead", "--retry", message_id, "--config", str(config)]) == 1
    assert "not a dead letter" in capsys.readouterr().err
    assert main(["queue", "status", "<nobody@example.com>", "--config", str(config)]) == 1


def test_queue_redrive_publishes_again_what_the_broker_lost(queue_config, capsys, run_id,
                                                            redis_server):  # fmt: skip
    """The operator's lever for the workers' sweep: a queued message whose task the broker
    lost (its queue emptied here) is published again, once; a bad --older-than is usage."""
    config = queue_config()
    outbox = Outbox(config)
    message_id = outbox.enqueue(queued_message(7, run_id))
    outbox.close()
    broker = redis.Redis(port=redis_server.port, db=1)
    assert broker.delete(f"mail-{run_id}") == 1
    base = ["queue", "redrive", "--config", str(config)]
    assert main([*base, "--json"]) == 0  # not stale yet: a task may only be slow
    assert json.loads(capsys.readouterr().out) == {"published": 0}
    assert main([*base, "--older-than", "0"]) == 0
    assert capsys.readouterr().out == "1 lost task published again\n"
    assert main(["queue", "status", message_id, "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["redrives"] == 1
    assert main(["queue", "status", message_id, "--config", str(config)]) == 0
    assert "its task was lost and published again 1x" in capsys.readouterr().out
    queued = broker.lrange(f"mail-{run_id}", 0, -1)
    broker.close()
    assert len(queued) == 1
    body = json.loads(base64.b64decode(json.loads(queued[0])["body"]))
    assert body[0][0]["message_id"] == message_id
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(SystemExit) as exited:
            main([*base, "--older-than", bad])
        assert exited.value.code == 2
    assert "--older-than" in capsys.readouterr().err
