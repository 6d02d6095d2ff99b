"""YAML configuration: loading, ``${ENV}`` interpolation, validation, the default lookup.

The format is the original service's ``config/mail.yml``: a ``drivers`` list of
``{name, module, settings}`` (``driver:`` is accepted for ``module:``), plus optional
``strategy``, ``failure_threshold``, ``cooldown``, ``timeout``, ``deadline``, an ``http``
section for the HTTP adapter, ``state`` (the state store's URL) and a ``queue`` section for
queued delivery (:mod:`mailfailover.celery`). Typos are caught at load time: unknown keys
and unknown settings are errors naming the file and the driver. Error text never echoes a
value from the file or the environment, since values are where secrets live.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import yaml

from .driver import Driver, FromEnvironment, redact_userinfo
from .errors import ConfigError, MissingDependency
from .policy import POLICY_KEYS, DriverPolicy
from .ratelimit import Rate
from .registry import load_driver

__all__ = [
    "DEFAULT_CONFIG",
    "DriverSpec",
    "HttpConfig",
    "MailerConfig",
    "QueueConfig",
    "build_driver",
    "build_drivers",
    "load_config",
]

#: Used when no path is given, ``$MAILFAILOVER_CONFIG`` is unset and there is no
#: ``./config/mail.yml``: a local SMTP server (such as ``python -m aiosmtpd -n``) failing
#: over to ``.eml`` files in ``./outbox``.
DEFAULT_CONFIG: Mapping[str, Any] = {
    "drivers": [
        {
            "name": "smtp",
            "module": "smtp",
            "settings": {"host": "localhost", "port": 1025, "security": "none", "timeout": 5},
        },
        {"name": "outbox", "module": "file", "settings": {"directory": "./outbox"}},
    ]
}

ENV_VARIABLE = "MAILFAILOVER_CONFIG"
DEFAULT_PATH = Path("config") / "mail.yml"
MAX_CONFIG_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 50
DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024
#: ``http.auth_failures``: wrong tokens a client address may give, then one per 6 s.
DEFAULT_AUTH_FAILURES = Rate(10, 60.0)
#: ``http.max_recipients``: to + cc + bcc one ``POST /send`` may name (``Message`` caps too).
DEFAULT_MAX_RECIPIENTS = 1000
#: The ranges of the numbers a configuration may hold (a finite number, always).
MAX_THRESHOLD = 1000
MAX_COOLDOWN = 86_400.0  # a day
MAX_TIMEOUT = 3_600.0  # an hour
MAX_DEADLINE = 86_400.0
MAX_BODY_BYTES = 1024 * 1024 * 1024
MAX_RECIPIENTS = 100_000
MAX_QUEUE_SECONDS = 366 * 86_400.0

_TOP_KEYS = frozenset(
    {
        "strategy",
        "failure_threshold",
        "cooldown",
        "timeout",
        "deadline",
        "drivers",
        "http",
        "state",
        "queue",
        "suppression",
    }
)
_DRIVER_KEYS = frozenset({"name", "module", "driver", "settings"})
_HTTP_KEYS = frozenset(
    {
        "api_token",
        "allowed_senders",
        "auth_failures",
        "max_body_bytes",
        "max_recipients",
        "metrics_token",
        "queue",
    }
)
_QUEUE_KEYS = frozenset(
    {
        "broker",
        "max_age",
        "name",
        "backoff",
        "backoff_max",
        "lease",
        "visibility_timeout",
        "on_ambiguous",
        "connect_timeout",
        "keep",
    }
)
# Every ${...} is matched, so that a form this loader does not implement (${VAR:+x},
# ${VAR/a/b}) is refused instead of being kept as literal text.
_PLACEHOLDER = re.compile(r"\$\$|\$\{([^}]*)\}")
_EXPANSION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])(.*))?$", re.DOTALL)
_VARIABLE_START = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.frozen
class DriverSpec:
    """One configured driver, before it is built."""

    name: str
    module: str
    settings: Mapping[str, Any] = attrs.field(repr=False)
    source: str = "<config>"
    timeout: float | None = None
    #: ``rate``, ``rate_mode`` and ``slow_after``, taken out of ``settings`` for the mailer.
    policy: DriverPolicy = attrs.field(factory=DriverPolicy)

    @property
    def key(self) -> str:
        """Identity for :meth:`FailoverMailer.reload`: unchanged key, kept health.

        A SHA-256 of the settings, never the settings themselves: the key is kept beside
        the driver and shows in ``repr``, and the settings hold the secrets.
        """
        text = json.dumps(
            [self.name, self.module, self.settings, self.timeout, repr(self.policy)],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@attrs.frozen
class HttpConfig:
    """The ``http:`` section, for :mod:`mailfailover.flask`."""

    api_token: str | None = attrs.field(default=None, repr=lambda v: "None" if v is None else "***")
    allowed_senders: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: Recipients (to + cc + bcc, comma-separated ones counted) one ``POST /send`` may name.
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    #: A second token that may read ``GET /metrics`` (and nothing else).
    metrics_token: str | None = attrs.field(
        default=None, repr=lambda v: "None" if v is None else "***"
    )
    #: ``POST /send`` enqueues (202) instead of sending; needs a ``queue:`` section.
    queue: bool = False
    #: Wrong tokens one client address may give before it must wait (None: no limit).
    auth_failures: Rate | None = DEFAULT_AUTH_FAILURES


def _redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for repr and error text)."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


@attrs.frozen
class QueueConfig:
    """The ``queue:`` section, for :mod:`mailfailover.celery` (seconds throughout).

    ``visibility_timeout`` is how long a Redis or SQS broker waits before handing a task that
    was taken but never acknowledged (its worker died) to another worker. It must outlast
    the longest countdown a retry waits in a worker (``backoff_max``) plus one send
    (``lease``), or the broker would hand out tasks that are merely waiting; by default it is
    exactly that plus a minute.
    """

    broker: str = attrs.field(repr=_redact_url)
    max_age: float = 86400.0
    name: str = "mailfailover"
    backoff: float = 30.0
    backoff_max: float = 1800.0
    lease: float = 300.0
    visibility_timeout: float | None = None
    on_ambiguous: str = "dead"
    connect_timeout: float = 2.0
    keep: float = 7 * 86400.0

    @property
    def broker_visibility_timeout(self) -> float:
        """The visibility timeout to give the broker: set, or derived from the others."""
        if self.visibility_timeout is not None:
            return self.visibility_timeout
        return self.backoff_max + self.lease + 60.0


@attrs.frozen
class MailerConfig:
    """A validated configuration."""

    drivers: tuple[DriverSpec, ...]
    strategy: str | None = None
    failure_threshold: int | None = None
    cooldown: float | None = None
    timeout: float | None = None
    deadline: float | None = None
    http: HttpConfig = HttpConfig()
    source: str = "<config>"
    #: The ``state:`` store spec (a URL or ``{url, namespace}``), None for the default.
    state: str | Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    queue: QueueConfig | None = None
    #: ``suppression: false`` turns the suppression list off (webhooks still feed it).
    suppression: bool | None = None

    def mailer_options(self) -> dict[str, Any]:
        """The ``FailoverMailer`` keyword arguments this file sets."""
        options = {
            "suppression": self.suppression,
            "strategy": self.strategy,
            "failure_threshold": self.failure_threshold,
            "cooldown": self.cooldown,
            "deadline": self.deadline,
            "state": self.state,
        }
        return {key: value for key, value in options.items() if value is not None}

    def policies(self) -> dict[str, DriverPolicy]:
        """Each driver's rate limit and brownout bar, for the drivers that have one."""
        return {spec.name: spec.policy for spec in self.drivers if spec.policy.active}


