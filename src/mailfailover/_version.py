"""The package version, in a module of its own so that drivers can name it in their
User-Agent without importing the package root (which loads config, registry and mailer)."""

__version__ = "0.1.0"
