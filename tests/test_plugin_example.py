"""The example plugin in ``examples/acme-driver`` installs, registers and delivers.

The package is pip-installed, offline, into a private folder (never into the test
environment itself), exactly as a user's ``pip install`` would lay it out: a
``*.dist-info`` with ``entry_points.txt``. The tests then put that folder on ``sys.path``
and use the driver only by its entry-point name, the way a configuration does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses

from mailfailover import FailoverMailer, registry
from mailfailover.testing import simple_message

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "acme-driver"
ACME_URL = "http://acme.test/v1/messages"


def _env_with_path(target: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    env.pop("MAILFAILOVER_CONFIG", None)
    return env


@pytest.fixture(scope="session")
def acme_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --no-deps --no-build-isolation --target DIR`` of a copy of the example.

    A copy, so the build's ``build/`` and ``*.egg-info`` never land in the source tree and
    parallel runs cannot collide; ``--no-index`` so pip cannot reach the network.
    """
    work = tmp_path_factory.mktemp("acme")
    source = work / "acme-driver"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    completed = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
            "--no-index", "--disable-pip-version-check", "--quiet",
            "--target", str(target), str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert completed.returncode == 0, f"pip install failed:\n{completed.stdout}{completed.stderr}"
    assert list(target.glob("mailfailover_acme-*.dist-info")), "no dist-info was installed"
    return target


@pytest.fixture
def acme_on_path(acme_install: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The installed example importable and registered; the registry is reset afterwards."""
    monkeypatch.syspath_prepend(str(acme_install))
    registry.refresh()
    try:
        yield acme_install
    finally:
        monkeypatch.undo()
        for name in [m for m in sys.modules if m.split(".")[0] == "mailfailover_acme"]:
            del sys.modules[name]
        registry.refresh()


def test_installed_plugin_sends_by_name_from_a_config(acme_on_path: Path) -> None:
    """A config naming ``module: acme`` builds the plugin's driver and delivers through it."""
    config = {
        "drivers": [
            {
                "name": "acme one",
                "module": "acme",
                "settings": {"api_key": "k-123", "base_url": "http://acme.test"},
            }
        ]
    }
    message = simple_message(tags=["welcome"])
    with responses.RequestsMock() as fake, FailoverMailer.from_config(config) as mailer:
        fake.add(responses.POST, ACME_URL, json={"id": "acme-77"}, status=202)
        assert type(mailer.drivers[0]).__module__ == "mailfailover_acme"
        result = mailer.send(message)
        request = fake.calls[0].request
    assert (result.driver, result.message_id) == ("acme one", "acme-77")
    assert [a.outcome for a in result.attempts] == ["sent"]
    assert request.headers["Authorization"] == "Bearer k-123"
    body = json.loads(request.body)
    assert body["to"] == ["rcpt@example.com"]
    assert body["subject"] == "Hello"
    assert body["text"] == "Hello there."
    assert body["tags"] == ["welcome"]
    assert body["headers"]["Message-ID"] == message.message_id


def test_plugin_fails_over_to_a_bundled_driver(acme_on_path: Path) -> None:
    """A plugin driver that is down fails over to the next configured driver like any other."""
    config = {
        "drivers": [
            {"name": "acme", "module": "acme",
             "settings": {"api_key": "k", "base_url": "http://acme.test"}},
            {"name": "backup", "module": "memory"},
        ]
    }  # fmt: skip
    with responses.RequestsMock() as fake, FailoverMailer.from_config(config) as mailer:
        fake.add(responses.POST, ACME_URL, status=503)
        result = mailer.send(simple_message())
    assert result.driver == "backup"
    assert [(a.driver, a.outcome) for a in result.attempts] == [
        ("acme", "unavailable"),
        ("backup", "sent"),
    ]


def test_registry_forgets_the_plugin_once_it_is_off_the_path(acme_install: Path) -> None:
    """Without the install folder on sys.path, ``acme`` is an unknown driver (no leak)."""
    from mailfailover import ConfigError

    registry.refresh()
    with pytest.raises(ConfigError, match="unknown driver 'acme'"):
        registry.load_driver("acme")


def test_cli_drivers_lists_the_plugin_as_ok(acme_install: Path, tmp_path: Path) -> None:
    """``mailfailover drivers --json`` in a fresh process lists ``acme`` from its package."""
    completed = subprocess.run(
        [sys.executable, "-m", "mailfailover.cli", "drivers", "--json"],
        capture_output=True,
        text=True,
        env=_env_with_path(acme_install),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    entries = {entry["name"]: entry for entry in json.loads(completed.stdout)}
    assert entries["acme"]["status"] == "ok"
    assert entries["acme"]["target"] == "mailfailover_acme:AcmeDriver"
    assert entries["acme"]["distribution"] == "mailfailover-acme"


def test_cli_drivers_table_names_the_plugin(acme_install: Path, tmp_path: Path) -> None:
    """The human-readable listing shows ``acme`` with no broken/missing note."""
    completed = subprocess.run(
        [sys.executable, "-m", "mailfailover.cli", "drivers"],
        capture_output=True,
        text=True,
        env=_env_with_path(acme_install),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    (line,) = [row for row in completed.stdout.splitlines() if row.startswith("acme ")]
    assert "mailfailover_acme:AcmeDriver" in line
    assert "[" not in line, line


def test_example_contract_tests_pass(acme_install: Path, tmp_path: Path) -> None:
    """The example's own suite (DriverContractTests and its payload tests) passes."""
    tests = tmp_path / "acme-driver"
    shutil.copytree(EXAMPLE, tests, ignore=shutil.ignore_patterns("build", "*.egg-info", "src"))
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        capture_output=True,
        text=True,
        env=_env_with_path(acme_install),
        cwd=tests,
        timeout=300,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    passed = re.search(r"(\d+) passed", output)
    # The 7 inherited contract tests plus the example's own 4.
    assert passed is not None, output
    assert int(passed.group(1)) >= 11, output
    assert "failed" not in output, output
    assert "skipped" not in output, output
