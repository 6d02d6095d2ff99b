"""The status page in headless Chromium, against ``mailfailover serve`` over a real socket.

The server runs the ``memory`` driver twice: "Primary" configured to be unavailable, so a
send trips it (``failure_threshold: 1``), and "Backup", which delivers. Screenshots go to
the artifacts folder (see conftest); with ``MAILFAILOVER_UPDATE_SCREENSHOT=1`` the laptop
one also replaces ``docs/status-page.png``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from serve_helpers import Served, running_server

pytest.importorskip("flask")

REFRESH_SECONDS = 3.0
#: One refresh of the page, plus slack for a busy machine.
ONE_REFRESH_MS = int((REFRESH_SECONDS + 2.0) * 1000)
TOKEN = "browser-token-6f02a1"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"
CONFIG = {
    "failure_threshold": 1,
    "cooldown": 300,
    "drivers": [
        {"name": "Primary", "module": "memory", "settings": {"fail": "unavailable"}},
        {"name": "Backup", "module": "memory"},
    ],
}
MESSAGE = {"sender": "shop@example.com", "to": "ann@example.com", "subject": "Hi", "text": "Hi"}

#: The WCAG contrast ratio of each element's text against its own or an ancestor's background.
CONTRAST_JS = """
(selector) => {
  function rgb(text) { return text.match(/[\\d.]+/g).slice(0, 4).map(Number); }
  function lum(c) {
    var v = c.slice(0, 3).map(function (x) { x /= 255;
      return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  }
  function background(node) {
    for (; node; node = node.parentElement) {
      var c = rgb(getComputedStyle(node).backgroundColor);
      if (c.length < 4 || c[3] > 0) { return c; }
    }
    return [255, 255, 255];
  }
  return Array.from(document.querySelectorAll(selector)).map(function (node) {
    var a = lum(rgb(getComputedStyle(node).color)), b = lum(background(node));
    return [node.textContent.trim().slice(0, 30),
            (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  });
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with running_server(tmp_path_factory.mktemp("status-page"), CONFIG) as served:
        yield served


@pytest.fixture(scope="module")
def gated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = {**CONFIG, "http": {"api_token": TOKEN}}
    with running_server(tmp_path_factory.mktemp("status-gated"), config) as served:
        yield served


def card(page: Any, driver: str) -> Any:
    return page.locator(f'article.card[data-driver="{driver}"]')


def test_the_status_page_follows_a_failover_and_sends(
    page: Any, server: Served, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    page.goto(server.url + "/")
    expect(card(page, "Primary").locator(".state")).to_have_text("healthy")
    expect(card(page, "Backup").locator(".state")).to_have_text("healthy")
    expect(page.locator("#overall")).to_have_text("ok")

    # The primary goes down behind the page's back: it shows within one refresh.
    sent = requests.post(server.url + "/send", json=MESSAGE, timeout=10)
    assert sent.json()["driver"] == "Backup"
    expect(card(page, "Primary").locator(".state")).to_contain_text(
        "cooling down", timeout=ONE_REFRESH_MS
    )
    assert "s left" in card(page, "Primary").locator(".state").text_content()
    expect(page.locator("#overall")).to_have_text("degraded")
    expect(card(page, "Primary")).to_contain_text("server_error: configured to be unavailable")
    rows = page.locator("#recent tbody tr")
    expect(rows.first).to_contain_text("Backup")
    expect(rows.nth(1)).to_contain_text("unavailable")
    expect(page.locator("#recent")).to_contain_text("example.com")
    expect(page.locator("#recent")).not_to_contain_text("ann@")
    expect(page.locator("#recent-note")).to_contain_text("this server process made")

    # The test-send form, by keyboard: Tab moves through the fields, Enter submits.
    page.focus("#send-token")
    page.keyboard.press("Tab")
    page.keyboard.type("Shop <shop@example.com>")
    page.keyboard.press("Tab")
    page.keyboard.type("bob@example.org")
    page.keyboard.press("Enter")
    result = page.locator("#send-result")
    expect(result.locator(".badge")).to_have_text("sent")
    expect(result.locator("pre")).to_contain_text('"driver": "Backup"')
    expect(result.locator("pre")).to_contain_text('"outcome": "skipped"')
    expect(card(page, "Backup")).to_contain_text("2 / 0", timeout=ONE_REFRESH_MS)
    health = requests.get(server.url + "/health", timeout=10).json()
    assert [d["sent"] for d in health["drivers"]] == [0, 2]

    contrast = page.evaluate(CONTRAST_JS, "h1, h2, h3, dt, dd, th, td, label, .badge, button")
    low = [(text, round(ratio, 2)) for text, ratio in contrast if ratio < 4.5]
    assert not low, f"text below WCAG AA contrast: {low}"

    shot = artifacts / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("MAILFAILOVER_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    assert page.problems == []


def test_the_page_fits_a_phone(browser: Any, server: Served, artifacts: Path) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone = context.new_page()
        problems: list[str] = []
        phone.on("pageerror", lambda exc: problems.append(str(exc)))
        phone.goto(server.url + "/")
        expect(card(phone, "Backup").locator(".state")).to_be_visible()
        overflow = phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"
        phone.screenshot(path=str(artifacts / "status-page-phone.png"), full_page=True)
        assert problems == []
    finally:
        context.close()


def test_with_a_token_the_page_needs_it(page: Any, gated_server: Served) -> None:
    from playwright.sync_api import expect

    page.goto(gated_server.url + "/")
    expect(page.locator("h1")).to_have_text("mailfailover is running")
    assert "Primary" not in page.content()

    page.fill("#token", "wrong")
    page.press("#token", "Enter")
    expect(page.locator(".error")).to_have_text("That token is not valid.")
    assert "wrong" not in page.content()

    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(card(page, "Primary").locator(".state")).to_have_text("healthy")
    assert TOKEN not in page.url and TOKEN not in page.content()
    # the page keeps refreshing through its cookie
    requests.post(gated_server.url + "/send", json=MESSAGE, timeout=10,
                  headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    expect(card(page, "Primary").locator(".state")).to_contain_text(
        "cooling down", timeout=ONE_REFRESH_MS
    )
    # /?token= works too, and leaves the address bar clean
    other = page.context.browser.new_context()
    try:
        fresh = other.new_page()
        fresh.goto(gated_server.url + f"/?token={TOKEN}")
        expect(card(fresh, "Backup")).to_be_visible()
        assert fresh.url == gated_server.url + "/"
    finally:
        other.close()
    # the failed login's 401 is the only console message
    assert all("401" in problem for problem in page.problems), page.problems
    assert TOKEN not in gated_server.output()