# -- loading ----------------------------------------------------------------------------------


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> MailerConfig:
    """Load and validate a configuration.

    ``source`` is a YAML file, a folder of ``*.yml`` / ``*.yaml`` files (read in name
    order, drivers concatenated), or an already-parsed mapping. ``None`` means
    ``$MAILFAILOVER_CONFIG``, else ``./config/mail.yml``, else :data:`DEFAULT_CONFIG`.
    """
    env = os.environ if environ is None else environ
    if source is None:
        if env.get(ENV_VARIABLE):
            source = env[ENV_VARIABLE]
        elif DEFAULT_PATH.is_file():
            source = DEFAULT_PATH
        else:
            return _validate([("<built-in default>", DEFAULT_CONFIG)], env, "<built-in default>")
    if isinstance(source, Mapping):
        return _validate([("<dict>", source)], env, "<dict>")
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
        if not files:
            raise ConfigError("the folder holds no *.yml or *.yaml file", source=str(path))
        return _validate([(str(p), _read_yaml(p)) for p in files], env, str(path))
    if not path.exists():
        raise ConfigError("no such file or folder", source=str(path))
    return _validate([(str(path), _read_yaml(path))], env, str(path))


def _read_yaml(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", source=str(path)) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"the file is larger than {MAX_CONFIG_BYTES} bytes", source=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text", source=str(path)) from None
    try:
        return yaml.safe_load(text)
    except RecursionError:  # PyYAML's parser recurses once per level of [[[...]]]
        raise ConfigError("the file is nested too deeply", source=str(path)) from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"not valid YAML: {problem}{where}", source=str(path)) from None


