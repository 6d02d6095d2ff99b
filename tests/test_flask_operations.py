"""The adapter's operations routes with Flask's test client: /metrics, the status page, /health.

The end-to-end versions (gunicorn workers adding up, a real browser) are in
tests/test_serve_metrics.py and tests/browser/.
"""

from __future__ import annotations

import logging
import os
import re
import types
from pathlib import Path
from typing import Any

import flask
import pytest

from mailfailover import FailoverMailer, MemoryDriver
from mailfailover.config import HttpConfig
from mailfailover.flask import MailFailover, create_app

pytest.importorskip("prometheus_client")

TOKEN = "ops-token-3c9e71"
SCRAPE = "scrape-token-81d2"
GOOD = {"sender": "shop@example.com", "to": "Ann <ann@ann.example>, bob@bob.example",
        "subject": "Secret subject", "text": "BODY-CANARY"}  # fmt: skip


def make_app(*modes: str | None, **http: Any) -> flask.Flask:
    drivers = [
        {"name": f"d{i}", "module": "memory", **({"settings": {"fail": m}} if m else {})}
        for i, m in enumerate(modes or (None,))
    ]
    return create_app(config={"drivers": drivers, "failure_threshold": 1, "http": http})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- /metrics ---------------------------------------------------------------------------------


def test_metrics_counts_what_the_app_sent() -> None:
    client = make_app("unavailable", None).test_client()
    assert client.post("/send", json=GOOD).status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = response.get_data(as_text=True)
    assert 'mailfailover_messages_total{outcome="sent"} 1.0' in text
    assert 'mailfailover_failovers_total{driver="d1",reason="server_error"} 1.0' in text
    assert (
        'mailfailover_attempts_total{driver="d0",outcome="unavailable",reason="server_error"} 1.0'
        in text
    )
    assert 'mailfailover_driver_state{driver="d0"} 2.0' in text
    assert 'mailfailover_driver_state{driver="d1"} 0.0' in text
    assert "example" not in text and "Secret" not in text
    assert client.post("/metrics").status_code == 405


def test_metrics_of_two_apps_are_their_own() -> None:
    first, second = make_app().test_client(), make_app().test_client()
    first.post("/send", json=GOOD)
    assert 'mailfailover_messages_total{outcome="sent"} 1.0' in first.get("/metrics").text
    assert 'outcome="sent"' not in second.get("/metrics").text


def test_metrics_need_the_api_token_when_there_is_no_metrics_token() -> None:
    client = make_app(api_token=TOKEN).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("nope")).status_code == 401
    assert client.get("/metrics", headers=bearer(TOKEN)).status_code == 200


def test_the_metrics_token_reads_metrics_and_nothing_else() -> None:
    client = make_app(api_token=TOKEN, metrics_token=SCRAPE).test_client()
    assert client.get("/metrics", headers=bearer(SCRAPE)).status_code == 200
    assert client.get("/metrics", headers=bearer(TOKEN)).status_code == 200
    refused = client.get("/metrics", headers=bearer("nope"))
    assert (refused.status_code, refused.json["error"]) == (401, 7)
    assert client.get("/metrics").status_code == 401
    assert client.post("/send", json=GOOD, headers=bearer(SCRAPE)).status_code == 401
    assert client.get("/health", headers=bearer(SCRAPE)).status_code == 401
    assert "mailfailover is running" in client.get("/", headers=bearer(SCRAPE)).text
    assert "data-health" not in client.get("/", headers=bearer(SCRAPE)).text


# -- /health ----------------------------------------------------------------------------------


def test_health_adds_last_success_and_the_recent_attempts() -> None:
    client = make_app("unavailable", None).test_client()
    plain = client.get("/health").json
    assert [d["last_success"] for d in plain["drivers"]] == [None, None]
    assert "recent" not in plain  # only on request: health checkers stay cheap
    client.post("/send", json=GOOD)
    data = client.get("/health?recent=1").json
    d0, d1 = data["drivers"]
    assert (d0["state"], d0["last_success"], d1["state"]) == ("cooling_down", None, "healthy")
    assert d1["last_success"] == pytest.approx(data["time"], abs=60)
    assert d0["last_failure"] == pytest.approx(data["time"], abs=60)
    recent = data["recent"]
    assert data["recent_scope"] == "process"  # no shared state store here
    assert [(a["driver"], a["outcome"], a["reason"]) for a in recent] == [
        ("d1", "sent", "none"),
        ("d0", "unavailable", "server_error"),
    ]
    assert recent[0]["domains"] == ["ann.example", "bob.example"]
    text = client.get("/health?recent=1").text
    assert "ann@" not in text and "Secret" not in text and "BODY-CANARY" not in text


def test_recent_keeps_the_last_hundred() -> None:
    client = make_app().test_client()
    for _ in range(103):
        client.post("/send", json=GOOD)
    assert len(client.get("/health?recent=1").json["recent"]) == 100


