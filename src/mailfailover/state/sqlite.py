"""``sqlite://``: state shared by the processes of one host, in one SQLite file (WAL).

Needs no server and nothing beyond the standard library. ``sqlite:///var/lib/mf/state.db``
is an absolute path, ``sqlite://state.db`` or ``sqlite://./data/state.db`` a path relative to
the working directory. Every write is one ``BEGIN IMMEDIATE`` transaction, so read-modify-
write is atomic across processes; a writer waits at most ``timeout`` seconds (URL query
``?timeout=0.5``, default 2) for the lock and then raises :class:`StoreError`, which the
sending path treats as "store unavailable".
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ._base import StateStore, StoreError, T, Unchanged, Updater

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mailfailover_state (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires REAL
)
"""
#: Expired rows are swept on every this-many writes; reads ignore them anyway.
_SWEEP_EVERY = 500


class SqliteStore(StateStore):
    """One SQLite database file; one connection per thread."""

    def __init__(
        self, path: str | Path, *, namespace: str = "mailfailover", timeout: float = 2.0
    ) -> None:
        super().__init__(namespace=namespace)
        if not timeout > 0 or timeout != timeout or timeout == float("inf"):
            raise ValueError("an sqlite store's timeout must be a positive number of seconds")
        self.path = Path(path)
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writes = 0
        self._closed = False
        with self._transaction() as db:
            db.execute(_SCHEMA)

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "mailfailover") -> SqliteStore:
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if not path:
            raise ValueError("an sqlite store needs a file: sqlite:///abs/path or sqlite://rel")
        options = parse_qs(parts.query)
        unknown = sorted(set(options) - {"timeout"})
        if unknown:
            raise ValueError(f"unknown sqlite store option {unknown[0]!r} (known: timeout)")
        timeout = 2.0
        if "timeout" in options:
            try:
                timeout = float(options["timeout"][-1])
            except ValueError:
                raise ValueError("the sqlite store's timeout must be a number") from None
        return cls(path, namespace=namespace, timeout=timeout)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}" if self.path.is_absolute() else f"sqlite://{self.path}"

    def now(self) -> float:
        return time.time()

    # -- connections ------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            return db
        if self._closed:
            raise StoreError("the sqlite state store is closed")
        try:
            if self.path.parent != Path():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._open()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the sqlite state store {self.path}: {exc}") from None
        self._local.db = db
        with self._lock:
            self._connections.append(db)
        return db

    def _open(self) -> sqlite3.Connection:
        """A connection in WAL mode, retried for up to :attr:`timeout` seconds.

        Switching a new database to WAL, or opening one while another process recovers
        its WAL, can answer "database is locked" at once, without SQLite's busy handler
        (the connection's ``timeout``) ever waiting: several workers starting together on
        one fresh file did. So a busy open is retried, a few milliseconds apart (bounded by
        the timeout), as a busy write would have waited.
        """
        give_up = time.monotonic() + self.timeout
        pause = 0.005
        while True:
            db = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.OperationalError as exc:
                db.close()
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() + pause > give_up:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
                continue
            except BaseException:
                db.close()
                raise
            return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite state store {self.path}: {exc}") from None
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self._sweep()

    def _read(self, sql: str, params: Iterable[object]) -> list[tuple[str, bytes]]:
        db = self._connection()
        try:
            return list(db.execute(sql, tuple(params)).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite state store {self.path}: {exc}") from None

    def _sweep(self) -> None:
        # A busy database skips a sweep: the next one does it, and reads skip expired rows.
        with contextlib.suppress(sqlite3.Error):
            self._connection().execute(
                "DELETE FROM mailfailover_state WHERE expires IS NOT NULL AND expires <= ?",
                (time.time(),),
            )

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    @staticmethod
    def _expires(ttl: float | None, now: float) -> float | None:
        return None if ttl is None else now + ttl

    @staticmethod
    def _live_value(db: sqlite3.Connection, key: str, now: float) -> bytes | None:
        row = db.execute(
            "SELECT value FROM mailfailover_state"
            " WHERE key = ? AND (expires IS NULL OR expires > ?)",
            (key, now),
        ).fetchone()
        return None if row is None else bytes(row[0])

    # -- the interface ----------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        rows = self._read(
            "SELECT key, value FROM mailfailover_state"
            " WHERE key = ? AND (expires IS NULL OR expires > ?)",
            (self._key(key), time.time()),
        )
        return bytes(rows[0][1]) if rows else None

    def get_many(self, keys: Iterable[str]) -> list[bytes | None]:
        wanted = [self._key(k) for k in keys]
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = self._read(
            f"SELECT key, value FROM mailfailover_state WHERE key IN ({marks})"  # noqa: S608
            " AND (expires IS NULL OR expires > ?)",
            [*wanted, time.time()],
        )
        found = {k: bytes(v) for k, v in rows}
        return [found.get(k) for k in wanted]

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO mailfailover_state (key, value, expires) VALUES (?, ?, ?)",
                (self._key(key), bytes(value), self._expires(ttl, time.time())),
            )

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        with self._transaction() as db:
            now = time.time()
            if self._live_value(db, self._key(key), now) is not None:
                return False
            db.execute(
                "INSERT OR REPLACE INTO mailfailover_state (key, value, expires) VALUES (?, ?, ?)",
                (self._key(key), bytes(value), self._expires(ttl, now)),
            )
            return True

    def delete(self, key: str) -> bool:
        with self._transaction() as db:
            live = self._live_value(db, self._key(key), time.time()) is not None
            db.execute("DELETE FROM mailfailover_state WHERE key = ?", (self._key(key),))
            return live

    def update(self, key: str, fn: Updater[T], *, ttl: float | None = None) -> T:
        with self._transaction() as db:
            now = time.time()
            new, result = fn(self._live_value(db, self._key(key), now))
            if new is None:
                db.execute("DELETE FROM mailfailover_state WHERE key = ?", (self._key(key),))
            elif not isinstance(new, Unchanged):
                db.execute(
                    "INSERT OR REPLACE INTO mailfailover_state (key, value, expires)"
                    " VALUES (?, ?, ?)",
                    (self._key(key), bytes(new), self._expires(ttl, now)),
                )
            return result

    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        with self._transaction() as db:
            now = time.time()
            old = self._live_value(db, self._key(key), now)
            try:
                value = (int(old) if old is not None else 0) + amount
            except ValueError:
                raise StoreError(f"state key {key!r} does not hold a counter") from None
            if old is None:
                db.execute(
                    "INSERT OR REPLACE INTO mailfailover_state (key, value, expires)"
                    " VALUES (?, ?, ?)",
                    (self._key(key), str(value).encode(), self._expires(ttl, now)),
                )
            else:
                db.execute(
                    "UPDATE mailfailover_state SET value = ? WHERE key = ?",
                    (str(value).encode(), self._key(key)),
                )
            return value

    def scan(self, prefix: str) -> list[tuple[str, bytes]]:
        start = self._key(prefix)
        rows = self._read(
            "SELECT key, value FROM mailfailover_state WHERE substr(key, 1, ?) = ?"
            " AND (expires IS NULL OR expires > ?) ORDER BY key",
            (len(start), start, time.time()),
        )
        cut = len(self.namespace) + 1
        return [(k[cut:], bytes(v)) for k, v in rows]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()
