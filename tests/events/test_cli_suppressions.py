"""``mailfailover suppressions list|add|remove|import|export`` on the configured store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from mailfailover import FailoverMailer, Message
from mailfailover.cli import main


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "mail.yml"
    path.write_text(
        f"state: sqlite:///{tmp_path / 'state.db'}\n"
        "drivers:\n  - name: memory\n    module: memory\n",
        encoding="utf-8",
    )
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_remove(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "suppressions", "add", "Ann@Example.com", "bob@example.com",
                       "--reason", "complained", "--config", config)  # fmt: skip
    assert code == 0
    assert "suppressed ann@example.com (complained)" in out
    code, out, _ = run(capsys, "suppressions", "list", "--json", "--config", config)
    entries = json.loads(out)
    assert [(e["address"], e["reason"], e["driver"]) for e in entries] == [
        ("ann@example.com", "complained", None), ("bob@example.com", "complained", None)
    ]  # fmt: skip
    code, out, _ = run(capsys, "suppressions", "remove", "ANN@example.com", "zed@example.com",
                       "--config", config)  # fmt: skip
    assert (code, out.splitlines()) == (0, ["removed ANN@example.com",
                                            "not on the list: zed@example.com"])  # fmt: skip
    code, out, err = run(capsys, "suppressions", "list", "--config", config)
    assert out.startswith("bob@example.com  complained  -  ")
    assert "1 suppressed" in err


def test_the_mailer_on_the_same_store_sees_the_list(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "suppressions", "add", "ann@example.com", "--config", config)
    with FailoverMailer.from_config(config) as mailer:
        result = mailer.send(Message("a@example.com", ["ann@example.com", "b@example.com"],
                                     "Hi", "Hello"))  # fmt: skip
    assert result.suppressed == ("ann@example.com",)


def test_import_and_export_round_trip(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        "Address,Reason\nann@example.com,bounced\n,\nbob@example.com,\n"
        "not an address,manual\ncarl@example.com,whatever\nann@EXAMPLE.com,complained\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "suppressions", "import", str(source), "--config", config)
    assert code == 1  # two bad rows, reported; the good ones are in
    assert out.strip() == "imported 2 new, 1 already suppressed, 2 invalid"
    assert "line 5: 'not an address' is not an address" in err
    assert "line 6: reason 'whatever'" in err
    code, out, _ = run(capsys, "suppressions", "export", "--config", config)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["address"], r["reason"]) for r in rows] == [
        ("ann@example.com", "bounced"), ("bob@example.com", "manual")
    ]  # fmt: skip
    assert rows[0]["created"].endswith("+00:00")
    # The export imports as it is, into another store.
    exported = tmp_path / "out.csv"
    exported.write_text(out, encoding="utf-8")
    other = tmp_path / "other.yml"
    other.write_text(
        f"state: sqlite:///{tmp_path / 'other.db'}\ndrivers: [{{name: m, module: memory}}]\n"
    )
    assert run(capsys, "suppressions", "import", str(exported), "--config", str(other))[0] == 0
    code, out, _ = run(capsys, "suppressions", "export", "--json", "--config", str(other))
    assert [(e["address"], e["reason"]) for e in json.loads(out)] == [
        ("ann@example.com", "bounced"), ("bob@example.com", "manual")
    ]  # fmt: skip


def test_a_headerless_file_is_one_address_a_line(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "plain.csv"
    source.write_text("ann@example.com\nbob@example.com\n", encoding="utf-8")
    code, out, _ = run(capsys, "suppressions", "import", str(source), "--reason",
                       "unsubscribed", "--config", config)  # fmt: skip
    assert (code, out.strip()) == (0, "imported 2 new, 0 already suppressed, 0 invalid")


def test_changing_a_memory_store_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mail.yml"
    path.write_text("drivers: [{name: m, module: memory}]\n", encoding="utf-8")
    code, _, err = run(capsys, "suppressions", "add", "ann@example.com", "--config", str(path))
    assert code == 2
    assert "set 'state'" in err


def test_a_bad_address_is_a_usage_error(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "suppressions", "add", "nope", "--config", config)
    assert code == 2
    assert "'nope' is not an address" in err
