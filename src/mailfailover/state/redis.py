"""``redis://`` (and ``rediss://``, ``unix://``): state shared by every host (extra ``redis``).

Each operation is one command or one Lua script, so it is atomic on the server; read-modify-
write uses ``WATCH``/``MULTI`` and retries on a concurrent write. The client's connect and
read timeouts default to 0.5 s (URL query ``socket_timeout``/``socket_connect_timeout``
overrides them): a slow server must cost a send little before the caller falls back to its
own state. Times come from this host's clock; hosts are expected to keep NTP time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..driver import require
from ._base import StateStore, StoreError, T, Unchanged, Updater

if TYPE_CHECKING:
    import redis as redis_module

__all__ = ["RedisStore"]

DEFAULT_TIMEOUT = 0.5
#: Optimistic read-modify-write gives up after this many concurrent writes in a row.
MAX_UPDATE_TRIES = 100

# INCRBY that sets an expiry only when it creates the counter.
_INCR = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and value == tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


def _ms(ttl: float | None) -> int | None:
    return None if ttl is None else max(int(ttl * 1000), 1)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, ""))


class RedisStore(StateStore):
    """A Redis server (or anything speaking its protocol) through the ``redis`` client."""

    def __init__(self, client: redis_module.Redis, *, url: str, namespace: str) -> None:
        super().__init__(namespace=namespace)
        self._redis: Any = require("redis", "redis")
        self.client: Any = client
        self._url = _redacted(url)
        self._incr = client.register_script(_INCR)

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "mailfailover") -> RedisStore:
        redis_module: Any = require("redis", "redis")
        query = parse_qs(urlsplit(url).query)
        options: dict[str, Any] = {}
        for name in ("socket_timeout", "socket_connect_timeout"):
            if name not in query:
                options[name] = DEFAULT_TIMEOUT
        try:
            client = redis_module.Redis.from_url(url, **options)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad redis URL {_redacted(url)}: {exc}") from None
        return cls(client, url=url, namespace=namespace)

    @property
    def url(self) -> str:
        return self._url

    def now(self) -> float:
        return time.time()

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except self._redis.RedisError as exc:
            raise StoreError(f"redis state store {self._url}: {type(exc).__name__}") from None

    def get(self, key: str) -> bytes | None:
        value = self._call("get", self._key(key))
        return None if value is None else bytes(value)

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        wanted = [self._key(k) for k in keys]
        if not wanted:
            return []
        return [None if v is None else bytes(v) for v in self._call("mget", wanted)]

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._call("set", self._key(key), bytes(value), px=_ms(ttl))

    def set_many(self, items: Mapping[str, bytes], *, ttl: float | None = None) -> None:
        if not items:
            return
        try:
            pipe: Any
            with self.client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(self._key(key), bytes(value), px=_ms(ttl))
                pipe.execute()
        except self._redis.RedisError as exc:
            raise StoreError(f"redis state store {self._url}: {type(exc).__name__}") from None

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        return bool(self._call("set", self._key(key), bytes(value), px=_ms(ttl), nx=True))

    def delete(self, key: str) -> bool:
        return bool(self._call("delete", self._key(key)))

    def delete_many(self, keys: Iterable[str]) -> int:
        names = [self._key(k) for k in keys]
        return int(self._call("delete", *names)) if names else 0

    def update(self, key: str, fn: Updater[T], *, ttl: float | None = None) -> T:
        name = self._key(key)
        try:
            pipe: Any
            with self.client.pipeline(transaction=True) as pipe:
                for _ in range(MAX_UPDATE_TRIES):
                    try:
                        pipe.watch(name)
                        old = pipe.get(name)
                        new, result = fn(None if old is None else bytes(old))
                        if isinstance(new, Unchanged):
                            pipe.unwatch()
                            return result
                        pipe.multi()
                        if new is None:
                            pipe.delete(name)
                        else:
                            pipe.set(name, bytes(new), px=_ms(ttl))
                        pipe.execute()
                        return result
                    except self._redis.WatchError:
                        continue
        except self._redis.RedisError as exc:
            raise StoreError(f"redis state store {self._url}: {type(exc).__name__}") from None
        raise StoreError(f"redis state store {self._url}: {key!r} kept changing under us")

    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        try:
            return int(self._incr(keys=[self._key(key)], args=[amount, _ms(ttl) or 0]))
        except self._redis.ResponseError:
            raise StoreError(f"state key {key!r} does not hold a counter") from None
        except self._redis.RedisError as exc:
            raise StoreError(f"redis state store {self._url}: {type(exc).__name__}") from None

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        start = self._key(prefix)
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in start) + "*"
        try:
            keys = sorted(bytes(k) for k in self.client.scan_iter(match=pattern, count=500))
        except self._redis.RedisError as exc:
            raise StoreError(f"redis state store {self._url}: {type(exc).__name__}") from None
        if not keys:
            return []
        values = self._call("mget", keys)
        cut = len(self.namespace) + 1
        return [
            (k.decode()[cut:], bytes(v)) for k, v in zip(keys, values, strict=True) if v is not None
        ]

    def ping(self) -> None:
        self._call("ping")

    def close(self) -> None:
        with contextlib.suppress(self._redis.RedisError):
            self.client.close()