# -- validation -------------------------------------------------------------------------------


def _validate(
    documents: list[tuple[str, Any]], env: Mapping[str, str], source: str
) -> MailerConfig:
    merged: dict[str, tuple[str, Any]] = {}
    drivers: list[DriverSpec] = []
    budget = [MAX_NODES]
    for name, document in documents:
        if document is None:
            continue
        if not isinstance(document, Mapping):
            raise ConfigError("the top level must be a mapping (key: value)", source=name)
        unknown = sorted(str(k) for k in document if k not in _TOP_KEYS)
        if unknown:
            known = ", ".join(sorted(_TOP_KEYS))
            raise ConfigError(f"unknown key {unknown[0]!r} (known: {known})", source=name)
        for key, value in document.items():
            if key == "drivers":
                continue
            value = _interpolate(value, env, budget, where=key, source=name, driver=None)
            if key in merged and merged[key][1] != value:
                raise ConfigError(
                    f"{key!r} is set differently in {merged[key][0]} and here", source=name
                )
            merged[key] = (name, value)
        entries = document.get("drivers")
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ConfigError("'drivers' must be a list", source=name)
        drivers.extend(
            _driver_spec(entry, index, env, budget, name) for index, entry in enumerate(entries)
        )
    if not drivers:
        raise ConfigError("no drivers are configured", source=source)
    seen: set[str] = set()
    for spec in drivers:
        if spec.name in seen:
            raise ConfigError(f"two drivers are named {spec.name!r}", source=spec.source)
        seen.add(spec.name)

    def scalar(key: str) -> tuple[str, Any]:
        return merged.get(key, (source, None))

    strategy = _choice(*scalar("strategy"), "strategy", ("failover", "round_robin"))
    threshold = _number(
        *scalar("failure_threshold"), "failure_threshold", int, minimum=1, maximum=MAX_THRESHOLD
    )
    cooldown = _number(*scalar("cooldown"), "cooldown", float, minimum=0, maximum=MAX_COOLDOWN)
    timeout = _number(
        *scalar("timeout"), "timeout", float, minimum=0, maximum=MAX_TIMEOUT, exclusive=True
    )
    deadline = _number(
        *scalar("deadline"), "deadline", float, minimum=0, maximum=MAX_DEADLINE, exclusive=True
    )
    if timeout is not None:
        drivers = [attrs.evolve(spec, timeout=timeout) for spec in drivers]
    http = _http_config(*scalar("http"))
    state = _state_spec(*scalar("state"))
    queue = _queue_config(*scalar("queue"), state)
    suppression_source, suppression = scalar("suppression")
    if suppression is not None and not isinstance(suppression, bool):
        raise ConfigError("'suppression' must be true or false", source=suppression_source)
    if http.queue and queue is None:
        raise ConfigError("'http.queue' needs a 'queue' section", source=scalar("http")[0])
    return MailerConfig(
        drivers=tuple(drivers),
        strategy=strategy,
        failure_threshold=threshold,
        cooldown=cooldown,
        timeout=timeout,
        deadline=deadline,
        http=http,
        source=source,
        state=state,
        queue=queue,
        suppression=suppression,
    )


