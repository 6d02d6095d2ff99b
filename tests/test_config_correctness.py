"""Issue 9's configuration bugs: numbers, ${VAR:?}, DriverSpec.key, values never echoed.

Every test here failed before its fix (noted per group).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailfailover import ConfigError, FailoverMailer
from mailfailover.cli import main
from mailfailover.config import build_drivers, load_config
from mailfailover.driver import FromEnvironment, Setting, redact_userinfo

SECRET = "hunter2-secret-value"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mail.yml"
    path.write_text(text, encoding="utf-8")
    return path


def build(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> Any:
    config = load_config(write(tmp_path, text), environ=env or {})
    drivers = build_drivers(config)
    for driver in drivers:
        driver.close()
    return config


MEMORY = "drivers: [{name: m, module: memory}]\n"

# -- numbers (before: .inf crashed with OverflowError or was accepted; .nan accepted) ---------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("failure_threshold: .inf\n", "failure_threshold"),
        ("failure_threshold: .nan\n", "failure_threshold"),
        ("failure_threshold: 2.5\n", "failure_threshold"),
        ("failure_threshold: 100000\n", "failure_threshold"),
        ("cooldown: .nan\n", "cooldown"),
        ("cooldown: .inf\n", "cooldown"),
        ("cooldown: 1e12\n", "cooldown"),
        ("timeout: .nan\n", "timeout"),
        ("timeout: .inf\n", "timeout"),
        ("timeout: '1e300'\n", "timeout"),
        ("deadline: .nan\n", "deadline"),
        ("deadline: -.inf\n", "deadline"),
        ("http: {max_body_bytes: .inf}\n", "http.max_body_bytes"),
        ("http: {max_recipients: .nan}\n", "http.max_recipients"),
        ("http: {max_recipients: 0}\n", "http.max_recipients"),
    ],
)
def test_every_top_level_number_is_finite_and_in_range(text: str, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build(text + MEMORY, tmp_path)
    assert repr(key) in caught.value.message


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ("{host: h, port: .inf}", "port"),
        ("{host: h, port: .nan}", "port"),
        ("{host: h, port: 25.5}", "port"),
        ("{host: h, port: 'inf'}", "port"),
        ("{host: h, timeout: .nan}", "timeout"),
        ("{host: h, timeout: .inf}", "timeout"),
    ],
)
def test_driver_number_settings_are_finite(settings: str, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build(f"drivers: [{{name: relay, module: smtp, settings: {settings}}}]\n", tmp_path)
    assert f"setting {key!r}" in caught.value.message
    assert caught.value.driver == "relay"


def test_setting_ranges_are_declarable() -> None:
    port = Setting(None, int, minimum=1, maximum=65535)
    assert port.convert("port", "587") == 587
    with pytest.raises(ConfigError, match="at most 65535"):
        port.convert("port", 70000)
    with pytest.raises(ConfigError, match="at least 1"):
        port.convert("port", 0)


@pytest.mark.parametrize(
    "text",
    [
        "failure_threshold: .inf\n" + MEMORY,
        "cooldown: .nan\n" + MEMORY,
        "drivers: [{name: relay, module: smtp, settings: {host: h, port: .inf}}]\n",
    ],
)
def test_check_exits_2_on_an_impossible_number(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: OverflowError escaped, a traceback and exit code 1."""
    assert main(["check", "--config", str(write(tmp_path, text))]) == 2
    assert "configuration error" in capsys.readouterr().err


# -- ${VAR:?message} (before: loaded as the literal text '${VAR:?message}') -------------------

REQUIRED_KEY = (
    "drivers:\n  - name: primary\n    module: memory\n"
    "    settings: {fail: '${MODE:?set MODE to unavailable or reject}'}\n"
)


def test_required_variable_unset_is_an_error_naming_variable_and_driver(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, REQUIRED_KEY), environ={})
    text = caught.value.message
    assert "MODE is not set: set MODE to unavailable or reject" in text
    assert caught.value.driver == "primary" and "settings.fail" in text


def test_required_variable_empty_is_an_error_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MODE is empty"):
        load_config(write(tmp_path, REQUIRED_KEY), environ={"MODE": ""})


def test_required_variable_set_is_used(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, REQUIRED_KEY), environ={"MODE": "reject"})
    assert config.drivers[0].settings["fail"] == "reject"


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [
        ("${V?needed}", {"V": ""}, ""),  # without the colon, only unset is an error
        ("${V-fallback}", {}, "fallback"),
        ("${V-fallback}", {"V": ""}, ""),
        ("${V:-fallback}", {"V": ""}, "fallback"),
        ("x${V}y$${V}", {"V": "1"}, "x1y${V}"),
    ],
)
def test_the_shell_forms(template: str, env: dict[str, str], expected: str) -> None:
    document = {
        "drivers": [{"name": "m", "module": "memory"}],
        "http": {"allowed_senders": [f"a@{template}.example"]},
    }
    config = load_config(document, environ=env)
    assert config.http.allowed_senders == (f"a@{expected}.example",)


