"""Errors of decisions and status, each with a machine-readable ``reason``."""

from __future__ import annotations

from infra.errors import InvalidField, NotFound, ReasonedConflict


class SubjectNotFound(NotFound):
    """No such student or teacher (or not one the caller may see)."""

    def __init__(self, subject_id: str) -> None:
        super().__init__(f"no subject {subject_id}", extra={"reason": "unknown_subject"})


class InvalidDecision(InvalidField):
    """The decision is well formed but does not fit the form, the subject or the rule."""


class DecisionConflict(ReasonedConflict):
    """The decision clashes with the state of things (a newer form, the wrong decider for the age...)."""
