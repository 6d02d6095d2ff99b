"""The suppression list on every state-store backend: case and IDNA folding, shared state."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest

from mailfailover.state import MemoryStore, StateStore, open_store
from mailfailover.suppressions import Suppression, SuppressionList, normalise_address

STORES = ["memory", "sqlite", "redis"]


def store_url(kind: str, request: pytest.FixtureRequest) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{request.getfixturevalue('tmp_path') / 'state.db'}"
    return str(request.getfixturevalue("redis_server").url)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    made = open_store(store_url(request.param, request), namespace=f"t{uuid.uuid4().hex[:12]}")
    try:
        yield made
    finally:
        made.close()


def test_add_contains_remove(store: StateStore) -> None:
    suppressions = SuppressionList(store)
    assert "ann@example.com" not in suppressions
    entry = suppressions.add("ann@example.com", reason="bounced", driver="mailgun")
    assert (entry.address, entry.reason, entry.driver) == ("ann@example.com", "bounced", "mailgun")
    assert entry.created.tzinfo is not None
    assert abs(entry.created.timestamp() - store.now()) < 5
    assert "ann@example.com" in suppressions
    assert suppressions.remove("ann@example.com") is True
    assert "ann@example.com" not in suppressions
    assert suppressions.remove("ann@example.com") is False


def test_case_and_idna_forms_are_one_entry(store: StateStore) -> None:
    suppressions = SuppressionList(store)
    suppressions.add("Ann <Ann@Bücher.Example>", reason="complained")
    for form in ("ann@bücher.example", "ANN@XN--BCHER-KVA.EXAMPLE", "ann@xn--bcher-kva.example"):
        assert form in suppressions
    assert [e.address for e in suppressions] == ["ann@xn--bcher-kva.example"]
    assert suppressions.remove("ANN@bücher.example") is True
    assert len(suppressions) == 0


def test_the_first_entry_is_kept(store: StateStore) -> None:
    suppressions = SuppressionList(store)
    first = suppressions.add("ann@example.com", reason="bounced", driver="sendgrid")
    again = suppressions.add("ANN@example.com", reason="complained", driver="ses")
    assert again == first
    assert len(suppressions) == 1


def test_iteration_is_sorted_and_entries_round_trip(store: StateStore) -> None:
    suppressions = SuppressionList(store)
    for address, reason in [("c@x.example", "manual"), ("a@x.example", "unsubscribed"),
                            ("b@x.example", "bounced")]:  # fmt: skip
        suppressions.add(address, reason=reason)
    entries = list(suppressions)
    assert [(e.address, e.reason) for e in entries] == [
        ("a@x.example", "unsubscribed"), ("b@x.example", "bounced"), ("c@x.example", "manual")
    ]  # fmt: skip
    assert entries[1] == suppressions.get("B@X.example")
    assert entries[1].to_dict()["created"].endswith("+00:00")


def test_suppressed_answers_for_many_addresses_at_once(store: StateStore) -> None:
    suppressions = SuppressionList(store)
    suppressions.add("b@x.example", reason="bounced")
    given = ["a@x.example", "Bee <B@X.EXAMPLE>", "not an address", "c@x.example"]
    assert suppressions.suppressed(given) == {"Bee <B@X.EXAMPLE>"}


def test_every_process_on_the_store_sees_the_list(request: pytest.FixtureRequest) -> None:
    url = store_url("sqlite", request)
    one, two = open_store(url, namespace="shared"), open_store(url, namespace="shared")
    try:
        SuppressionList(one).add("ann@example.com", reason="bounced")
        assert "ann@example.com" in SuppressionList(two)
    finally:
        one.close()
        two.close()


def test_bad_input() -> None:
    suppressions = SuppressionList(MemoryStore())
    with pytest.raises(ValueError, match="reason"):
        suppressions.add("ann@example.com", reason="because")
    with pytest.raises(ValueError):
        suppressions.add("not an address")
    assert "not an address" not in suppressions
    assert 42 not in suppressions
    assert suppressions.remove("not an address") is False
    with pytest.raises(ValueError):
        normalise_address("ann@example.com\r\nBcc: x@y.example")


def test_an_unreadable_entry_still_suppresses() -> None:
    store = MemoryStore()
    store.set("suppression:ann@example.com", b"garbage")
    [entry] = SuppressionList(store)
    assert entry == Suppression(
        "ann@example.com", "manual", None, dt.datetime.fromtimestamp(0, dt.timezone.utc)
    )
    assert "ann@example.com" in SuppressionList(store)
