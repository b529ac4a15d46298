"""Errors of the projects domain, each mapped to a problem document by the shared hierarchy."""

from __future__ import annotations

from infra.errors import Conflict, Forbidden, NotFound, ReasonedConflict, ValidationFailed


class ProjectNotFound(NotFound):
    """The project does not exist, or the caller may not know that it exists."""

    def __init__(self, project_id: str) -> None:
        super().__init__(f"project {project_id} not found")


class IllegalTransition(Conflict):
    """The project's current state does not allow the requested step."""

    def __init__(self, action: str, current: str, allowed_from: frozenset[str]) -> None:
        allowed = ", ".join(sorted(allowed_from))
        super().__init__(
            f"cannot {action} a project that is {current}; allowed only when it is: {allowed}",
            extra={"current_status": current, "reason": "illegal_transition"},
        )
        self.current = current
        self.code = "illegal_transition"


class ProjectRuleBroken(ReasonedConflict):
    """A rule of the approval process refuses the request in the project's current state."""


class NotAllowedOnProject(Forbidden):
    """The caller can see the project but may not do this to it."""

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail, extra={"reason": code})
        self.code = code


class InvalidProject(ValidationFailed):
    """The proposal or decision is well formed but inconsistent."""

    def __init__(self, detail: str, *, code: str) -> None:
        super().__init__(detail, extra={"reason": code})
        self.code = code
