"""Hostile input: whatever a caller, a config file or the environment hands the library, the
answer is a valid object or one of the library's own errors, nothing unsafe reaches a
provider, and no secret shows up where a person or a log can read it.

Property-based tests (hypothesis, bounded) cover Message construction, its MIME output and
its dict round trip, and configuration loading from dicts and from files; explicit tests
cover header injection in every field, oversized messages against every HTTP driver, and
credentials in logs and error text when sends fail.
"""

from __future__ import annotations

import email
import email.policy
import logging
import os
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from _reliability import READY, provider_params
from _servers import Answer, Provider, StandInServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailfailover import (
    AllProvidersFailed,
    Attachment,
    ConfigError,
    FailoverMailer,
    InvalidMessage,
    MemoryDriver,
    Message,
    SendResult,
    load_config,
)
from mailfailover.config import MailerConfig, build_drivers
from mailfailover.testing import simple_message

#: Bounded, and the same examples on every CI run (a red CI run is then reproducible).
FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)

# -- strategies ----------------------------------------------------------------------------------

#: Every character that some layer treats as the end of a line or a string: CR and LF (SMTP,
#: HTTP), NUL (C strings), and what Python's str.splitlines() also splits on (the email
#: package refuses a header value that splitlines() cuts in two).
LINE_BREAKERS = ["\r", "\n", "\r\n", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85",
                 "\u2028", "\u2029"]  # fmt: skip
INJECTIONS = [
    *LINE_BREAKERS,
    "\r\nBcc: victim@evil.example",
    "\nX-Injected: yes",
    "\r\n\r\n<html>smuggled body</html>",
    "%0d%0aBcc:%20victim@evil.example",
]
VALID_ADDRESSES = [
    "ann@example.com",
    "Ann Example <ann@example.com>",
    '"Doe, John" <john@example.com>',
    "Jörg <jörg@bücher.de>",
    "first.last+tag@sub.example.co.uk",
    "root@localhost",
    "<bare@example.com>",
]


