"""Proposals: drafting, updating, membership and submission, and what the API shows of a project.

State rules and ledger actions live in ``access.projects.rules``; reviewers' decisions and the
scheduled changes in ``access.projects.decisions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.principal import Principal
from access.projects import repository
from access.projects.agreement import current_agreement
from access.projects.exceptions import (
    InvalidProject,
    ProjectRuleBroken,
)
from access.projects.models import (
    SPECIAL_CATEGORY_PURPOSE,
    MemberRole,
    ProjectApproval,
    ProjectMember,
    ProjectStatus,
    ResearchProject,
)
from access.projects.rules import (
    MAX_DURATION,
    PROJECT_CREATED,
    PROJECT_MEMBER_ADDED,
    PROJECT_SUBMITTED,
    PROJECT_UPDATED,
    approvals_needed,
    epsilon_text,
    record_change,
    refuse,
    require_owner,
    require_state,
    utc_today,
)
from access.projects.schemas import (
    AgreementAcceptance,
    ProjectCreate,
    ProjectUpdate,
)
from infra.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class ProjectView:
    """A project with its members and approvals, as the API shows it."""

    project: ResearchProject
    members: Sequence[ProjectMember]
    approvals: Sequence[ProjectApproval]
    approvals_required: int


def _check_agreement(acceptance: AgreementAcceptance) -> None:
    current = current_agreement()
    if acceptance.version != current.version or acceptance.sha256 != current.sha256:
        raise ProjectRuleBroken(
            f"the data-use agreement accepted (version {acceptance.version}) is not the current one: "
            f"accept version {current.version} (sha256 {current.sha256})",
            code="agreement_outdated",
        )


def _check_proposal(project: ResearchProject) -> None:
    """Cross-field rules of a proposal, on the merged values of a create or an update."""
    if project.purpose == SPECIAL_CATEGORY_PURPOSE and project.special_category_condition is None:
        raise InvalidProject(
            "the special_category purpose needs a GDPR Art. 9(2) condition (special_category_condition)",
            code="special_category_condition_missing",
        )
    if project.purpose != SPECIAL_CATEGORY_PURPOSE and project.special_category_condition is not None:
        raise InvalidProject(
            "special_category_condition applies only to the special_category purpose; set it to null",
            code="special_category_condition_unexpected",
        )
    datasets = set(project.requested_datasets)
    strays = sorted(v for v in project.requested_variables if v.split(".", 1)[0] not in datasets)
    if strays:
        raise InvalidProject(
            f"variables must belong to a requested dataset: {', '.join(strays[:10])}",
            code="variable_outside_datasets",
        )
    if project.end_date <= project.start_date:
        raise InvalidProject("end_date must be after start_date", code="end_before_start")
    if project.end_date - project.start_date > MAX_DURATION:
        raise InvalidProject("a project may last at most five years", code="too_long")


def view(session: Session, project: ResearchProject, threshold: Decimal) -> ProjectView:
    """The project with its members and approvals."""
    return views(session, [project], threshold)[0]


def views(session: Session, projects: Sequence[ResearchProject], threshold: Decimal) -> list[ProjectView]:
    """Several projects with their members and approvals, in two queries."""
    ids = [p.id for p in projects]
    members = repository.members_of(session, ids)
    approvals = repository.approvals_of(session, ids)
    result = []
    for project in projects:
        # Until a grant exists, show what the pending (or, before any approval, the requested)
        # budget would need.
        current = [a for a in approvals[project.id] if a.review_round == project.review_round]
        epsilon = project.granted_epsilon
        if epsilon is None:
            epsilon = current[0].granted_epsilon if current else project.requested_epsilon
        result.append(
            ProjectView(
                project=project,
                members=members[project.id],
                approvals=approvals[project.id],
                approvals_required=approvals_needed(epsilon, threshold),
            )
        )
    return result


def get_project(session: Session, principal: Principal, project_id: str) -> ResearchProject:
    """One project the principal may see; ProjectNotFound otherwise (also for projects of others)."""
    return repository.get_visible(session, principal, project_id)


def list_projects(
    session: Session,
    principal: Principal,
    *,
    status: ProjectStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[ResearchProject], int]:
    """A page of the projects the principal may see, and their total count."""
    return repository.list_visible(session, principal, status=status, limit=limit, offset=offset)


def create_project(session: Session, principal: Principal, data: ProjectCreate) -> ResearchProject:
    """Save a researcher's proposal as a draft owned by them."""
    _check_agreement(data.agreement)
    now = datetime.now(UTC)
    project = ResearchProject(
        owner_id=principal.account_id,
        status=ProjectStatus.draft.value,
        title=data.title,
        purpose=data.purpose,
        lawful_basis=data.lawful_basis.value,
        special_category_condition=(
            data.special_category_condition.value if data.special_category_condition else None
        ),
        justification=data.justification,
        requested_datasets=list(data.datasets),
        requested_variables=list(data.variables),
        requested_epsilon=data.requested_epsilon,
        start_date=data.start_date,
        end_date=data.end_date,
        ethics_reference=data.ethics_reference,
        agreement_version=data.agreement.version,
        agreement_sha256=data.agreement.sha256,
        agreement_accepted_at=now,
        training_reference=data.training.reference,
        training_expires_on=data.training.expires_on,
        review_round=0,
        created_at=now,
        updated_at=now,
    )
    _check_proposal(project)
    session.add(project)
    session.flush()
    session.add(
        ProjectMember(
            project_id=project.id,
            account_id=principal.account_id,
            role=MemberRole.owner.value,
            added_by=principal.account_id,
            added_at=now,
        )
    )
    session.flush()
    record_change(
        session,
        principal.actor,
        PROJECT_CREATED,
        project,
        to_status=ProjectStatus.draft,
        epsilon=epsilon_text(project.requested_epsilon),
        agreement_version=project.agreement_version,
        agreement_sha256=project.agreement_sha256,
    )
    log.info("project.created", project_id=project.id)
    return project


