"""Bundled drivers, one module per provider; each registers under ``mailfailover.drivers``."""