def _spliced(parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value from ``parts`` with an injection put somewhere inside it."""
    return st.builds(
        lambda value, injection, at: (
            value[: at % (len(value) + 1)] + injection + value[at % (len(value) + 1) :]
        ),
        parts,
        st.sampled_from(INJECTIONS),
        st.integers(0, 200),
    )


TEXT = st.text(max_size=30)
#: Any Unicode text that may stand in a header: it must always build and always encode.
HEADER_TEXT = st.text(
    st.characters(exclude_characters="".join(LINE_BREAKERS), exclude_categories=("Cs",)),
    max_size=30,
)
HOSTILE = st.one_of(TEXT, _spliced(TEXT), st.sampled_from(INJECTIONS))


def _mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any] = HOSTILE) -> Any:
    """``valid`` nine times in ten, ``hostile`` otherwise: a message has a dozen fields, and
    a strategy that spoils each half the time would almost never build a valid one."""
    return st.integers(0, 9).flatmap(lambda n: hostile if n == 0 else valid)


NAME = st.text(st.sampled_from(string.ascii_letters + " äöüßé.'-"), max_size=12)
LOCAL = st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,10}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)
DOMAIN = st.sampled_from(["example.com", "bücher.de", "sub.example.co.uk", "localhost"])
GENERATED_ADDRESS = st.builds(
    lambda name, local, domain: f"{name.strip()} <{local}@{domain}>" if name.strip()
    else f"{local}@{domain}", NAME, LOCAL, DOMAIN,
)  # fmt: skip
VALID_ADDRESS = st.one_of(st.sampled_from(VALID_ADDRESSES), GENERATED_ADDRESS)
HOSTILE_ADDRESS = st.one_of(
    st.sampled_from(VALID_ADDRESSES).map(lambda a: a.replace("ann", "ann" * 30)),
    _spliced(st.sampled_from(VALID_ADDRESSES)),
    HOSTILE,
)
ADDRESS = _mostly(VALID_ADDRESS, HOSTILE_ADDRESS)
ADDRESSES = st.one_of(ADDRESS, st.lists(ADDRESS, max_size=3))
VALID_HEADER_NAME = st.sampled_from(["X-Campaign", "X-Priority", "List-Unsubscribe"])
HEADER_NAME = _mostly(
    VALID_HEADER_NAME,
    st.one_of(
        st.sampled_from(["Bcc", "Content-Type", "Subject", "X Space", "X-Ünicode", ""]),
        st.text(string.printable, min_size=1, max_size=12),
        _spliced(st.just("X-Ok")),
    ),
)
FILENAMES = st.sampled_from(["a.pdf", "b.png", "Rechnung-ä.pdf"])
SAFE_ATTACHMENT = st.one_of(
    st.fixed_dictionaries({"filename": st.one_of(FILENAMES, HEADER_TEXT.filter(str.strip)),
                           "content": st.binary(max_size=64)}),
    st.fixed_dictionaries({"filename": FILENAMES, "content": st.binary(max_size=64),
                           "inline": st.just(True),
                           "content_id": st.one_of(st.none(), st.sampled_from(["logo", "<x@y>"]))}),
)  # fmt: skip
HOSTILE_ATTACHMENT = st.fixed_dictionaries(
    {"filename": st.one_of(st.none(), HOSTILE),
     "content": st.one_of(st.binary(max_size=64), TEXT),
     "mimetype": st.one_of(st.none(), st.sampled_from(["text/plain", "image/png"]), HOSTILE),
     "inline": st.one_of(st.booleans(), st.none()),
     "content_id": st.one_of(st.none(), HOSTILE)},
)  # fmt: skip


@st.composite
def message_fields(draw: st.DrawFn, *, valid_only: bool = False) -> dict[str, Any]:
    """Keyword arguments for Message: each field valid (nine times in ten, or always with
    ``valid_only``), hostile, or absent; attachments as Attachment keyword arguments (see
    :func:`_build`)."""

    def pick(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any] = HOSTILE) -> Any:
        return valid if valid_only else _mostly(valid, hostile)

    address = pick(VALID_ADDRESS, HOSTILE_ADDRESS)
    addresses = st.one_of(address, st.lists(address, max_size=3))
    fields: dict[str, Any] = {
        "sender": draw(address),
        "to": draw(st.one_of(address, st.lists(address, min_size=1, max_size=3))),
        "subject": draw(pick(HEADER_TEXT)),
        "text": draw(pick(TEXT if valid_only else st.one_of(st.none(), TEXT))),
    }
    optional = {
        "html": pick(TEXT),
        "cc": addresses,
        "bcc": addresses,
        "reply_to": addresses,
        "headers": st.dictionaries(
            pick(VALID_HEADER_NAME, HEADER_NAME), pick(HEADER_TEXT), max_size=2
        ),
        "tags": st.lists(pick(HEADER_TEXT.filter(str.strip)), max_size=2),
        "metadata": st.dictionaries(
            pick(HEADER_TEXT.filter(str.strip)),
            pick(st.one_of(HEADER_TEXT, st.integers())),
            max_size=2,
        ),
        "attachments": st.lists(pick(SAFE_ATTACHMENT, HOSTILE_ATTACHMENT), max_size=2),
        "message_id": pick(st.just("<a.b@example.com>"), _spliced(st.just("<a@b.c>"))),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            fields[name] = draw(strategy)
    return fields


def _build(fields: dict[str, Any]) -> Message | None:
    """Build a Message (and its attachments); ``None`` for an InvalidMessage; any other
    exception fails the test."""
    try:
        attachments = [Attachment(**spec) for spec in fields.get("attachments", ())]
        return Message(**{**fields, "attachments": attachments})
    except InvalidMessage:
        return None


# -- Message -------------------------------------------------------------------------------------

#: Headers the MIME builder writes; any other header line must be one the caller asked for.
BUILT_HEADERS = {"from", "to", "cc", "reply-to", "subject", "date", "message-id",
                 "mime-version", "content-type", "content-transfer-encoding",
                 "content-disposition", "content-id"}  # fmt: skip


def _header_lines(raw: bytes) -> list[tuple[str, str]]:
    """The (name, unfolded value) pairs of one header block as a mail server sees it."""
    block = raw.split(b"\r\n\r\n", 1)[0]
    lines: list[str] = []
    for line in block.decode("utf-8").split("\r\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += line
        else:
            lines.append(line)
    pairs = []
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon, f"a header line without a name: {line!r}"
        pairs.append((name.strip().lower(), value))
    return pairs


def _check_mime(message: Message) -> None:
    """The built MIME has exactly the headers asked for, none with a line break inside, no
    Bcc, and every part's headers as clean (what a server parses is what was meant)."""
    mime = message.to_mime()
    for part in mime.walk():
        for name, value in part.items():
            assert not any(c in str(value) for c in "\r\n"), (name, value)
    raw = mime.as_bytes()
    names = [name for name, _ in _header_lines(raw)]
    allowed = BUILT_HEADERS | {name.lower() for name in message.headers}
    assert set(names) <= allowed, f"unexpected header(s): {set(names) - allowed}"
    assert "bcc" not in names
    reparsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert reparsed["Message-ID"] == message.message_id
    for name, value in message.headers.items():
        assert len(reparsed.get_all(name) or []) == 1, f"{name} was split or duplicated"
        assert " ".join(str(reparsed[name]).split()) == " ".join(value.split())


@FAST
@given(message_fields())
@example({"sender": "a@example.com", "to": "b@example.com", "subject": "a\x0bb", "text": "t"})
@example({"sender": "a@example.com", "to": "b@example.com", "subject": "s\u2028", "text": "t"})
@example({"sender": "Ann\x85 <a@example.com>", "to": "b@example.com", "subject": "", "text": ""})
def test_message_is_valid_or_invalid_and_its_mime_cannot_be_injected(fields: dict) -> None:
    """Any input builds a Message or raises InvalidMessage; a Message built always has a
    MIME form whose header block holds exactly the headers asked for."""
    message = _build(fields)
    if message is not None:
        _check_mime(message)


@FAST
@given(message_fields(valid_only=True))
def test_a_valid_message_survives_the_dict_round_trip(fields: dict) -> None:
    """to_dict()/from_dict() give back an equal message for every valid message."""
    message = _build(fields)
    assert message is not None, "the valid-only strategy built an invalid message"
    assert Message.from_dict(message.to_dict()) == message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | HOSTILE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
FIELD = st.sampled_from(["sender", "to", "subject", "text", "html", "cc", "bcc", "reply_to",
                         "headers", "attachments", "tags", "metadata", "message_id"])  # fmt: skip


@FAST
@given(st.dictionaries(st.one_of(FIELD, TEXT), JSON, max_size=6), st.booleans())
def test_from_dict_of_anything_is_a_message_or_invalid(data: dict, base: bool) -> None:
    """Message.from_dict() on arbitrary JSON (over a valid message, or alone) raises only
    InvalidMessage."""
    if base:
        data = {**simple_message().to_dict(), **data}
    try:
        message = Message.from_dict(data)
    except InvalidMessage:
        return
    _check_mime(message)


@pytest.mark.parametrize("character", [chr(0xD800), chr(0xDFFF)], ids=["high", "low"])
@pytest.mark.parametrize("field", ["subject", "text", "html", "sender", "tags"])
def test_lone_surrogates_are_invalid_not_a_crash_later(field: str, character: str) -> None:
    """A lone surrogate (JSON "\\ud800" decodes to one) cannot be encoded in any mail: the
    message is refused, instead of every driver failing on it later."""
    fields: dict[str, Any] = {
        "sender": "a@example.com", "to": "b@example.com", "subject": "s", "text": "t",
    }  # fmt: skip
    value = {"sender": f"Ann{character} <a@example.com>", "tags": [f"t{character}"]}.get(
        field, f"x{character}y"
    )
    fields[field] = value
    with pytest.raises(InvalidMessage) as caught:
        Message(**fields)
    assert caught.value.field == field


# -- header injection, field by field, against real drivers -------------------------------------

INJECTED = "x\r\nBcc: victim@evil.example"
FIELD_INJECTIONS: dict[str, dict[str, Any]] = {
    "sender": {"sender": f"Ann {INJECTED} <a@example.com>"},
    "to": {"to": [f"b@example.com{INJECTED}"]},
    "cc": {"cc": [f"Cc {INJECTED} <c@example.com>"]},
    "bcc": {"bcc": ["d@example.com\r\nX: y"]},
    "reply_to": {"reply_to": "r@example.com\nBcc: victim@evil.example"},
    "subject": {"subject": f"Hello{INJECTED}"},
    "headers": {"headers": {"X-Campaign": INJECTED}},
    "headers.name": {"headers": {"X-A\r\nBcc": "victim@evil.example"}},
    "tags": {"tags": [INJECTED]},
    "metadata": {"metadata": {"k": INJECTED}},
    "metadata.key": {"metadata": {INJECTED: "v"}},
    "message_id": {"message_id": "<a@example.com>\r\nBcc: victim@evil.example"},
    "attachments.filename": {"attachments": [("f.txt" + INJECTED,)]},
    "attachments.content_id": {"attachments": [("f.png", INJECTED)]},
    "attachments.mimetype": {"attachments": [("f.bin", None, "text/plain\r\nX: y")]},
}


def _injected_message_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sender": "a@example.com", "to": "b@example.com", "subject": "s", "text": "t",
    }  # fmt: skip
    for key, value in case.items():
        if key == "attachments":
            (spec,) = value
            filename, content_id, mimetype = (*spec, None, None)[:3]
            value = [Attachment(filename, b"data", mimetype, inline=content_id is not None,
                                content_id=content_id)]  # fmt: skip
        fields[key] = value
    return fields


