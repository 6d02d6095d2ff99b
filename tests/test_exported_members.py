"""The package's public surface is explicit and sorted."""

import mailfailover


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, and every name in it exists."""
    assert mailfailover.__all__ == sorted(mailfailover.__all__)
    for name in mailfailover.__all__:
        assert hasattr(mailfailover, name), name


def test_public_names_are_exported() -> None:
    """Every public class or function defined in the package root is in __all__."""
    public = {
        name
        for name, value in vars(mailfailover).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("mailfailover")
    }
    assert public <= set(mailfailover.__all__)


def test_version_is_a_string() -> None:
    assert isinstance(mailfailover.__version__, str)
    assert mailfailover.__version__.count(".") >= 2


def test_driver_authors_get_what_bundled_drivers_use() -> None:
    """``mailfailover.drivers`` exports, sorted, every helper a bundled driver uses, so a
    plugin can do what a bundled driver does."""
    import mailfailover.drivers as drivers

    # sorted as ruff's RUF022 sorts: CONSTANTS, then Classes, then functions
    kinds = sorted(drivers.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert drivers.__all__ == kinds
    for name in drivers.__all__:
        assert getattr(drivers, name) is not None, name
    needed = {
        "B64", "HTTP_SETTINGS", "HttpDriver", "HttpRequest", "HttpResponse", "MAX_RETRY_AFTER",
        "is_account_problem", "parse_retry_after", "remaining_time", "require", "seconds_until",
    }  # fmt: skip
    assert needed <= set(drivers.__all__)
