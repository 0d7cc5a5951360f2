"""The one error of the config package (a leaf: `core`, `schema` and `sources` all raise it)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting has a value rsgi cannot use."""