@pytest.mark.parametrize("case", FIELD_INJECTIONS.values(), ids=FIELD_INJECTIONS.keys())
def test_header_injection_in_any_field_reaches_no_provider(
    case: dict[str, Any], stand_in: StandInServer
) -> None:
    """An injection attempt in any field is refused while building the message (directly
    or from a dict), so no driver, HTTP or memory, ever sees it."""
    memory = MemoryDriver(name="memory")
    drivers = [p.make(stand_in.url, name=p.driver) for p in READY]
    with FailoverMailer([*drivers, memory]) as mailer:
        with pytest.raises(InvalidMessage):
            mailer.send(Message(**_injected_message_kwargs(case)))
        data = simple_message().to_dict()
        for key, value in case.items():
            if key != "attachments":
                data[key] = list(value) if isinstance(value, tuple) else value
        if "attachments" not in case:
            with pytest.raises(InvalidMessage):
                mailer.send(Message.from_dict(data))
    assert memory.outbox == []
    assert memory.calls == 0
    assert stand_in.received == 0


# -- oversized input ------------------------------------------------------------------------------

MANY = 10_000
BIG = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def crowd() -> Message:
    """Over Message.max_recipients (1,000): raised here to reach the drivers' own limits."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Message, "max_recipients", MANY)
        return Message("a@example.com", [f"r{i}@example.com" for i in range(MANY)], "s", "t")


@pytest.fixture(scope="module")
def heavy() -> Message:
    return simple_message(attachments=[Attachment("big.bin", bytes(BIG))])


def _send_outcome(provider: Provider, message: Message, url: str) -> SendResult | None:
    """Send through one driver; the result, or None when every attempt was a skip."""
    with FailoverMailer([provider.make(url, timeout=30.0)]) as mailer:
        try:
            return mailer.send(message)
        except AllProvidersFailed as exc:
            failure = exc
    assert [a.outcome for a in failure.attempts] == ["skipped"], failure
    assert failure.attempts[0].reason == "unsupported"
    return None


@pytest.mark.parametrize("provider", provider_params())
def test_ten_thousand_recipients_are_refused_up_front_or_sent_whole(
    provider: Provider, crowd: Message
) -> None:
    """10,000 recipients: a driver whose provider has a recipient limit skips the message
    before any request; one without sends it, every recipient in a request whose size
    grows with the recipients, not with their square."""
    with StandInServer(record=True) as server:
        result = _send_outcome(provider, crowd, server.url)
        if result is None:
            assert server.received == 0
            return
        assert server.received == 1
        body = server.requests[0].body
        assert len(body) < 1000 * MANY
        assert b"r0@example.com" in body
        assert f"r{MANY - 1}@example.com".encode() in body


@pytest.mark.parametrize("provider", provider_params())
def test_a_50_mb_attachment_is_refused_up_front_or_sent_whole(
    provider: Provider, heavy: Message
) -> None:
    """A 50 MB attachment: refused (UnsupportedFeature, before any request) by a driver whose
    provider has a size limit, or sent whole; never a crash inside the library."""
    with StandInServer(record=False) as server:
        result = _send_outcome(provider, heavy, server.url)
        if result is None:
            assert server.received == 0
        else:
            assert server.received == 1
            assert server.bytes_received > BIG * 4 // 3


def test_oversized_messages_fail_over_to_a_driver_that_can_carry_them(
    stand_in: StandInServer, crowd: Message
) -> None:
    """With every HTTP driver first and a memory driver last, a message too big for some
    providers is delivered exactly once, and the skipped drivers' health is untouched."""
    memory = MemoryDriver(name="memory")
    with FailoverMailer([*(p.make(stand_in.url) for p in READY), memory]) as mailer:
        result = mailer.send(crowd)
        assert all(a.outcome == "skipped" for a in result.attempts[:-1])
        assert result.attempts[-1].outcome == "sent"
        assert stand_in.received == (0 if result.driver == "memory" else 1)
        assert len(memory.outbox) == (1 if result.driver == "memory" else 0)
        assert all(h.consecutive_failures == 0 for h in mailer.health())


