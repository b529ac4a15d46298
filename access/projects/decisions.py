"""Reviewers' decisions on projects and the scheduled changes of approved ones.

Decisions taken here, so every caller gets the same answer:

* the granted ε never exceeds the requested ε: a researcher who needs more asks again (the DPO
  requests changes), so the budget a researcher accepted is the ceiling of what they can spend;
* likewise the granted datasets and variables are a subset of those requested, every granted
  variable belongs to a granted dataset, and the granted end date is not later than requested;
* a grant above the second-approval threshold needs two approvals of the same terms in the same
  review round, by two different people, the first of whom holds the DPO role;
* nobody takes a decision (approve, reject, request changes, reinstate) on a project they belong
  to; suspension is always allowed, since it only ever reduces access.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.audit.service import Actor
from access.principal import Principal
from access.projects import repository
from access.projects.exceptions import (
    InvalidProject,
    NotAllowedOnProject,
    ProjectRuleBroken,
)
from access.projects.models import (
    ProjectApproval,
    ProjectStatus,
    ResearchProject,
)
from access.projects.rules import (
    DEFAULT_SECOND_APPROVAL_EPSILON,
    PROJECT_ACTIVATED,
    PROJECT_APPROVAL_RECORDED,
    PROJECT_APPROVED,
    PROJECT_CHANGES_REQUESTED,
    PROJECT_CLOSED,
    PROJECT_EXPIRED,
    PROJECT_REINSTATED,
    PROJECT_REJECTED,
    PROJECT_SUSPENDED,
    approvals_needed,
    epsilon_text,
    record_change,
    refuse,
    require_outsider,
    require_state,
    utc_today,
)
from access.projects.schemas import (
    ApprovalCreate,
)
from infra.logging import get_logger

log = get_logger(__name__)


def _check_terms(project: ResearchProject, terms: ApprovalCreate, today: date) -> None:
    if terms.granted_epsilon > project.requested_epsilon:
        raise InvalidProject(
            f"granted_epsilon {epsilon_text(terms.granted_epsilon)} exceeds the requested "
            f"{epsilon_text(project.requested_epsilon)}; request changes if more is needed",
            code="epsilon_above_request",
        )
    extra_datasets = sorted(set(terms.datasets) - set(project.requested_datasets))
    if extra_datasets:
        raise InvalidProject(
            f"datasets not requested cannot be granted: {', '.join(extra_datasets[:10])}",
            code="dataset_not_requested",
        )
    extra_variables = sorted(set(terms.variables) - set(project.requested_variables))
    if extra_variables:
        raise InvalidProject(
            f"variables not requested cannot be granted: {', '.join(extra_variables[:10])}",
            code="variable_not_requested",
        )
    strays = sorted(v for v in terms.variables if v.split(".", 1)[0] not in set(terms.datasets))
    if strays:
        raise InvalidProject(
            f"granted variables must belong to a granted dataset: {', '.join(strays[:10])}",
            code="variable_outside_datasets",
        )
    if terms.end_date <= project.start_date:
        raise InvalidProject("end_date must be after the project's start_date", code="end_before_start")
    if terms.end_date > project.end_date:
        raise InvalidProject(
            f"end_date may not be later than the requested {project.end_date.isoformat()}",
            code="end_after_request",
        )
    if terms.end_date < today:
        raise InvalidProject("end_date has already passed", code="end_date_passed")


def _same_terms(approval: ProjectApproval, terms: ApprovalCreate) -> bool:
    return (
        approval.granted_epsilon == terms.granted_epsilon
        and set(approval.allowed_datasets) == set(terms.datasets)
        and set(approval.allowed_variables) == set(terms.variables)
        and approval.end_date == terms.end_date
    )


def approve_project(
    session: Session,
    principal: Principal,
    project_id: str,
    terms: ApprovalCreate,
    *,
    second_approval_epsilon: Decimal = DEFAULT_SECOND_APPROVAL_EPSILON,
    today: date | None = None,
) -> ResearchProject:
    """Record an approval; the project is approved once enough distinct approvers agreed on the terms."""
    today = today or utc_today()
    project = repository.get_visible(session, principal, project_id, for_update=True)
    require_state(session, principal, PROJECT_APPROVED, project, "approve")
    require_outsider(session, principal, PROJECT_APPROVED, project)
    try:
        _check_terms(project, terms, today)
    except InvalidProject as error:
        refuse(session, principal, PROJECT_APPROVED, project, error)
    if project.training_expires_on < today:
        refuse(
            session,
            principal,
            PROJECT_APPROVED,
            project,
            ProjectRuleBroken(
                "the owner's training attestation has expired; request changes instead",
                code="training_expired",
            ),
        )
    earlier = repository.approvals(session, project.id, project.review_round)
    if not earlier and not principal.has(Role.dpo):
        refuse(
            session,
            principal,
            PROJECT_APPROVED,
            project,
            NotAllowedOnProject("the first approval must come from the DPO", code="first_approval_needs_dpo"),
        )
    if any(a.approver_id == principal.account_id for a in earlier):
        refuse(
            session,
            principal,
            PROJECT_APPROVED,
            project,
            ProjectRuleBroken(
                "you already approved this project; a second approval must come from someone else",
                code="same_approver",
            ),
        )
    if earlier and not _same_terms(earlier[0], terms):
        refuse(
            session,
            principal,
            PROJECT_APPROVED,
            project,
            ProjectRuleBroken(
                "the second approval must confirm the terms of the first; reject or request changes instead",
                code="terms_differ",
            ),
        )
    now = datetime.now(UTC)
    session.add(
        ProjectApproval(
            project_id=project.id,
            review_round=project.review_round,
            approver_id=principal.account_id,
            approver_role=principal.primary_role.value,
            granted_epsilon=terms.granted_epsilon,
            allowed_datasets=list(terms.datasets),
            allowed_variables=list(terms.variables),
            end_date=terms.end_date,
            approved_at=now,
        )
    )
    session.flush()
    given = len(earlier) + 1
    required = approvals_needed(terms.granted_epsilon, second_approval_epsilon)
    common = {
        "review_round": project.review_round,
        "epsilon": epsilon_text(terms.granted_epsilon),
        "end_date": terms.end_date,
        "approvals": given,
        "approvals_required": required,
    }
    if given < required:
        record_change(
            session,
            principal.actor,
            PROJECT_APPROVAL_RECORDED,
            project,
            from_status=ProjectStatus.submitted,
            to_status=ProjectStatus.submitted,
            **common,
        )
        return project
    project.status = ProjectStatus.approved.value
    project.granted_epsilon = terms.granted_epsilon
    project.allowed_datasets = list(terms.datasets)
    project.allowed_variables = list(terms.variables)
    project.granted_end_date = terms.end_date
    project.approved_at = now
    project.decision_note = None
    session.flush()
    record_change(
        session,
        principal.actor,
        PROJECT_APPROVED,
        project,
        from_status=ProjectStatus.submitted,
        to_status=ProjectStatus.approved,
        **common,
    )
    if project.start_date <= today:
        _activate(session, principal.actor, project)
    return project


def _activate(session: Session, actor: Actor, project: ResearchProject) -> None:
    previous = ProjectStatus(project.status)
    project.status = ProjectStatus.active.value
    session.flush()
    record_change(
        session, actor, PROJECT_ACTIVATED, project, from_status=previous, to_status=ProjectStatus.active
    )


def _decide(
    session: Session,
    principal: Principal,
    project_id: str,
    *,
    action: str,
    step: str,
    to: ProjectStatus,
    note: str,
) -> ResearchProject:
    project = repository.get_visible(session, principal, project_id, for_update=True)
    current = require_state(session, principal, action, project, step)
    require_outsider(session, principal, action, project)
    project.status = to.value
    project.decision_note = note
    session.flush()
    record_change(
        session,
        principal.actor,
        action,
        project,
        from_status=current,
        to_status=to,
        review_round=project.review_round,
    )
    return project


def reject_project(session: Session, principal: Principal, project_id: str, note: str) -> ResearchProject:
    """Refuse a submitted proposal for good; the note tells the researchers why."""
    return _decide(
        session,
        principal,
        project_id,
        action=PROJECT_REJECTED,
        step="reject",
        to=ProjectStatus.rejected,
        note=note,
    )


def request_changes(session: Session, principal: Principal, project_id: str, note: str) -> ResearchProject:
    """Send a submitted proposal back to its owner; approvals of this round no longer count."""
    return _decide(
        session,
        principal,
        project_id,
        action=PROJECT_CHANGES_REQUESTED,
        step="request changes to",
        to=ProjectStatus.changes_requested,
        note=note,
    )


def suspend_project(session: Session, principal: Principal, project_id: str, note: str) -> ResearchProject:
    """Stop an approved or active project at once; it stays suspended until reinstated."""
    project = repository.get_visible(session, principal, project_id, for_update=True)
    current = require_state(session, principal, PROJECT_SUSPENDED, project, "suspend")
    project.status = ProjectStatus.suspended.value
    project.decision_note = note
    session.flush()
    record_change(
        session,
        principal.actor,
        PROJECT_SUSPENDED,
        project,
        from_status=current,
        to_status=ProjectStatus.suspended,
    )
    log.info("project.suspended", project_id=project.id)
    return project


def reinstate_project(
    session: Session, principal: Principal, project_id: str, *, today: date | None = None
) -> ResearchProject:
    """Lift a suspension: active again (or approved, when the start date is still to come)."""
    today = today or utc_today()
    project = repository.get_visible(session, principal, project_id, for_update=True)
    current = require_state(session, principal, PROJECT_REINSTATED, project, "reinstate")
    require_outsider(session, principal, PROJECT_REINSTATED, project)
    if project.granted_end_date is not None and project.granted_end_date < today:
        refuse(
            session,
            principal,
            PROJECT_REINSTATED,
            project,
            ProjectRuleBroken(
                "the project's end date has passed; it cannot be reinstated", code="end_date_passed"
            ),
        )
    to = ProjectStatus.active if project.start_date <= today else ProjectStatus.approved
    project.status = to.value
    project.decision_note = None
    session.flush()
    record_change(session, principal.actor, PROJECT_REINSTATED, project, from_status=current, to_status=to)
    return project


def close_project(session: Session, principal: Principal, project_id: str) -> ResearchProject:
    """End a project for good, by its owner or the DPO."""
    project = repository.get_visible(session, principal, project_id, for_update=True)
    current = require_state(session, principal, PROJECT_CLOSED, project, "close")
    if project.owner_id != principal.account_id and not principal.has(Role.dpo):
        refuse(
            session,
            principal,
            PROJECT_CLOSED,
            project,
            NotAllowedOnProject("only the project's owner or the DPO may close it", code="owner_or_dpo_only"),
        )
    project.status = ProjectStatus.closed.value
    session.flush()
    record_change(
        session, principal.actor, PROJECT_CLOSED, project, from_status=current, to_status=ProjectStatus.closed
    )
    return project


@dataclass(frozen=True)
class LifecycleResult:
    """What one run of the scheduled job changed."""

    activated: list[str]
    expired: list[str]


def run_lifecycle(session: Session, *, today: date | None = None) -> LifecycleResult:
    """Activate approved projects whose start date came, expire those past their end date. Idempotent."""
    today = today or utc_today()
    result = LifecycleResult(activated=[], expired=[])
    for project in repository.lifecycle_candidates(session, today):
        previous = ProjectStatus(project.status)
        if project.granted_end_date is not None and project.granted_end_date < today:
            project.status = ProjectStatus.expired.value
            session.flush()
            record_change(
                session,
                Actor.system(),
                PROJECT_EXPIRED,
                project,
                from_status=previous,
                to_status=ProjectStatus.expired,
                end_date=project.granted_end_date,
            )
            result.expired.append(project.id)
        elif previous is ProjectStatus.approved and project.start_date <= today:
            _activate(session, Actor.system(), project)
            result.activated.append(project.id)
    if result.activated or result.expired:
        log.info("project.lifecycle_applied", activated=len(result.activated), expired=len(result.expired))
    return result