def _driver_spec(
    entry: Any,
    index: int,
    env: Mapping[str, str],
    budget: list[int],
    source: str,
) -> DriverSpec:
    label = f"drivers[{index}]"
    if not isinstance(entry, Mapping):
        raise ConfigError(
            f"{label} must be a mapping with name, module and settings", source=source
        )
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{label} needs a 'name'", source=source)
    unknown = sorted(str(k) for k in entry if k not in _DRIVER_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} (known: driver, module, name, settings)",
            source=source,
            driver=name,
        )
    module = entry.get("module")
    synonym = entry.get("driver")
    if module is not None and synonym is not None and module != synonym:
        raise ConfigError("'module' and 'driver' disagree; give one", source=source, driver=name)
    module = module if module is not None else synonym
    if not isinstance(module, str) or not module.strip():
        raise ConfigError("needs a 'module' (the driver's name)", source=source, driver=name)
    settings = entry.get("settings")
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping) or not all(isinstance(k, str) for k in settings):
        raise ConfigError("'settings' must be a mapping", source=source, driver=name)
    settings = {
        key: _interpolate(value, env, budget, where=f"settings.{key}", source=source, driver=name)
        for key, value in settings.items()
    }
    # rate, rate_mode and slow_after are the mailer's, whatever the driver: taken out here,
    # so that a driver (a plugin too) never has to declare them.
    try:
        policy = DriverPolicy.from_settings(settings)
    except ValueError as exc:
        raise ConfigError(f"settings: {exc}", source=source, driver=name) from None
    settings = {key: value for key, value in settings.items() if key not in POLICY_KEYS}
    return DriverSpec(
        name=name, module=module.strip(), settings=settings, source=source, policy=policy
    )


