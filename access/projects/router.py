"""HTTP endpoints of research projects under /api/projects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from access.dependencies import CurrentPrincipal, DpoDep, DpoOrAdminDep, ResearcherDep
from access.projects import decisions, service
from access.projects.agreement import current_agreement
from access.projects.models import ProjectStatus, ResearchProject
from access.projects.schemas import (
    AgreementRead,
    ApprovalCreate,
    ApprovalRead,
    DecisionNote,
    MemberAdd,
    MemberRead,
    ProjectCreate,
    ProjectPage,
    ProjectRead,
    ProjectUpdate,
)
from access.projects.service import ProjectView
from infra.web.deps import SessionDep, SettingsDep

router = APIRouter(prefix="/api/projects", tags=["projects"])

ProjectId = Annotated[
    str,
    Path(
        description="The project's id (a UUID).",
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    ),
]
PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The caller's role or place in the project does not allow this."},
    404: {"description": "No such project, or not one the caller may see."},
    409: {"description": "The project's current state (named in the answer) does not allow this."},
    422: {"description": "The input is invalid; the answer names the fields or the rule."},
}


def _read(project_view: ProjectView) -> ProjectRead:
    project = project_view.project
    return ProjectRead.model_validate(
        {
            **{
                name: getattr(project, name)
                for name in ProjectRead.model_fields
                if hasattr(project, name) and name not in {"members", "approvals"}
            },
            "datasets": project.requested_datasets,
            "variables": project.requested_variables,
            "approvals_required": project_view.approvals_required,
            "members": [MemberRead.model_validate(m) for m in project_view.members],
            "approvals": [ApprovalRead.model_validate(a) for a in project_view.approvals],
        }
    )


def _answer(session: SessionDep, settings: SettingsDep, project: ResearchProject) -> ProjectRead:
    return _read(service.view(session, project, settings.project_second_approval_epsilon))


@router.get("/agreement", response_model=AgreementRead)
def get_agreement(principal: CurrentPrincipal) -> AgreementRead:
    """The current data-use agreement: send back its version and SHA-256 to accept it."""
    agreement = current_agreement()
    return AgreementRead(version=agreement.version, sha256=agreement.sha256, text=agreement.text)


@router.post("", response_model=ProjectRead, status_code=status.HTTP_201_CREATED, responses=PROBLEMS)
def create_project(
    body: ProjectCreate, principal: ResearcherDep, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """Propose a project; it is saved as a draft owned by the caller."""
    return _answer(session, settings, service.create_project(session, principal, body))


@router.get("", response_model=ProjectPage)
def list_projects(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    status_filter: Annotated[ProjectStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ProjectPage:
    """The projects the caller may see, newest first: researchers see their own, reviewers all."""
    rows, total = service.list_projects(session, principal, status=status_filter, limit=limit, offset=offset)
    threshold = settings.project_second_approval_epsilon
    return ProjectPage(
        items=[_read(v) for v in service.views(session, rows, threshold)],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{project_id}", response_model=ProjectRead, responses=PROBLEMS)
def get_project(
    project_id: ProjectId, principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """One project, with its members and approvals."""
    return _answer(session, settings, service.get_project(session, principal, project_id))


@router.patch("/{project_id}", response_model=ProjectRead, responses=PROBLEMS)
def update_project(
    project_id: ProjectId,
    body: ProjectUpdate,
    principal: ResearcherDep,
    session: SessionDep,
    settings: SettingsDep,
) -> ProjectRead:
    """Change a draft, or a proposal sent back for changes (it becomes a draft again). Owner only."""
    return _answer(session, settings, service.update_project(session, principal, project_id, body))


@router.post("/{project_id}/submit", response_model=ProjectRead, responses=PROBLEMS)
def submit_project(
    project_id: ProjectId, principal: ResearcherDep, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """Send the proposal to the DPO (current agreement and valid training needed). Owner only."""
    return _answer(session, settings, service.submit_project(session, principal, project_id))


@router.post("/{project_id}/approve", response_model=ProjectRead, responses=PROBLEMS)
def approve_project(
    project_id: ProjectId,
    body: ApprovalCreate,
    principal: DpoOrAdminDep,
    session: SessionDep,
    settings: SettingsDep,
) -> ProjectRead:
    """Approve with a budget, a scope and an end date; large budgets need a second approver."""
    project = decisions.approve_project(
        session,
        principal,
        project_id,
        body,
        second_approval_epsilon=settings.project_second_approval_epsilon,
    )
    return _answer(session, settings, project)


@router.post("/{project_id}/reject", response_model=ProjectRead, responses=PROBLEMS)
def reject_project(
    project_id: ProjectId, body: DecisionNote, principal: DpoDep, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """Refuse a submitted proposal; the note is shown to the researchers."""
    return _answer(session, settings, decisions.reject_project(session, principal, project_id, body.note))


@router.post("/{project_id}/request-changes", response_model=ProjectRead, responses=PROBLEMS)
def request_changes(
    project_id: ProjectId, body: DecisionNote, principal: DpoDep, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """Send a submitted proposal back to its owner with the changes needed."""
    return _answer(session, settings, decisions.request_changes(session, principal, project_id, body.note))


@router.post("/{project_id}/suspend", response_model=ProjectRead, responses=PROBLEMS)
def suspend_project(
    project_id: ProjectId,
    body: DecisionNote,
    principal: DpoOrAdminDep,
    session: SessionDep,
    settings: SettingsDep,
) -> ProjectRead:
    """Suspend an approved or active project at once."""
    return _answer(session, settings, decisions.suspend_project(session, principal, project_id, body.note))


@router.post("/{project_id}/reinstate", response_model=ProjectRead, responses=PROBLEMS)
def reinstate_project(
    project_id: ProjectId, principal: DpoOrAdminDep, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """Lift a suspension."""
    return _answer(session, settings, decisions.reinstate_project(session, principal, project_id))


@router.post("/{project_id}/close", response_model=ProjectRead, responses=PROBLEMS)
def close_project(
    project_id: ProjectId, principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """End the project for good (its owner or the DPO)."""
    return _answer(session, settings, decisions.close_project(session, principal, project_id))


@router.post(
    "/{project_id}/members",
    response_model=ProjectRead,
    status_code=status.HTTP_201_CREATED,
    responses=PROBLEMS,
)
def add_member(
    project_id: ProjectId,
    body: MemberAdd,
    principal: ResearcherDep,
    session: SessionDep,
    settings: SettingsDep,
) -> ProjectRead:
    """Add a researcher account to a proposal that is still a draft. Owner only."""
    member = service.add_member(session, principal, project_id, body.account_id)
    return _answer(session, settings, service.get_project(session, principal, member.project_id))
