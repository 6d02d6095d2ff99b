"""The words an error or a result may use are a closed set, checked where they are made."""

from __future__ import annotations

import typing

import pytest

from mailfailover.errors import REASONS, ProviderUnavailable, Reason
from mailfailover.results import OUTCOMES, Attempt, Outcome


def test_every_listed_reason_is_accepted() -> None:
    assert typing.get_args(Reason) == REASONS
    for reason in REASONS:
        assert ProviderUnavailable("x", reason=reason).reason == reason


def test_a_reason_outside_the_vocabulary_is_a_bug_caught_at_construction() -> None:
    with pytest.raises(ValueError, match="reason must be one of connection, timeout"):
        ProviderUnavailable("x", reason="flaky")  # type: ignore[arg-type]


def test_attempt_outcomes_are_a_closed_set() -> None:
    assert OUTCOMES == typing.get_args(Outcome) == ("sent", "unavailable", "rejected", "skipped")
    with pytest.raises(ValueError, match="outcome"):
        Attempt("d", "maybe")  # type: ignore[arg-type]


def test_reasons_are_documented() -> None:
    """docs/errors.md lists every reason (and only those) in its reason table."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "errors.md").read_text(encoding="utf-8")
    for reason in REASONS:
        assert f"`{reason}`" in text, reason