_UPDATABLE = {
    "title": "title",
    "purpose": "purpose",
    "lawful_basis": "lawful_basis",
    "special_category_condition": "special_category_condition",
    "datasets": "requested_datasets",
    "variables": "requested_variables",
    "justification": "justification",
    "requested_epsilon": "requested_epsilon",
    "start_date": "start_date",
    "end_date": "end_date",
    "ethics_reference": "ethics_reference",
}


def update_project(
    session: Session, principal: Principal, project_id: str, data: ProjectUpdate
) -> ResearchProject:
    """Change a draft (or a proposal sent back for changes, which becomes a draft again)."""
    project = repository.get_visible(session, principal, project_id, for_update=True)
    current = require_state(session, principal, PROJECT_UPDATED, project, "update")
    require_owner(session, principal, PROJECT_UPDATED, project, "update")
    now = datetime.now(UTC)
    for field in data.model_fields_set:
        value = getattr(data, field)
        if field == "agreement":
            if value is None:
                raise InvalidProject("agreement cannot be removed", code="agreement_missing")
            _check_agreement(value)
            project.agreement_version = value.version
            project.agreement_sha256 = value.sha256
            project.agreement_accepted_at = now
        elif field == "training":
            if value is None:
                raise InvalidProject("training cannot be removed", code="training_missing")
            project.training_reference = value.reference
            project.training_expires_on = value.expires_on
        elif field == "special_category_condition":
            project.special_category_condition = value.value if value is not None else None
        elif value is None:
            raise InvalidProject(f"{field} cannot be null", code="field_missing")
        elif isinstance(value, StrEnum):
            setattr(project, _UPDATABLE[field], value.value)
        else:
            setattr(project, _UPDATABLE[field], list(value) if isinstance(value, list) else value)
    _check_proposal(project)
    project.status = ProjectStatus.draft.value
    project.updated_at = now
    session.flush()
    record_change(
        session,
        principal.actor,
        PROJECT_UPDATED,
        project,
        from_status=current,
        to_status=ProjectStatus.draft,
        epsilon=epsilon_text(project.requested_epsilon),
        agreement_version=project.agreement_version,
        agreement_sha256=project.agreement_sha256,
    )
    return project


def submit_project(
    session: Session, principal: Principal, project_id: str, *, today: date | None = None
) -> ResearchProject:
    """Send a draft to the DPO: the agreement must be current and the training valid."""
    today = today or utc_today()
    project = repository.get_visible(session, principal, project_id, for_update=True)
    current = require_state(session, principal, PROJECT_SUBMITTED, project, "submit")
    require_owner(session, principal, PROJECT_SUBMITTED, project, "submit")
    agreement = current_agreement()
    if project.agreement_version != agreement.version or project.agreement_sha256 != agreement.sha256:
        refuse(
            session,
            principal,
            PROJECT_SUBMITTED,
            project,
            ProjectRuleBroken(
                f"the data-use agreement was accepted in version {project.agreement_version}, "
                f"which is outdated: accept version {agreement.version} first",
                code="agreement_outdated",
            ),
        )
    if project.training_expires_on < today:
        refuse(
            session,
            principal,
            PROJECT_SUBMITTED,
            project,
            ProjectRuleBroken(
                f"the training attestation expired on {project.training_expires_on.isoformat()}: "
                "renew it before submitting",
                code="training_expired",
            ),
        )
    if project.end_date < today:
        refuse(
            session,
            principal,
            PROJECT_SUBMITTED,
            project,
            ProjectRuleBroken("the requested end date has passed", code="end_date_passed"),
        )
    project.status = ProjectStatus.submitted.value
    project.review_round += 1
    project.submitted_at = datetime.now(UTC)
    session.flush()
    record_change(
        session,
        principal.actor,
        PROJECT_SUBMITTED,
        project,
        from_status=current,
        to_status=ProjectStatus.submitted,
        review_round=project.review_round,
        epsilon=epsilon_text(project.requested_epsilon),
        agreement_version=project.agreement_version,
        agreement_sha256=project.agreement_sha256,
    )
    return project


def add_member(session: Session, principal: Principal, project_id: str, account_id: str) -> ProjectMember:
    """Add a researcher account to a proposal that is still being written."""
    project = repository.get_visible(session, principal, project_id, for_update=True)
    require_state(session, principal, PROJECT_MEMBER_ADDED, project, "add a member to")
    require_owner(session, principal, PROJECT_MEMBER_ADDED, project, "add a member to")
    account = repository.get_account(session, account_id)
    # One answer for "no such account" and "not a researcher": a researcher learns nothing more.
    if account is None or account.status != "active" or Role.researcher.value not in (account.roles or []):
        refuse(
            session,
            principal,
            PROJECT_MEMBER_ADDED,
            project,
            InvalidProject(
                f"account {account_id} is not an active researcher account", code="not_a_researcher"
            ),
        )
    if repository.is_member(session, project.id, account_id):
        refuse(
            session,
            principal,
            PROJECT_MEMBER_ADDED,
            project,
            ProjectRuleBroken(f"account {account_id} is already a member", code="already_member"),
        )
    member = ProjectMember(
        project_id=project.id,
        account_id=account_id,
        role=MemberRole.member.value,
        added_by=principal.account_id,
        added_at=datetime.now(UTC),
    )
    session.add(member)
    session.flush()
    record_change(session, principal.actor, PROJECT_MEMBER_ADDED, project, member_id=account_id)
    return member
