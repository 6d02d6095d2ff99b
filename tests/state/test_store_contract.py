"""Every state-store backend keeps the same contract: these tests run against each one.

A backend is added to ``STORES`` (and its fixture below); nothing else changes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from mailfailover.errors import ConfigError
from mailfailover.state import UNCHANGED, MemoryStore, StateStore, open_store
from mailfailover.testing import FakeClock


class WallClock(FakeClock):
    """A fake wall clock (epoch seconds) for expiry tests on the memory store."""

    def __init__(self) -> None:
        super().__init__()
        self.advance(1_800_000_000)


STORES = ["memory", "sqlite", "redis"]


def store_url(kind: str, request: pytest.FixtureRequest) -> str:
    """The URL of a fresh store of ``kind`` (a real server or file)."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        tmp = request.getfixturevalue("tmp_path")
        return f"sqlite:///{tmp / 'state.db'}"
    if kind == "redis":
        return str(request.getfixturevalue("redis_server").url)
    raise AssertionError(kind)  # pragma: no cover - every kind in STORES has a branch


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    namespace = f"t{uuid.uuid4().hex[:12]}"
    made = open_store(store_url(request.param, request), namespace=namespace)
    try:
        yield made
    finally:
        made.close()


def test_get_set_delete(store: StateStore) -> None:
    assert store.get("a") is None
    store.set("a", b"1")
    assert store.get("a") == b"1"
    store.set("a", b"2")
    assert store.get("a") == b"2"
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.get("a") is None


def test_get_many_keeps_order_and_gaps(store: StateStore) -> None:
    store.set("x", b"1")
    store.set("z", b"3")
    assert store.get_many(["z", "y", "x"]) == [b"3", None, b"1"]


def test_add_writes_only_when_absent(store: StateStore) -> None:
    assert store.add("lease", b"me") is True
    assert store.add("lease", b"you") is False
    assert store.get("lease") == b"me"


def test_add_has_exactly_one_winner_among_threads(store: StateStore) -> None:
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait(timeout=10)
        if store.add("once", str(i).encode(), ttl=60):
            winners.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(winners) == 1
    assert store.get("once") == str(winners[0]).encode()


def test_update_is_atomic_under_threads(store: StateStore) -> None:
    def bump(old: bytes | None) -> tuple[bytes, int]:
        value = int(old or b"0") + 1
        return str(value).encode(), value

    def work() -> None:
        for _ in range(50):
            store.update("n", bump)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert store.get("n") == b"200"


def test_update_can_leave_delete_or_write(store: StateStore) -> None:
    assert store.update("k", lambda old: (UNCHANGED, old)) is None
    assert store.get("k") is None
    assert store.update("k", lambda old: (b"v", "wrote")) == "wrote"
    assert store.get("k") == b"v"
    assert store.update("k", lambda old: (UNCHANGED, old)) == b"v"
    assert store.update("k", lambda old: (None, "gone")) == "gone"
    assert store.get("k") is None


def test_incr_counts_from_zero(store: StateStore) -> None:
    assert store.incr("c") == 1
    assert store.incr("c", 5) == 6
    assert store.get("c") == b"6"


def test_scan_lists_live_keys_by_prefix_in_order(store: StateStore) -> None:
    store.set("sup:b", b"2")
    store.set("sup:a", b"1")
    store.set("other", b"x")
    assert store.scan("sup:") == [("sup:a", b"1"), ("sup:b", b"2")]
    assert store.scan("nothing:") == []


def test_namespaces_keep_apart_and_one_namespace_is_shared(store: StateStore) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("a memory store is one object's own dict: nothing to share")
    elsewhere = open_store(store.url, namespace=f"other{uuid.uuid4().hex[:8]}")
    same = open_store(store.url, namespace=store.namespace)
    try:
        store.set("k", b"mine")
        assert elsewhere.get("k") is None
        assert elsewhere.scan("") == []
        assert same.get("k") == b"mine"
        assert same.scan("k") == [("k", b"mine")]
    finally:
        elsewhere.close()
        same.close()


def test_ttl_expires_on_every_backend(store: StateStore) -> None:
    import time

    store.set("short", b"1", ttl=0.05)  # ms resolution is the finest any backend keeps
    assert store.add("lease", b"a", ttl=0.05) is True
    store.set("long", b"2", ttl=60)
    deadline = time.monotonic() + 5
    while store.get("short") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get("short") is None
    assert store.add("lease", b"b", ttl=60) is True
    assert store.get("long") == b"2"
    assert [k for k, _ in store.scan("")] == ["lease", "long"]


def test_set_many_and_delete_many(store: StateStore) -> None:
    """Several keys at once (one round trip on redis), with set()'s and delete()'s meaning:
    values replaced, one ttl for all, the count of keys that existed."""
    import time

    store.set("a", b"old")
    store.set_many({"a": b"1", "b": b"2", "c": b"3"})
    assert store.get_many(["a", "b", "c"]) == [b"1", b"2", b"3"]
    store.set_many({"short1": b"x", "short2": b"y"}, ttl=0.05)
    store.set_many({})
    deadline = time.monotonic() + 5
    while store.get("short2") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get_many(["short1", "short2"]) == [None, None]
    assert store.delete_many(["a", "c", "never"]) == 2
    assert store.delete_many([]) == 0
    assert [k for k, _ in store.scan("")] == ["b"]


def test_incr_sets_ttl_only_when_creating(store: StateStore) -> None:
    assert store.incr("bucket", ttl=60) == 1
    assert store.incr("bucket", ttl=0.01) == 2
    assert store.get("bucket") == b"2"


def test_scan_treats_glob_characters_literally(store: StateStore) -> None:
    store.set("a*b", b"1")
    store.set("axb", b"2")
    assert store.scan("a*") == [("a*b", b"1")]


def test_now_is_wall_clock(store: StateStore) -> None:
    import time

    assert abs(store.now() - time.time()) < 5


def test_repr_names_url_and_namespace(store: StateStore) -> None:
    assert store.namespace in repr(store)


# -- expiry, with a fake wall clock on the memory store -------------------------------------


def test_ttl_expires_keys() -> None:
    clock = WallClock()
    store = MemoryStore(clock=clock)
    store.set("a", b"1", ttl=10)
    assert store.add("lease", b"x", ttl=5) is True
    clock.advance(5)
    assert store.add("lease", b"y", ttl=5) is True
    assert store.get("a") == b"1"
    clock.advance(5)
    assert store.get("a") is None
    assert store.scan("") == []


# -- open_store ------------------------------------------------------------------------------


def test_open_store_defaults_to_memory() -> None:
    assert isinstance(open_store(None), MemoryStore)
    assert isinstance(open_store("memory://"), MemoryStore)


def test_open_store_takes_a_mapping_with_namespace() -> None:
    store = open_store({"url": "memory://", "namespace": "app1"})
    assert store.namespace == "app1"


def test_open_store_passes_a_store_through() -> None:
    store = MemoryStore()
    assert open_store(store) is store


@pytest.mark.parametrize(
    "spec",
    ["nope://x", "just-a-path", {"url": "memory://", "colour": "red"}, 42],
)
def test_open_store_refuses_what_it_cannot_open(spec: object) -> None:
    with pytest.raises(ConfigError):
        open_store(spec)  # type: ignore[arg-type]


def test_unknown_scheme_error_never_shows_a_password() -> None:
    with pytest.raises(ConfigError) as info:
        open_store("nope://user:s3cret@host/0")
    assert "s3cret" not in str(info.value)
