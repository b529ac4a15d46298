"""Errors of data-subject requests, each mapped to a problem document by the shared hierarchy."""

from __future__ import annotations

from infra.errors import InvalidField, NotFound, ReasonedConflict


class InvalidRequest(InvalidField):
    """A request is well formed but breaks a rule; the answer names the field and the rule."""


class RequestConflict(ReasonedConflict):
    """The request's state does not allow this (closed, already extended, deadline passed...)."""


class RequestNotFound(NotFound):
    """No such request, or not one the caller may see."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no data-subject request {request_id}", extra={"reason": "request_not_found"})


class SubjectNotFound(NotFound):
    """No such subject, or not one the caller may see (the two are not told apart)."""

    def __init__(self, kind: str, subject_id: str) -> None:
        super().__init__(f"no {kind} {subject_id}", extra={"reason": "subject_not_found"})