def _interpolate(
    value: Any,
    env: Mapping[str, str],
    budget: list[int],
    *,
    where: str,
    source: str,
    driver: str | None,
    depth: int = 0,
) -> Any:
    """Replace ``${VAR}`` forms in every string, with the shell's meanings; ``$$`` is ``$``.

    ``${VAR}`` needs VAR set; ``${VAR:-default}`` uses the default when VAR is unset or
    empty, ``${VAR-default}`` only when unset; ``${VAR:?message}`` is a ``ConfigError``
    carrying the message when VAR is unset or empty, ``${VAR?message}`` only when unset.
    Any other ``${...}`` is refused. A string that took a value from the environment comes
    back as :class:`~mailfailover.driver.FromEnvironment`, which error text never shows.
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(
            "the configuration is too large (more than 100,000 values, counting aliases)",
            source=source,
        )
    if depth > MAX_DEPTH:  # also a YAML alias that contains itself (a: &a [*a])
        raise ConfigError(
            f"{where}: nested more than {MAX_DEPTH} levels deep", source=source, driver=driver
        )
    if isinstance(value, str):
        from_environment = False

        def replace(match: re.Match[str]) -> str:
            nonlocal from_environment
            if match.group(0) == "$$":
                return "$"
            expansion = _EXPANSION.match(match.group(1))
            if expansion is None:
                inner = match.group(1)[:60]
                name = _VARIABLE_START.match(inner)
                what = (
                    "is not supported (use ${VAR}, ${VAR:-default} or ${VAR:?message})"
                    if name and name.end() < len(inner)
                    else "is not a valid variable name"
                )
                raise ConfigError(f"{where}: '${{{inner}}}' {what}", source=source, driver=driver)
            variable, operator, word = expansion.groups()
            value = env.get(variable)
            # As in the shell: with a colon the operator also applies to an empty VAR.
            missing = value is None or (operator is not None and operator[0] == ":" and not value)
            if operator is not None and operator.endswith("-") and missing:
                return str(word)
            if operator is not None and operator.endswith("?") and missing:
                state = "is not set" if value is None else "is empty"
                detail = f": {word[:200]}" if word else ""
                raise ConfigError(
                    f"{where}: the environment variable {variable} {state}{detail}",
                    source=source,
                    driver=driver,
                )
            if value is None:
                raise ConfigError(
                    f"{where} needs the environment variable {variable}, which is not set",
                    source=source,
                    driver=driver,
                )
            from_environment = True
            return value

        result = _PLACEHOLDER.sub(replace, value)
        return FromEnvironment(result) if from_environment else result
    if isinstance(value, Mapping):
        return {
            k: _interpolate(
                v,
                env,
                budget,
                where=f"{where}.{k}",
                source=source,
                driver=driver,
                depth=depth + 1,
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _interpolate(v, env, budget, where=where, source=source, driver=driver, depth=depth + 1)
            for v in value
        ]
    return value


def _choice(source: str, value: Any, key: str, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise ConfigError(f"{key!r} must be one of {', '.join(choices)}", source=source)
    return str(value)


def _number(
    source: str,
    value: Any,
    key: str,
    kind: type,
    *,
    minimum: float,
    maximum: float,
    exclusive: bool = False,
) -> Any:
    """A finite number in ``[minimum, maximum]`` (``(minimum, maximum]`` if ``exclusive``);
    the error names the key and the range, never the value."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip()) if kind is float else int(value.strip())
        except ValueError:
            raise ConfigError(f"{key!r} must be a number", source=source) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key!r} must be a number", source=source)
    if not math.isfinite(value):  # .inf and .nan: int() would raise, float comparisons lie
        raise ConfigError(f"{key!r} must be a finite number", source=source)
    if kind is int and value != int(value):
        raise ConfigError(f"{key!r} must be a whole number", source=source)
    if value < minimum or (exclusive and value == minimum):
        bound = "greater than" if exclusive else "at least"
        raise ConfigError(f"{key!r} must be {bound} {minimum:g}", source=source)
    if value > maximum:
        raise ConfigError(f"{key!r} must be at most {maximum:g}", source=source)
    return kind(value)


def _http_config(source: str, value: Any) -> HttpConfig:
    if value is None:
        return HttpConfig()
    if not isinstance(value, Mapping):
        raise ConfigError("'http' must be a mapping", source=source)
    unknown = sorted(str(k) for k in value if k not in _HTTP_KEYS)
    if unknown:
        known = ", ".join(sorted(_HTTP_KEYS))
        raise ConfigError(f"unknown key 'http.{unknown[0]}' (known: {known})", source=source)
    token = _token(source, value, "api_token")
    metrics_token = _token(source, value, "metrics_token")
    senders = value.get("allowed_senders") or []
    if isinstance(senders, str):
        senders = [senders]
    if not isinstance(senders, list) or not all(isinstance(s, str) and s for s in senders):
        raise ConfigError("'http.allowed_senders' must be a list of addresses", source=source)
    limit = _number(
        source, value.get("max_body_bytes"), "http.max_body_bytes", int,
        minimum=1, maximum=MAX_BODY_BYTES,
    )  # fmt: skip
    max_recipients = _number(
        source, value.get("max_recipients"), "http.max_recipients", int,
        minimum=1, maximum=MAX_RECIPIENTS,
    )  # fmt: skip
    queue = value.get("queue", False)
    if not isinstance(queue, bool):
        raise ConfigError("'http.queue' must be true or false", source=source)
    return HttpConfig(
        auth_failures=_auth_failures(source, value),
        api_token=token or None,
        allowed_senders=tuple(senders),
        max_body_bytes=DEFAULT_MAX_BODY_BYTES if limit is None else limit,
        max_recipients=DEFAULT_MAX_RECIPIENTS if max_recipients is None else max_recipients,
        metrics_token=metrics_token,
        queue=queue,
    )


