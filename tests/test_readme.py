"""The README's quick start is exactly two commands, and CI runs the second one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_quick_start_has_exactly_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    send, tests = commands
    assert "mailfailover send" in send and "pip install" in send
    assert "pytest" in tests and '".[test]"' in tests


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run installs the test extra and runs pytest exactly as the README says."""
    tests = quick_start_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = re.search(r'pip install -q -e "\.\[test\]"', tests)
    assert install is not None
    assert 'pip install --quiet -e ".[test]" && python -m pytest' in ci
    assert tests.endswith("python -m pytest")
