"""Queries on projects, narrowed to what the calling principal may see.

A researcher sees the projects they belong to; the DPO, administrators and legal reviewers see
every project (legal reviewers only read: the endpoints that write need other roles); data
stewards see none, since running the enclave's intake needs no knowledge of research projects.
Anything outside the caller's view answers exactly like a project that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import ColumnElement, exists, false, func, select, true
from sqlalchemy.orm import Session

from access.accounts.models import Account
from access.audit.actions import Role
from access.principal import Principal
from access.projects.exceptions import ProjectNotFound
from access.projects.models import ProjectApproval, ProjectMember, ProjectStatus, ResearchProject

SEES_ALL = (Role.dpo, Role.admin, Role.legal_reviewer)


def _visible(principal: Principal) -> ColumnElement[bool]:
    if principal.has(*SEES_ALL):
        return true()
    if principal.has(Role.researcher):
        return exists().where(
            ProjectMember.project_id == ResearchProject.id,
            ProjectMember.account_id == principal.account_id,
        )
    return false()


def get_visible(
    session: Session, principal: Principal, project_id: str, *, for_update: bool = False
) -> ResearchProject:
    """The project if the principal may see it (locked for a state change if asked); else ProjectNotFound."""
    query = select(ResearchProject).where(ResearchProject.id == project_id, _visible(principal))
    if for_update:
        # Serialises concurrent decisions on one project (two approvers, approve vs. suspend).
        query = query.with_for_update(of=ResearchProject)
    project = session.scalars(query).one_or_none()
    if project is None:
        raise ProjectNotFound(project_id)
    return project


def list_visible(
    session: Session,
    principal: Principal,
    *,
    status: ProjectStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[ResearchProject], int]:
    """One page of the projects the principal may see, newest first, and how many there are in all."""
    conditions = [_visible(principal)]
    if status is not None:
        conditions.append(ResearchProject.status == status.value)
    total = session.scalar(select(func.count()).select_from(ResearchProject).where(*conditions)) or 0
    rows = session.scalars(
        select(ResearchProject)
        .where(*conditions)
        .order_by(ResearchProject.created_at.desc(), ResearchProject.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return rows, total


def members_of(session: Session, project_ids: Sequence[str]) -> dict[str, list[ProjectMember]]:
    """Members of several projects at once, by project id, owner first."""
    found: dict[str, list[ProjectMember]] = {project_id: [] for project_id in project_ids}
    for member in session.scalars(
        select(ProjectMember)
        .where(ProjectMember.project_id.in_(project_ids))
        .order_by(ProjectMember.role.desc(), ProjectMember.added_at, ProjectMember.account_id)
    ):
        found[member.project_id].append(member)
    return found


def approvals_of(session: Session, project_ids: Sequence[str]) -> dict[str, list[ProjectApproval]]:
    """Approvals of several projects at once, by project id, oldest first."""
    found: dict[str, list[ProjectApproval]] = {project_id: [] for project_id in project_ids}
    for approval in session.scalars(
        select(ProjectApproval)
        .where(ProjectApproval.project_id.in_(project_ids))
        .order_by(ProjectApproval.id)
    ):
        found[approval.project_id].append(approval)
    return found


def get_account(session: Session, account_id: str) -> Account | None:
    """The staff account with this id, if any."""
    return session.get(Account, account_id)


def is_member(session: Session, project_id: str, account_id: str) -> bool:
    """True when the account belongs to the project (as owner or member)."""
    return bool(
        session.scalar(
            select(
                exists().where(ProjectMember.project_id == project_id, ProjectMember.account_id == account_id)
            )
        )
    )


def approvals(
    session: Session, project_id: str, review_round: int | None = None
) -> Sequence[ProjectApproval]:
    """Approvals of one project, oldest first; only those of ``review_round`` when given."""
    query = select(ProjectApproval).where(ProjectApproval.project_id == project_id)
    if review_round is not None:
        query = query.where(ProjectApproval.review_round == review_round)
    return session.scalars(query.order_by(ProjectApproval.id)).all()


def lifecycle_candidates(session: Session, today: date) -> Sequence[ResearchProject]:
    """Projects whose dates call for a scheduled change today: start reached or end passed (locked)."""
    return session.scalars(
        select(ResearchProject)
        .where(
            (
                ResearchProject.status.in_(
                    [ProjectStatus.approved.value, ProjectStatus.active.value, ProjectStatus.suspended.value]
                )
                & (ResearchProject.granted_end_date < today)
            )
            | (
                (ResearchProject.status == ProjectStatus.approved.value)
                & (ResearchProject.start_date <= today)
            )
        )
        .order_by(ResearchProject.id)
        .with_for_update(skip_locked=True)
    ).all()
