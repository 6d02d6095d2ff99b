"""Headless Chromium for the browser tests, driven by Playwright.

The browser is Debian's ``chromium`` package (``apt-get install chromium``; ``.ci/run``
installs it), never a browser Playwright downloads: Playwright is pointed at the executable.
``$MAILFAILOVER_CHROMIUM`` names another one. Without a browser (or without the
``playwright`` package) the tests are skipped with the reason, except in CI (``CI=true``),
where that is a failure: the browser tests must always run there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_SECONDS = 60


def find_chromium() -> str | None:
    """The Chromium executable to use, or None."""
    named = os.environ.get("MAILFAILOVER_CHROMIUM")
    candidates = [named] if named else ["/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run in CI)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = find_chromium()
    if path is None:
        _unavailable(
            "headless Chromium is not installed (apt-get install chromium, or set "
            "MAILFAILOVER_CHROMIUM) for the browser tests"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is not installed: pip install -e '.[test]'")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Any]:
    """One headless Chromium per test module (Playwright gives it a fresh profile)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=LAUNCH_SECONDS * 1000,
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh context and page; ``page.problems`` collects console errors and page errors."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.problems = problems
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$MAILFAILOVER_ARTIFACTS`` or a pytest temporary folder."""
    named = os.environ.get("MAILFAILOVER_ARTIFACTS")
    folder = Path(named) if named else tmp_path_factory.mktemp("browser-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