def _auth_failures(source: str, section: Mapping[str, Any]) -> Rate | None:
    """``http.auth_failures``: a rate (``10/min``), or ``off``/``false`` for no limit."""
    if "auth_failures" not in section:
        return DEFAULT_AUTH_FAILURES
    value = section["auth_failures"]
    if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
        return None
    if not isinstance(value, str):
        raise ConfigError("'http.auth_failures' must be a rate like 10/min, or off",
                          source=source)  # fmt: skip
    try:
        return Rate.parse(value)
    except ValueError as exc:
        raise ConfigError(f"'http.auth_failures': {exc}", source=source) from None


def _token(source: str, section: Mapping[str, Any], key: str) -> str | None:
    token = section.get(key)
    if token is not None and not isinstance(token, str):
        raise ConfigError(f"'http.{key}' must be a string", source=source)
    # An empty token (``${MAILFAILOVER_API_TOKEN:-}`` with the variable unset) means none:
    # for the API token, serve then binds only to loopback.
    return (token.strip() or None) if token else None


def _state_spec(source: str, value: Any) -> str | Mapping[str, Any] | None:
    """Check ``state:`` (a URL, or ``{url, namespace}``): its shape, that a store backend
    serves its scheme, and the namespace. The URL is never echoed (a password lives there);
    the store is opened only when used."""
    if value is None:
        return None
    url = value.get("url") if isinstance(value, Mapping) else value
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            "'state' must be a store URL such as sqlite:///path or redis://host:6379/0, "
            "or a mapping with 'url' and 'namespace'",
            source=source,
        )
    from .state import store_schemes

    scheme = urlsplit(url).scheme.lower()
    schemes = store_schemes()
    if scheme not in schemes:
        raise ConfigError(
            f"'state': no store backend for {scheme!r}:// (installed: {', '.join(schemes)})",
            source=source,
        )
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in ("url", "namespace"))
        if unknown:
            raise ConfigError(f"unknown key 'state.{unknown[0]}' (known: namespace, url)",
                              source=source)  # fmt: skip
        namespace = value.get("namespace", "mailfailover")
        if not isinstance(namespace, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", namespace):
            raise ConfigError(
                "'state.namespace' must be a word (letters, digits, _ . : -)", source=source
            )
        return dict(value)
    return str(value)


def _queue_config(
    source: str, value: Any, state: str | Mapping[str, Any] | None
) -> QueueConfig | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError("'queue' must be a mapping", source=source)
    unknown = sorted(str(k) for k in value if k not in _QUEUE_KEYS)
    if unknown:
        known = ", ".join(sorted(_QUEUE_KEYS))
        raise ConfigError(f"unknown key 'queue.{unknown[0]}' (known: {known})", source=source)
    broker = value.get("broker")
    if not isinstance(broker, str) or "://" not in broker:
        raise ConfigError(
            "'queue.broker' must be a Celery broker URL such as redis://127.0.0.1:6379/1",
            source=source,
        )
    url = state.get("url") if isinstance(state, Mapping) else state
    if url is None or str(url).lower().startswith("memory:"):
        # Delivery records must be seen by the workers and by whoever asks for a status.
        raise ConfigError(
            "'queue' needs a shared state store: set 'state' to sqlite:///path or redis://...",
            source=source,
        )
    options: dict[str, Any] = {"broker": broker}
    for key in ("max_age", "backoff", "backoff_max", "lease", "visibility_timeout",
                "connect_timeout", "keep"):  # fmt: skip
        number = _number(
            source, value.get(key), f"queue.{key}", float,
            minimum=0, maximum=MAX_QUEUE_SECONDS, exclusive=True,
        )  # fmt: skip
        if number is not None:
            options[key] = number
    name = value.get("name")
    if name is not None:
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.:-]{1,100}$", name):
            raise ConfigError("'queue.name' must be a word (letters, digits, _ . : -)",
                              source=source)  # fmt: skip
        options["name"] = name
    options["on_ambiguous"] = _choice(
        source, value.get("on_ambiguous", "dead"), "queue.on_ambiguous", ("dead", "retry")
    )
    if "backoff" not in options and "backoff_max" in options:
        # A short maximum alone shortens the first wait too.
        options["backoff"] = min(attrs.fields(QueueConfig).backoff.default, options["backoff_max"])
    queue = QueueConfig(**options)
    if queue.backoff > queue.backoff_max:
        raise ConfigError("'queue.backoff' may not be more than 'queue.backoff_max'", source=source)
    if queue.broker_visibility_timeout <= queue.backoff_max + queue.lease:
        raise ConfigError(
            "'queue.visibility_timeout' must be more than queue.backoff_max + queue.lease, "
            "or the broker hands a waiting or running task to a second worker",
            source=source,
        )
    return queue


