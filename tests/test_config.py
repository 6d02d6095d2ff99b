"""Configuration: the YAML format, interpolation, folders, validation, default lookup, reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailfailover import ConfigError, FailoverMailer, MemoryDriver
from mailfailover.config import DEFAULT_CONFIG, load_config
from mailfailover.drivers.file import FileDriver
from mailfailover.health import State
from mailfailover.testing import FakeClock, simple_message

SECRET = "sk-live-7f3a9c1e5b"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


ORIGINAL_FORMAT = """\
drivers:
  - name: "Primary"
    module: memory
    settings:
      fail: unavailable
  - name: "Backup"
    driver: memory
"""


def test_original_service_format_loads_and_sends(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.yml", ORIGINAL_FORMAT)
    with FailoverMailer.from_config(path) as mailer:
        result = mailer.send(simple_message())
    assert result.driver == "Backup"
    assert [a.outcome for a in result.attempts] == ["unavailable", "sent"]


def test_top_level_options_reach_the_mailer(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mail.yml",
        "strategy: round_robin\nfailure_threshold: 3\ncooldown: 12.5\ndeadline: 9\n"
        "timeout: 4\n" + ORIGINAL_FORMAT,
    )
    mailer = FailoverMailer.from_config(path)
    assert (mailer.strategy, mailer.failure_threshold, mailer.cooldown, mailer.deadline) == (
        "round_robin", 3, 12.5, 9.0,
    )  # fmt: skip
    assert mailer.config is not None
    assert mailer.config.timeout == 4.0


def test_constructor_options_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.yml", "cooldown: 10\n" + ORIGINAL_FORMAT)
    clock = FakeClock()
    mailer = FailoverMailer.from_config(path, cooldown=99, clock=clock)
    assert mailer.cooldown == 99


def test_environment_interpolation(tmp_path: Path) -> None:
    config = {
        "cooldown": "${COOLDOWN:-7}",
        "drivers": [
            {"name": "${NAME_IS_NOT_INTERPOLATED}", "module": "file",
             "settings": {"directory": "${OUT}/mail-$${literal}"}},
        ],
    }  # fmt: skip
    loaded = load_config(config, environ={"OUT": str(tmp_path)})
    assert loaded.cooldown == 7.0
    assert loaded.drivers[0].settings["directory"] == f"{tmp_path}/mail-${{literal}}"
    assert loaded.drivers[0].name == "${NAME_IS_NOT_INTERPOLATED}"


def test_missing_variable_names_the_variable_and_driver_never_a_value(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mail.yml",
        "drivers:\n  - name: Mailgun primary\n    module: memory\n"
        "    settings: {seed: '${MISSING_SEED}'}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"OTHER": SECRET})
    text = str(caught.value)
    assert "MISSING_SEED" in text
    assert "Mailgun primary" in text
    assert str(path) in text
    assert SECRET not in text


def test_bad_setting_values_never_echo_secrets() -> None:
    """A secret setting that fails validation is described without its value."""
    from mailfailover.driver import Setting

    class Secretive(MemoryDriver):
        settings_spec = {**MemoryDriver.settings_spec, "api_key": Setting(type=int, secret=True)}

    with pytest.raises(ConfigError) as caught:
        Secretive(name="s", api_key=SECRET)
    assert SECRET not in str(caught.value)
    assert "api_key" in str(caught.value)
    assert SECRET not in repr(Secretive(name="s", api_key="12345"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("drivers: []\n", "no drivers"),
        ("", "no drivers"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("drivers: {name: x}\n", "'drivers' must be a list"),
        ("drivers:\n  - memory\n", "drivers[0] must be a mapping"),
        ("drivers:\n  - module: memory\n", "drivers[0] needs a 'name'"),
        ("drivers:\n  - name: x\n", "needs a 'module'"),
        ("drivers:\n  - {name: x, module: memory, driver: file}\n", "disagree"),
        ("drivers:\n  - {name: x, module: memory, setings: {}}\n", "unknown key 'setings'"),
        (
            "drivers:\n  - {name: x, module: memory, settings: [1]}\n",
            "'settings' must be a mapping",
        ),
        ("drivers:\n  - {name: x, module: memory}\n  - {name: x, module: memory}\n", "two drivers"),
        ("stratgy: failover\ndrivers: [{name: x, module: memory}]\n", "unknown key 'stratgy'"),
        ("strategy: random\ndrivers: [{name: x, module: memory}]\n", "'strategy' must be one of"),
        ("failure_threshold: 0\ndrivers: [{name: x, module: memory}]\n", "at least 1"),
        ("failure_threshold: 1.5\ndrivers: [{name: x, module: memory}]\n", "whole number"),
        ("cooldown: soon\ndrivers: [{name: x, module: memory}]\n", "must be a number"),
        ("cooldown: true\ndrivers: [{name: x, module: memory}]\n", "must be a number"),
        ("timeout: 0\ndrivers: [{name: x, module: memory}]\n", "greater than 0"),
        ("drivers: [{name: x, module: memory}]\nhttp: {token: x}\n", "unknown key 'http.token'"),
        ("drivers: [{name: x, module: memory}]\nhttp: [1]\n", "'http' must be a mapping"),
        ("drivers: [{name: x, module: memory}]\nhttp: {allowed_senders: [1]}\n", "list of addr"),
        ("drivers: [{name: x, module: memory}]\nhttp: {max_body_bytes: 0}\n", "at least 1"),
        ("drivers: [{name: x, module: memory}\n", "not valid YAML"),
        ("drivers:\n\t- name: x\n", "not valid YAML"),
        ("drivers: [{name: x, module: memory, settings: {x: '${1BAD}'}}]\n", "not a valid"),
    ],
)
def test_invalid_configs_are_refused_with_the_file_named(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path / "mail.yml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_setting_is_refused_at_load_with_file_and_driver(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mail.yml",
        "drivers:\n  - name: Outbox\n    module: file\n    settings: {dirctory: /tmp/x}\n",
    )
    with pytest.raises(ConfigError) as caught:
        FailoverMailer.from_config(path)
    text = str(caught.value)
    assert "dirctory" in text and "Outbox" in text and str(path) in text
    assert "directory" in text  # the known settings are listed


def test_unknown_driver_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        FailoverMailer.from_config({"drivers": [{"name": "x", "module": "mailgnu"}]})
    assert "mailgnu" in str(caught.value)
    assert "memory" in str(caught.value) and "file" in str(caught.value)


def test_invalid_yaml_error_does_not_quote_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.yml", f"drivers: [{{name: x, module: memory, key: '{SECRET}'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert SECRET not in str(caught.value)
    assert "line" in str(caught.value)


def test_oversized_and_binary_files_are_refused(tmp_path: Path) -> None:
    big = write(tmp_path / "big.yml", "# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(big)
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"\xff\xfe\x00drivers")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(binary)


def test_alias_bombs_are_bounded(tmp_path: Path) -> None:
    """YAML aliases are legal, but expanding a 'billion laughs' document is cut short."""
    levels = ["      l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 7):
        refs = ", ".join([f"*l{level - 1}"] * 10)
        levels.append(f"      l{level}: &l{level} [{refs}]")
    text = "drivers:\n  - name: x\n    module: memory\n    settings:\n" + "\n".join(levels)
    path = write(tmp_path / "bomb.yml", text + "\n")
    with pytest.raises(ConfigError, match="too large"):
        load_config(path)


def test_small_aliases_are_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mail.yml",
        "drivers:\n  - name: a\n    module: memory\n    settings: &common {seed: 1}\n"
        "  - name: b\n    module: memory\n    settings: *common\n",
    )
    assert [d.settings for d in load_config(path).drivers] == [{"seed": 1}, {"seed": 1}]


def test_folder_of_files_is_read_in_name_order(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "20-backup.yaml", "drivers:\n  - {name: B, module: memory}\n")
    write(
        tmp_path / "conf" / "10-primary.yml",
        "cooldown: 5\ndrivers:\n  - {name: A, module: memory}\n",
    )
    write(tmp_path / "conf" / "notes.txt", "ignored")
    config = load_config(tmp_path / "conf")
    assert [d.name for d in config.drivers] == ["A", "B"]
    assert config.cooldown == 5.0
    assert config.drivers[1].source.endswith("20-backup.yaml")


def test_folder_with_conflicting_settings_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "c" / "a.yml", "cooldown: 5\ndrivers: [{name: A, module: memory}]\n")
    write(tmp_path / "c" / "b.yml", "cooldown: 6\ndrivers: [{name: B, module: memory}]\n")
    with pytest.raises(ConfigError, match="set differently"):
        load_config(tmp_path / "c")


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.yml"):
        load_config(tmp_path / "empty")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yml")


def test_default_lookup_order(in_tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config().source == "<built-in default>"
    assert [d.module for d in load_config().drivers] == ["smtp", "file"]
    write(in_tmp_cwd / "config" / "mail.yml", "drivers: [{name: local, module: memory}]\n")
    assert load_config().drivers[0].name == "local"
    env_file = write(in_tmp_cwd / "elsewhere.yml", "drivers: [{name: env, module: memory}]\n")
    monkeypatch.setenv("MAILFAILOVER_CONFIG", str(env_file))
    assert load_config().drivers[0].name == "env"


def test_built_in_default_is_smtp_on_1025_then_the_outbox() -> None:
    drivers = DEFAULT_CONFIG["drivers"]
    assert drivers[0]["settings"]["host"] == "localhost"
    assert drivers[0]["settings"]["port"] == 1025
    assert drivers[1] == {"name": "outbox", "module": "file", "settings": {"directory": "./outbox"}}


def test_top_level_timeout_is_given_to_drivers_that_take_one(tmp_path: Path) -> None:
    config = {
        "timeout": 3,
        "drivers": [
            {"name": "smtp", "module": "smtp", "settings": {"host": "127.0.0.1"}},
            {"name": "m", "module": "memory"},
        ],
    }
    mailer = FailoverMailer.from_config(config)
    assert mailer.drivers[0].settings["timeout"] == 3
    mailer.close()


def test_http_section(tmp_path: Path) -> None:
    config = load_config(
        {
            "drivers": [{"name": "x", "module": "memory"}],
            "http": {"api_token": "${TOKEN}", "allowed_senders": "*@example.com"},
        },
        environ={"TOKEN": SECRET},
    )
    assert config.http.api_token == SECRET
    assert config.http.allowed_senders == ("*@example.com",)
    assert config.http.max_body_bytes == 25 * 1024 * 1024
    assert SECRET not in repr(config)


def test_reload_keeps_health_of_unchanged_drivers(tmp_path: Path) -> None:
    clock = FakeClock()
    path = write(
        tmp_path / "mail.yml",
        "failure_threshold: 1\ncooldown: 60\ndrivers:\n"
        "  - {name: A, module: memory, settings: {fail: unavailable}}\n"
        "  - {name: B, module: memory}\n",
    )
    mailer = FailoverMailer.from_config(path, clock=clock)
    mailer.send(simple_message())
    old_b = mailer.drivers[1]
    assert mailer.health()[0].state is State.COOLING_DOWN
    write(
        path,
        "failure_threshold: 1\ncooldown: 60\ndrivers:\n"
        "  - {name: A, module: memory, settings: {fail: unavailable}}\n"
        "  - {name: B, module: memory}\n"
        "  - {name: C, module: memory}\n",
    )
    mailer.reload()
    assert [d.name for d in mailer.drivers] == ["A", "B", "C"]
    assert mailer.health()[0].state is State.COOLING_DOWN  # kept
    assert mailer.drivers[1] is old_b  # same instance, same connections
    # a changed driver is rebuilt and starts healthy
    write(path, "failure_threshold: 1\ncooldown: 60\ndrivers:\n  - {name: A, module: memory}\n")
    mailer.reload()
    assert mailer.health()[0].state is State.HEALTHY
    assert mailer.send(simple_message()).driver == "A"


def test_reload_with_a_broken_file_keeps_the_old_configuration(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.yml", "drivers: [{name: A, module: memory}]\n")
    mailer = FailoverMailer.from_config(path)
    write(path, "drivers: [{name: A, module: nonexistent}]\n")
    with pytest.raises(ConfigError):
        mailer.reload()
    assert mailer.send(simple_message()).driver == "A"


def test_reload_closes_removed_drivers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mail.yml", "drivers: [{name: A, module: memory}, {name: O, module: file}]\n"
    )
    mailer = FailoverMailer.from_config(path)
    removed = mailer.drivers[1]
    assert isinstance(removed, FileDriver)
    closed: list[str] = []
    removed.close = lambda: closed.append("O")  # type: ignore[method-assign]
    write(path, "drivers: [{name: A, module: memory}]\n")
    mailer.reload()
    assert closed == ["O"]


def test_only_config_built_mailers_reload() -> None:
    with pytest.raises(RuntimeError):
        FailoverMailer([MemoryDriver()]).reload()


def test_default_also_replaces_an_empty_variable() -> None:
    """${VAR:-default} behaves as in the shell: an empty VAR takes the default too."""
    config = {"cooldown": "${COOL:-8}", "drivers": [{"name": "x", "module": "memory"}]}
    assert load_config(config, environ={"COOL": ""}).cooldown == 8.0
    assert load_config(config, environ={"COOL": "3"}).cooldown == 3.0


def test_reload_keeps_options_given_to_from_config(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.yml", "cooldown: 10\ndrivers: [{name: A, module: memory}]\n")
    mailer = FailoverMailer.from_config(path, cooldown=99, deadline=5)
    write(path, "cooldown: 20\ndeadline: 1\ndrivers: [{name: A, module: memory}]\n")
    mailer.reload()
    assert (mailer.cooldown, mailer.deadline) == (99.0, 5)


def test_empty_api_token_means_none() -> None:
    config = {
        "drivers": [{"name": "x", "module": "memory"}],
        "http": {"api_token": "${MAILFAILOVER_API_TOKEN:-}"},
    }
    assert load_config(config, environ={}).http.api_token is None
    assert load_config(config, environ={"MAILFAILOVER_API_TOKEN": "t0k"}).http.api_token == "t0k"
    with pytest.raises(ConfigError, match="must be a string"):
        load_config({**config, "http": {"api_token": 12345}})


def test_metrics_token() -> None:
    drivers = [{"name": "x", "module": "memory"}]
    config = load_config(
        {"drivers": drivers, "http": {"metrics_token": "${SCRAPE}"}}, environ={"SCRAPE": SECRET}
    )
    assert config.http.metrics_token == SECRET
    assert config.http.api_token is None
    assert SECRET not in repr(config)
    assert (
        load_config({"drivers": drivers, "http": {"metrics_token": " "}}).http.metrics_token is None
    )
    assert load_config({"drivers": drivers}).http.metrics_token is None
    with pytest.raises(ConfigError, match=r"'http\.metrics_token' must be a string"):
        load_config({"drivers": drivers, "http": {"metrics_token": 5}})
