"""``GET /metrics`` under ``mailfailover serve --workers 3``: every worker's counts add up.

The server sets up prometheus_client's multiprocess mode itself (a temporary directory it
creates, logs and removes); sends go over fresh connections until at least two workers
have counted some, and every scrape, whichever worker answers it, shows them all.
"""

from __future__ import annotations

import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from serve_helpers import running_server

pytest.importorskip("prometheus_client")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")

MESSAGE = {"sender": "shop@example.com", "to": "ann@example.com", "subject": "Hi", "text": "Hi"}
CONFIG = {"drivers": [{"name": "only", "module": "memory"}]}
MAX_ROUNDS = 40
BATCH = 6


def _send(url: str) -> int:
    # a fresh connection each time, so the workers take turns accepting them
    return requests.post(url + "/send", json=MESSAGE, timeout=10).status_code


def test_metrics_add_up_across_three_workers(tmp_path: Path) -> None:
    with running_server(tmp_path, CONFIG, workers=3) as server:
        found = re.search(r"metrics of every worker add up in (\S+)", server.output())
        assert found, server.output()
        directory = Path(found.group(1))
        assert directory.is_dir()

        sent = 0
        counting: set[str] = set()
        with ThreadPoolExecutor(BATCH) as pool:
            for _ in range(MAX_ROUNDS):
                statuses = list(pool.map(_send, [server.url] * BATCH))
                assert statuses == [200] * BATCH
                sent += BATCH
                counting = {p.name for p in directory.glob("counter_*.db")}
                if len(counting) >= 2 and sent >= 3 * BATCH:
                    break
        assert len(counting) >= 2, "the sends all went to one worker"

        expected = f'mailfailover_messages_total{{outcome="sent"}} {float(sent)}'
        for _ in range(6):  # whichever worker answers
            text = server.get("/metrics").text
            assert expected in text
            assert (
                f'mailfailover_attempts_total{{driver="only",outcome="sent",reason="none"}} '
                f"{float(sent)}" in text
            )
            assert 'mailfailover_driver_state{driver="only"} 0.0' in text
            assert f'mailfailover_send_seconds_count{{driver="only"}} {float(sent)}' in text
    assert not directory.exists(), "serve left its metrics directory behind"


def test_metrics_token_over_a_socket(tmp_path: Path) -> None:
    config = {**CONFIG, "http": {"api_token": "api-t0ken", "metrics_token": "scrape-t0ken"}}
    with running_server(tmp_path, config) as server:
        assert server.get("/metrics").status_code == 401
        scraped = server.get("/metrics", headers={"Authorization": "Bearer scrape-t0ken"})
        assert scraped.status_code == 200
        assert "mailfailover_driver_state" in scraped.text
        refused = server.post(
            "/send", json=MESSAGE, headers={"Authorization": "Bearer scrape-t0ken"}
        )
        assert refused.status_code == 401
        assert "scrape-t0ken" not in server.output()


def test_with_a_sqlite_state_every_worker_shows_every_attempt(tmp_path: Path) -> None:
    """The status page's record is shared: once two workers have sent, any answer of
    /health?recent=1 holds all the attempts, so it holds another worker's."""
    config = {**CONFIG, "state": f"sqlite:///{tmp_path / 'state.db'}"}
    with running_server(tmp_path, config, workers=3) as server:
        found = re.search(r"metrics of every worker add up in (\S+)", server.output())
        assert found, server.output()
        directory = Path(found.group(1))
        sent = 0
        with ThreadPoolExecutor(BATCH) as pool:
            for _ in range(MAX_ROUNDS):
                assert list(pool.map(_send, [server.url] * BATCH)) == [200] * BATCH
                sent += BATCH
                if len(list(directory.glob("counter_*.db"))) >= 2:
                    break
        assert len(list(directory.glob("counter_*.db"))) >= 2, "one worker sent everything"
        expected = min(sent, 100)
        deadline = time.monotonic() + 30
        answers: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            answers = [requests.get(server.url + "/health?recent=1", timeout=10).json()
                       for _ in range(4)]  # fmt: skip
            if all(len(a["recent"]) == expected for a in answers):  # type: ignore[arg-type]
                break
            time.sleep(0.2)
        for answer in answers:
            assert answer["recent_scope"] == "shared"
            assert len(answer["recent"]) == expected  # type: ignore[arg-type]
            assert answer["drivers"][0]["last_success"] is not None  # type: ignore[index]