# -- building ---------------------------------------------------------------------------------


def build_driver(spec: DriverSpec) -> Driver:
    """Instantiate one configured driver (importing only its module)."""
    try:
        cls = load_driver(spec.module)
    except MissingDependency as exc:
        raise _missing(exc, spec) from None
    except ConfigError as exc:
        raise ConfigError(exc.message, source=spec.source, driver=spec.name) from None
    settings = dict(spec.settings)
    if spec.timeout is not None and "timeout" in cls.settings_spec and "timeout" not in settings:
        settings["timeout"] = spec.timeout
    try:
        return cls(name=spec.name, **settings)
    except MissingDependency as exc:
        raise _missing(exc, spec) from None
    except ConfigError as exc:
        message = _hide_values(_strip_driver(exc), spec.settings)
        raise ConfigError(message, source=spec.source, driver=spec.name) from None


def _missing(exc: MissingDependency, spec: DriverSpec) -> MissingDependency:
    """``exc`` naming the configured driver, its module and the file it is configured in."""
    return MissingDependency(
        exc.package, exc.extra, driver=spec.name, module=spec.module, source=spec.source
    )


def _environment_values(value: Any) -> Iterator[str]:
    if isinstance(value, FromEnvironment):
        yield str(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _environment_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _environment_values(item)


def _hide_values(message: str, settings: Mapping[str, Any]) -> str:
    """A driver's own error text, without any value that came from the environment (a
    driver may quote the value it refuses) and without any URL's userinfo."""
    for value in sorted(set(_environment_values(settings)), key=len, reverse=True):
        message = message.replace(repr(value), "the value from the environment")
        if len(value) >= 4:
            message = message.replace(value, "***")
    return redact_userinfo(message)


def _strip_driver(exc: ConfigError) -> str:
    """The bare reason of a ConfigError that a driver already labelled with its name."""
    message = exc.message
    if exc.driver and message.endswith(f"(driver {exc.driver!r})"):
        message = message[: -len(f" (driver {exc.driver!r})")]
    return message


def build_drivers(config: MailerConfig) -> list[Driver]:
    """Instantiate every configured driver, closing the ones built if a later one fails."""
    built: list[Driver] = []
    try:
        for spec in config.drivers:
            built.append(build_driver(spec))
    except BaseException:
        for driver in built:
            driver.close()
        raise
    return built
