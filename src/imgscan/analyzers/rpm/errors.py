"""The one error the rpm database readers raise; the analyzer turns it into a warning."""

from __future__ import annotations


class RpmDbError(ValueError):
    """The database file is not of the expected kind, or is broken beyond reading."""
