"""Errors of the invitation letters, mapped to problem documents by the shared hierarchy."""

from __future__ import annotations

from infra.errors import InvalidField


class InvalidLetter(InvalidField):
    """A letter cannot be printed as given (no letters, unknown kind, empty link or code...)."""