@pytest.mark.parametrize("template", ["${V:+alt}", "${V/a/b}", "${V#x}", "${1V}", "${}"])
def test_forms_not_implemented_are_refused_not_kept_as_text(template: str) -> None:
    with pytest.raises(ConfigError, match=r"not supported|not a valid variable name"):
        load_config(
            {"drivers": [{"name": "m", "module": "memory", "settings": {"fail": template}}]},
            environ={"V": "reject"},
        )


# -- DriverSpec.key (before: JSON of the settings, secrets in clear, shown in repr) ---------


def test_the_reload_key_is_a_hash_without_the_settings(tmp_path: Path) -> None:
    text = (
        "drivers:\n  - name: relay\n    module: smtp\n    settings:\n      host: 127.0.0.1\n"
        f"      username: u\n      password: {SECRET}\n"
    )
    config = load_config(write(tmp_path, text), environ={})
    key = config.drivers[0].key
    assert len(key) == 64 and int(key, 16) >= 0
    assert SECRET not in key and "127.0.0.1" not in key
    changed = load_config(write(tmp_path, text.replace(SECRET, "other-pass")), environ={})
    assert changed.drivers[0].key != key
    assert load_config(write(tmp_path, text), environ={}).drivers[0].key == key
    with FailoverMailer.from_config(write(tmp_path, text)) as mailer:
        assert SECRET not in repr(mailer._chain)  # the slots keep the key


# -- values from the environment and URL userinfo are never shown (before: echoed) --------


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ("{host: h, port: '${SMTP_PASSWORD}'}", "port"),
        ("{host: h, security: '${SMTP_PASSWORD}'}", "security"),
        ("{host: h, use_ssl_typo_free: x, port: '${SMTP_PASSWORD}'}", None),
    ],
)
def test_config_errors_never_show_a_value_from_the_environment(
    settings: str, key: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"drivers: [{{name: relay, module: smtp, settings: {settings}}}]\n"
    with pytest.raises(ConfigError) as caught:
        build(text, tmp_path, {"SMTP_PASSWORD": SECRET})
    assert SECRET not in str(caught.value)
    if key is not None:
        assert f"setting {key!r}" in caught.value.message
        assert "the value from the environment" in caught.value.message
    path = write(tmp_path, text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SMTP_PASSWORD", SECRET)
        assert main(["check", "--config", str(path)]) == 2
        assert main(["check", "--config", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err


def test_region_from_the_wrong_variable_is_not_shown(tmp_path: Path) -> None:
    text = (
        "drivers: [{name: mg, module: mailgun, settings: "
        "{api_key: k-123456, domain: mg.example.com, region: '${MAILGUN_API_KEY}'}}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        build(text, tmp_path, {"MAILGUN_API_KEY": "key-" + SECRET})
    assert SECRET not in str(caught.value)
    assert "setting 'region'" in caught.value.message


def test_a_driver_s_own_error_text_loses_environment_values(tmp_path: Path) -> None:
    """The Mailgun driver quotes a domain it refuses; from ${...}, the quote is hidden."""
    text = (
        "drivers: [{name: mg, module: mailgun, settings: {api_key: k-1234567, domain: '${D}'}}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        build(text, tmp_path, {"D": "not/a-domain-" + SECRET})
    assert SECRET not in str(caught.value)
    assert caught.value.driver == "mg"


def test_check_prints_base_url_without_userinfo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "drivers: [{name: sg, module: sendgrid, settings: {api_key: SG.k-1234567, "
        f"base_url: 'https://proxyuser:{SECRET}@proxy.example:8443'}}}}]\n"
    )
    assert main(["check", "--config", str(write(tmp_path, text))]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "proxyuser" not in out
    assert "https://***@proxy.example:8443" in out


def test_userinfo_redaction() -> None:
    assert (
        redact_userinfo("x https://u:p@h.example/a?b=c@d y") == "x https://***@h.example/a?b=c@d y"
    )
    assert redact_userinfo("'redis://:pw@127.0.0.1:6379/0'") == "'redis://***@127.0.0.1:6379/0'"
    assert redact_userinfo("https://h.example/path") == "https://h.example/path"


def test_interpolated_values_are_marked_and_drivers_get_plain_strings(tmp_path: Path) -> None:
    config = load_config(
        {"drivers": [{"name": "m", "module": "memory", "settings": {"fail": "${F}"}}]},
        environ={"F": "reject"},
    )
    assert isinstance(config.drivers[0].settings["fail"], FromEnvironment)
    (driver,) = build_drivers(config)
    assert type(driver.settings["fail"]) is str
    assert json.dumps(driver.settings["fail"]) == '"reject"'
