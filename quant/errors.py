"""Errors raised on bad input files and failed downloads.

Both are one-line messages that name the file (or the package) and what is wrong, so
the CLI can print them as they are.
"""

from __future__ import annotations

__all__ = ["InputError", "FetchError"]


class InputError(ValueError):
    """A model or tensor file cannot be read, or holds nothing we can quantize."""


class FetchError(RuntimeError):
    """A reference model could not be downloaded or does not match its pinned hash."""
