"""The baseline for bench/http_adapter.py: a bare Flask endpoint making the same driver call.

Served by gunicorn with the same worker settings as ``mailfailover serve``; it parses the
JSON body with Flask, builds the Message, sends it through one SendGrid driver pointed at
$BENCH_PROVIDER_URL, and answers the receipt: the least an application could do by hand.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import flask

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import PROVIDERS

from mailfailover import Message

app = flask.Flask(__name__)
driver = PROVIDERS["sendgrid"].make(os.environ["BENCH_PROVIDER_URL"], name="sendgrid")


@app.post("/send")
def send() -> Any:
    data = flask.request.get_json()
    message = Message(data["sender"], data["to"], data["subject"], data["text"],
                      html=data.get("html"))  # fmt: skip
    receipt = driver.send(message)
    return {"status": "sent", "driver": receipt.driver, "message_id": receipt.message_id}


@app.get("/health")
def health() -> Any:
    return {"status": "ok"}
