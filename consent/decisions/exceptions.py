"""Errors of decisions and status, each with a machine-readable ``reason``."""

from __future__ import annotations

from infra.errors import Conflict, NotFound, ValidationFailed


class SubjectNotFound(NotFound):
    """No such student or teacher (or not one the caller may see)."""

    def __init__(self, subject_id: str) -> None:
        super().__init__(f"no subject {subject_id}", extra={"reason": "unknown_subject"})


class InvalidDecision(ValidationFailed):
    """The decision is well formed but does not fit the form, the subject or the rule."""

    def __init__(self, field: str, detail: str, *, code: str) -> None:
        super().__init__(
            f"{field}: {detail}",
            extra={"reason": code, "errors": [{"field": f"body.{field}", "message": detail, "type": code}]},
        )
        self.code = code


class DecisionConflict(Conflict):
    """The decision clashes with the state of things (a newer form, the wrong decider for the age...)."""

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail, extra={"reason": code})
        self.code = code
