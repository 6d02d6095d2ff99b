"""to_mime() caches the email package's header classes (a speed-up, see docs/benchmarks.md);
the output and a caller's own policy must be exactly what they were."""

from __future__ import annotations

import email.policy
import re
from email.headerregistry import HeaderRegistry, UnstructuredHeader

from mailfailover.message import _with_header_cache
from mailfailover.testing import full_message

_VARYING = re.compile(rb"(Date: [^\r]*|boundary=\"[^\"]*\"|=+\d+==+-*)")


class _Uncached(HeaderRegistry):
    """The standard registry under another type, which to_mime() leaves uncached."""


def test_the_cached_registry_builds_the_same_bytes() -> None:
    message = full_message()
    for policy in (email.policy.SMTP, email.policy.SMTPUTF8,
                   email.policy.SMTP.clone(cte_type="7bit")):  # fmt: skip
        fast = message.to_mime(policy=policy).as_bytes()
        uncached = policy.clone(header_factory=_Uncached())
        assert _with_header_cache(uncached) is uncached
        plain = message.to_mime(policy=uncached)
        assert _VARYING.sub(b"", fast) == _VARYING.sub(b"", plain.as_bytes())


def test_a_callers_own_header_registry_is_kept() -> None:
    class Shouty(UnstructuredHeader):
        @classmethod
        def parse(cls, value: str, kwds: dict) -> None:  # type: ignore[override]
            super().parse(value.upper(), kwds)

    registry = HeaderRegistry()
    registry.map_to_type("x-campaign", Shouty)
    policy = email.policy.SMTP.clone(header_factory=registry)
    assert _with_header_cache(policy) is policy
    mime = full_message().to_mime(policy=policy)
    assert mime["X-Campaign"] == "SPRING-2026"
