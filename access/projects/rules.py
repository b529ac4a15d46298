"""Shared rules of the projects domain: states, ledger actions and the checks every step makes.

States::

    draft → submitted → approved → active ⇄ suspended      (suspend / reinstate, by a DPO or admin)
    submitted → rejected, or → changes_requested → draft (on update) → submitted again
    approved, active, suspended → expired                 (the day after the end date, scheduled)
    any state but rejected, expired and closed → closed   (by the owner or the DPO)

Every change is a ledger entry carrying the project id; refused attempts leave a ``denied`` entry.
End dates are inclusive last days of access in UTC: a project expires the day after.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from sqlalchemy.orm import Session

from access.audit.actions import DecimalText, Details, Identifier, Sha256Hex, register_action
from access.audit.service import Actor, record, record_denied
from access.principal import Principal
from access.projects import repository
from access.projects.exceptions import (
    IllegalTransition,
    NotAllowedOnProject,
)
from access.projects.models import (
    ProjectStatus,
    ResearchProject,
)
from infra.errors import EnclaveError

MAX_DURATION = timedelta(days=5 * 365 + 1)
"""Longest project: five years (one leap day included)."""
DEFAULT_SECOND_APPROVAL_EPSILON = Decimal("2.0")


class ProjectDetails(Details):
    """Ledger details of a project action: states, round, budget and hashes; never free text."""

    from_status: ProjectStatus | None = None
    to_status: ProjectStatus | None = None
    review_round: int | None = None
    epsilon: DecimalText | None = None
    end_date: date | None = None
    agreement_version: Identifier | None = None
    agreement_sha256: Sha256Hex | None = None
    approvals: int | None = None
    approvals_required: int | None = None
    member_id: Identifier | None = None


PROJECT_CREATED = register_action("project.created", ProjectDetails)
PROJECT_UPDATED = register_action("project.updated", ProjectDetails)
PROJECT_SUBMITTED = register_action("project.submitted", ProjectDetails)
PROJECT_APPROVAL_RECORDED = register_action("project.approval_recorded", ProjectDetails)
PROJECT_APPROVED = register_action("project.approved", ProjectDetails)
PROJECT_REJECTED = register_action("project.rejected", ProjectDetails)
PROJECT_CHANGES_REQUESTED = register_action("project.changes_requested", ProjectDetails)
PROJECT_ACTIVATED = register_action("project.activated", ProjectDetails)
PROJECT_SUSPENDED = register_action("project.suspended", ProjectDetails)
PROJECT_REINSTATED = register_action("project.reinstated", ProjectDetails)
PROJECT_CLOSED = register_action("project.closed", ProjectDetails)
PROJECT_EXPIRED = register_action("project.expired", ProjectDetails)
PROJECT_MEMBER_ADDED = register_action("project.member_added", ProjectDetails)

S = ProjectStatus
EDITABLE = frozenset({S.draft, S.changes_requested})
ALLOWED_FROM: dict[str, frozenset[ProjectStatus]] = {
    "update": EDITABLE,
    "submit": EDITABLE,
    "add a member to": EDITABLE,
    "approve": frozenset({S.submitted}),
    "reject": frozenset({S.submitted}),
    "request changes to": frozenset({S.submitted}),
    "suspend": frozenset({S.approved, S.active}),
    "reinstate": frozenset({S.suspended}),
    "close": frozenset({S.draft, S.submitted, S.changes_requested, S.approved, S.active, S.suspended}),
}
"""Which states each step may start from; anything else is a 409 naming the current state."""


def utc_today() -> date:
    """Today's date in UTC, the calendar every project date is read in."""
    return datetime.now(UTC).date()


def epsilon_text(value: Decimal) -> str:
    """ε as plain decimal text without trailing zeros (the ledger's DecimalText)."""
    return format(value.normalize(), "f")


def grants_access(project: ResearchProject, today: date | None = None) -> bool:
    """True when the project may be used today: active and within its granted dates.

    Checks the dates too, so access ends on time even if the scheduled job has not yet run.
    """
    today = today or utc_today()
    return (
        project.status == ProjectStatus.active.value
        and project.granted_end_date is not None
        and project.start_date <= today <= project.granted_end_date
    )


def approvals_needed(epsilon: Decimal, threshold: Decimal) -> int:
    """How many distinct approvers a grant of ``epsilon`` needs."""
    return 2 if epsilon > threshold else 1


def record_change(
    session: Session, actor: Actor, action: str, project: ResearchProject, **details: Any
) -> None:
    """Append the ledger entry of one change to ``project``, in the caller's transaction."""
    record(
        session,
        actor,
        action,
        target_type="project",
        target_id=project.id,
        project_id=project.id,
        details=ProjectDetails(**details),
    )


def refuse(
    session: Session, principal: Principal, action: str, project: ResearchProject, error: EnclaveError
) -> NoReturn:
    """Leave a denied entry for the attempt (it outlives the request's rollback), then raise."""
    code = str(getattr(error, "code", "refused"))
    record_denied(
        session,
        principal.actor,
        action,
        error=code,
        target_type="project",
        target_id=project.id,
        project_id=project.id,
    )
    raise error


def require_state(
    session: Session, principal: Principal, action: str, project: ResearchProject, step: str
) -> ProjectStatus:
    """Return the current state if ``step`` may start from it; otherwise refuse with a 409."""
    current = ProjectStatus(project.status)
    allowed = ALLOWED_FROM[step]
    if current not in allowed:
        refuse(
            session,
            principal,
            action,
            project,
            IllegalTransition(step, current.value, frozenset(s.value for s in allowed)),
        )
    return current


def require_owner(
    session: Session, principal: Principal, action: str, project: ResearchProject, step: str
) -> None:
    """Refuse with a 403 unless the principal owns the project."""
    if project.owner_id != principal.account_id:
        refuse(
            session,
            principal,
            action,
            project,
            NotAllowedOnProject(f"only the project's owner may {step} it", code="owner_only"),
        )


def require_outsider(session: Session, principal: Principal, action: str, project: ResearchProject) -> None:
    """Refuse with a 403 when the principal belongs to the project (no one decides on their own)."""
    if repository.is_member(session, project.id, principal.account_id):
        refuse(
            session,
            principal,
            action,
            project,
            NotAllowedOnProject(
                "you belong to this project, so another reviewer must decide on it", code="own_project"
            ),
        )
