"""Exceptions a user can act on.

Each carries a one-line message and, where there is one, a ``hint``: the way
out (another source, a flag, a file to create). The CLI prints both without a
traceback; anything that is not a :class:`StocktrendError` is a bug and keeps
its traceback.
"""

from __future__ import annotations


class StocktrendError(Exception):
    """Base class: a problem with input, environment or configuration, not a bug."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.hint})" if self.hint else base


class ConfigError(StocktrendError):
    """A setting or argument that cannot be used (bad date, unknown source spec)."""


class DataSourceError(StocktrendError):
    """A price source failed for every ticker asked of it."""


class SourceUnavailableError(DataSourceError):
    """The source cannot be reached at all (no network, service down)."""


class PriceValidationError(StocktrendError):
    """A price frame that cannot be used at all (wrong columns or dtypes)."""


class CheckpointError(StocktrendError):
    """A checkpoint that is missing, malformed, foreign, unsafe or of the wrong shape."""


class StorageError(StocktrendError):
    """A prediction store (Parquet dataset or database) cannot be written or read."""