# -- the status page --------------------------------------------------------------------------


def nonce_of(response: Any) -> str:
    match = re.search(r"script-src 'nonce-([^']+)'", response.headers["Content-Security-Policy"])
    assert match is not None
    return match.group(1)


def test_the_page_is_self_contained() -> None:
    client = make_app().test_client()
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.text
    nonce = nonce_of(response)
    assert f'<script nonce="{nonce}">' in page and f'<style nonce="{nonce}">' in page
    assert nonce != nonce_of(client.get("/"))  # a fresh nonce each time
    assert 'data-health="/health"' in page and 'data-send="/send"' in page
    # no external assets: nothing is loaded from anywhere else
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)
    assert "http://" not in page and "https://" not in page
    for label in ("send-token", "send-sender", "send-to", "send-subject", "send-text"):
        assert f'<label for="{label}">' in page
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_the_page_under_a_prefix_points_at_its_own_endpoints() -> None:
    app = flask.Flask("shop")
    MailFailover(app, FailoverMailer([MemoryDriver(name="m")]), http=HttpConfig(),
                 url_prefix="/mail")  # fmt: skip
    page = app.test_client().get("/mail/").text
    assert 'data-health="/mail/health"' in page and 'data-send="/mail/send"' in page


def test_with_a_token_the_page_shows_only_that_it_runs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_app(api_token=TOKEN).test_client()
    gate = client.get("/")
    assert gate.status_code == 200
    assert "mailfailover is running" in gate.text
    assert "d0" not in gate.text and "data-health" not in gate.text
    assert '<label for="token">' in gate.text

    wrong = client.get("/?token=not-it")
    assert wrong.status_code == 401
    assert "not valid" in wrong.text and "not-it" not in wrong.text
    assert client.get("/health").status_code == 401  # no cookie was set

    entered = client.get(f"/?token={TOKEN}")
    assert entered.status_code == 303
    assert entered.headers["Location"] == "/"  # the token leaves the address bar
    cookie = entered.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    page = client.get("/")
    assert 'data-health="/health"' in page.text and TOKEN not in page.text
    assert client.get("/health").status_code == 200  # the page can read /health
    # ...but the cookie never sends mail nor reads metrics
    assert client.post("/send", json=GOOD).status_code == 401
    assert client.get("/metrics").status_code == 401

    assert TOKEN not in caplog.text and "not-it" not in caplog.text


def test_a_bearer_header_shows_the_page() -> None:
    client = make_app(api_token=TOKEN).test_client()
    assert "data-health" in client.get("/", headers=bearer(TOKEN)).text
    assert "data-health" not in client.get("/", headers=bearer("nope")).text


def test_the_login_form() -> None:
    client = make_app(api_token=TOKEN).test_client()
    refused = client.post("/", data={"token": "nope"})
    assert refused.status_code == 401 and "not valid" in refused.text
    assert "data-health" not in client.get("/").text
    entered = client.post("/", data={"token": TOKEN})
    assert (entered.status_code, entered.headers["Location"]) == (303, "/")
    assert "data-health" in client.get("/").text
    too_big = client.post("/", data={"token": "x" * 5000})
    assert too_big.status_code == 413
    empty = client.post("/", data=b"", content_type="application/x-www-form-urlencoded")
    assert empty.status_code == 401 and "not valid" in empty.text


def test_a_cookie_for_another_token_is_refused() -> None:
    old = make_app(api_token="old-token").test_client()
    entered = old.get("/?token=old-token")
    value = entered.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    client = make_app(api_token=TOKEN).test_client()
    client.set_cookie("mailfailover_status", value)
    assert "data-health" not in client.get("/").text
    assert client.get("/health").status_code == 401


def test_other_methods_on_the_page() -> None:
    client = make_app().test_client()
    assert client.delete("/").status_code == 405
    assert client.options("/").headers["Allow"] == "GET, HEAD, POST, OPTIONS"


# -- prometheus_client's multiprocess mode under serve ----------------------------------------


def test_serve_makes_and_removes_its_metrics_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailfailover.flask._multiprocess import multiprocess_metrics

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with multiprocess_metrics() as directory:
        assert directory is not None
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == directory
        (Path(directory) / "counter_123.db").write_bytes(b"x")
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert not Path(directory).exists()


def test_a_users_metrics_directory_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mailfailover.flask._multiprocess import mark_worker_dead, multiprocess_metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    live = tmp_path / "gauge_livesum_4242.db"
    live.write_bytes(b"x")
    kept = tmp_path / "counter_4242.db"
    kept.write_bytes(b"x")
    with multiprocess_metrics() as directory:
        assert directory == str(tmp_path)
        mark_worker_dead(None, types.SimpleNamespace(pid=4242))
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)
    assert not live.exists()  # a dead worker's live gauges go
    assert kept.exists()  # its counts stay: they still add up
