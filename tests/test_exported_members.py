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