# -- secrets --------------------------------------------------------------------------------------

SECRET = "s3cr3t-FROM-ENV-7f0d2c91"
ENV = {"MF_SECRET": SECRET}
REFERENCE = "${MF_SECRET}"


def _check_no_secret(*texts: object) -> None:
    for text in texts:
        assert SECRET not in str(text), f"the secret leaked into: {str(text)[:200]}"


@pytest.mark.parametrize("provider", provider_params())
def test_no_credential_from_the_environment_shows_in_logs_or_errors(
    provider: Provider, stand_in: StandInServer, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A driver configured through ${ENV} with a credential, failing every way a provider
    fails, leaves the credential in no log line (every logger at DEBUG), no exception text,
    no attempt, no health record and no repr."""
    caplog.set_level(logging.DEBUG)
    for key in provider.secrets:
        monkeypatch.setenv(f"MF_{abs(hash(key))}", SECRET)
    settings_ = {
        key: (f"${{MF_{abs(hash(value))}}}" if value in provider.secrets else value)
        for key, value in provider.settings.items()
    }
    config = {
        "drivers": [
            {"name": "p", "module": provider.driver,
             "settings": {**settings_, "base_url": stand_in.url, "timeout": 1.0}},
            {"name": "backup", "module": "memory", "settings": {"fail": "unavailable"}},
        ],
    }  # fmt: skip
    faults = [*provider.auth_errors, provider.rate_limited, *provider.rejections,
              provider.malformed, Answer(500, b"oops"), "hang", "reset", "reset_mid"]  # fmt: skip
    with FailoverMailer.from_config(config, failure_threshold=100, cooldown=0) as mailer:
        texts: list[object] = [repr(mailer), repr(mailer.drivers), repr(mailer.config)]
        for fault in faults:
            stand_in.then(fault)
            try:
                outcome: object = mailer.send(simple_message())
            except Exception as exc:
                outcome = exc
                texts += [str(exc), repr(exc)]
                texts += [repr(getattr(a.error, "response", None)) for a in exc.attempts]  # type: ignore[attr-defined]
            texts.append(repr(outcome))
        texts += [h.to_dict() for h in mailer.health()]
    assert stand_in.received == len(faults)
    _check_no_secret(*texts, caplog.text, *(r.getMessage() for r in caplog.records))


# -- configuration -------------------------------------------------------------------------------

DRIVER_NAMES = ["memory", "file", "console", "smtp", "sendgrid", "mailgun", "postmark",
                "nope", "../../etc/passwd", ""]  # fmt: skip
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
    TEXT, st.just(REFERENCE), st.just(f"x{REFERENCE}y"), st.just("${MF_MISSING}"),
    st.just("${MF_SECRET:-fallback}"), st.just("${bad name}"), st.just("$$"),
)  # fmt: skip
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
SETTING_NAMES = st.sampled_from(["api_key", "domain", "host", "port", "timeout", "region",
                                 "directory", "fail", "fail_rate", "seed", "security",
                                 "verify", "base_url", "server_token", "typo_setting"])  # fmt: skip
DRIVER_ENTRY = st.one_of(
    st.fixed_dictionaries(
        {"name": st.one_of(st.sampled_from(["a", "b"]), SCALAR),
         "module": st.one_of(st.sampled_from(DRIVER_NAMES), SCALAR)},
        optional={"settings": st.one_of(st.dictionaries(SETTING_NAMES, SCALAR, max_size=4),
                                        VALUE),
                  "driver": st.sampled_from(DRIVER_NAMES), "extra": VALUE},
    ),
    VALUE,
)  # fmt: skip
CONFIG_MAPPING = st.one_of(
    st.fixed_dictionaries(
        {"drivers": st.one_of(st.lists(DRIVER_ENTRY, max_size=3), VALUE)},
        optional={key: st.one_of(SCALAR, VALUE) for key in
                  ("strategy", "failure_threshold", "cooldown", "timeout", "deadline", "http",
                   "unknown_key")},
    ),
    st.dictionaries(TEXT, VALUE, max_size=3),
)  # fmt: skip
#: What a YAML file may hold: a mapping, or anything else (a list, a string, null...).
DOCUMENT = st.one_of(CONFIG_MAPPING, VALUE)


def _load_and_build(source: Any) -> None:
    """Load (and, when valid, build) a configuration: ConfigError or success, nothing else,
    and the secret never in the error text."""
    try:
        config = load_config(source, environ=ENV)
    except ConfigError as exc:
        _check_no_secret(exc, repr(exc))
        return
    assert isinstance(config, MailerConfig)
    _check_no_secret(repr(config))
    try:
        drivers = build_drivers(config)
    except ConfigError as exc:
        _check_no_secret(exc, repr(exc))
        return
    for driver in drivers:
        _check_no_secret(repr(driver))
        driver.close()


@FAST
@given(document=CONFIG_MAPPING)
def test_any_config_mapping_loads_or_is_a_config_error(
    document: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """load_config() on any mapping returns a valid config or raises ConfigError whose text
    never holds a value interpolated from the environment; so does building its drivers."""
    directory = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)  # the file driver may create its folder
        _load_and_build(document)


@FAST
@given(content=st.one_of(DOCUMENT.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
                         st.text(max_size=200), st.binary(max_size=100)))  # fmt: skip
def test_any_config_file_loads_or_is_a_config_error(
    content: str | bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A config file of any content: a valid config or ConfigError, never another error."""
    directory = tmp_path_factory.mktemp("cfg")
    path = directory / "mail.yml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        _load_and_build(path)
        _load_and_build(directory)  # the folder form reads every *.yml in it


def test_hostile_yaml_constructs_are_config_errors(tmp_path: Path) -> None:
    """Python tags, alias bombs and deep nesting are refused as ConfigError."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    cases = {
        "python_tag": "drivers: !!python/object/apply:os.system ['echo pwned']\n",
        "alias_bomb": bomb,
        "deep": "drivers: " + "[" * 5000 + "]" * 5000 + "\n",
        "huge": "drivers: []\n# " + "x" * (2 * 1024 * 1024) + "\n",
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.yml"
        path.write_text(text)
        with pytest.raises(ConfigError):
            load_config(path, environ=ENV)
