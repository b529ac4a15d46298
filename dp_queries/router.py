"""HTTP endpoints of differentially private queries under /api/dp.

Researchers preview, release and read their projects' releases and budgets; the DPO reads every
project's budget and releases. Answers carry estimates with their accuracy, never rows or counts.
"""

from __future__ import annotations

from typing import Annotated, Any

import polars as pl
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from access.audit.actions import Role
from access.dependencies import DpoDep, ResearcherDep, require_roles
from access.principal import Principal
from dp_queries import budget, service
from dp_queries.models import DpRelease, QueryJob
from dp_queries.schemas import (
    BudgetRead,
    CapSet,
    JobRead,
    PreviewAnswer,
    QueryRequest,
    ReleaseAnswer,
    ReleasePage,
    ReleaseRead,
    StatisticAccuracy,
)
from enclave.objects.store import EncryptedStore
from infra.web.deps import SessionDep, SettingsDep

router = APIRouter(prefix="/api/dp", tags=["dp queries"])

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ProjectId = Annotated[str, Path(description="The project's id (a UUID).", pattern=UUID_PATTERN)]
ReleaseId = Annotated[str, Path(description="The release's id (a UUID).", pattern=UUID_PATTERN)]
JobId = Annotated[str, Path(description="The job's id (a UUID).", pattern=UUID_PATTERN)]
AccountId = Annotated[str, Path(description="The member's account id.", pattern=UUID_PATTERN)]
ReaderDep = Annotated[Principal, Depends(require_roles(Role.researcher, Role.dpo))]
"""Releases and budgets: the project's members (researchers), and the DPO for every project."""

PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The caller's role does not allow this."},
    404: {"description": "No such project, release or job, or not one of the caller's projects."},
    409: {
        "description": "Budget exhausted (reason budget_exhausted or researcher_cap_reached, with "
        "requested_epsilon and remaining_epsilon), or the project does not allow queries now."
    },
    422: {"description": "The spec breaks a rule; the answer names the field (errors[].field) and reason."},
}


def _store(request: Request) -> EncryptedStore:
    components = request.app.state.components
    return EncryptedStore(None, components.keys, components.storage)


def _release(row: DpRelease) -> ReleaseRead:
    return ReleaseRead(
        id=row.id,
        project_id=row.project_id,
        account_id=row.account_id,
        dataset=row.dataset_id,
        version=row.version,
        spec=row.spec,
        spec_hash=row.spec_hash,
        epsilon=budget.epsilon_text(row.epsilon),
        result=row.result,
        created_at=row.created_at,
    )


def _job(session: SessionDep, job: QueryJob) -> JobRead:
    release = session.get(DpRelease, job.release_id) if job.release_id else None
    return JobRead(
        id=job.id,
        project_id=job.project_id,
        dataset=job.dataset_id,
        spec_hash=job.spec_hash,
        status=job.status,
        attempts=job.attempts,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        release=_release(release) if release is not None else None,
        error=job.error,
    )


@router.post("/preview", response_model=PreviewAnswer, responses=PROBLEMS)
def preview_query(
    body: QueryRequest, principal: ResearcherDep, session: SessionDep, settings: SettingsDep
) -> PreviewAnswer:
    """What a query would cost (ε, derived from a target accuracy if asked) and how accurate it would be.

    Nothing is spent and no data is read; every rule a release checks is checked here too (a preview
    refused is not a refused release: it leaves no ledger entry, so a live preview does not flood it).
    """
    prepared = service.prepare(session, principal.account_id, body.project_id, body.spec)
    project = service.usable_project(session, principal.account_id, body.project_id)
    current = budget.balance(session, project, principal.account_id)
    return PreviewAnswer(
        project_id=prepared.project_id,
        dataset=prepared.dataset_id,
        version=prepared.version,
        spec_hash=prepared.spec_hash,
        epsilon=budget.epsilon_text(prepared.epsilon),
        statistics=[StatisticAccuracy.model_validate(s) for s in prepared.statistics],
        remaining_epsilon=budget.epsilon_text(current.remaining),
        available_epsilon=budget.epsilon_text(current.available),
        runs_as_job=prepared.rows > settings.dp_async_row_threshold,
    )


@router.post(
    "/queries",
    response_model=ReleaseAnswer,
    responses={
        **PROBLEMS,
        202: {
            "model": JobRead,
            "description": "A large dataset: the query runs on the worker; poll the job.",
        },
    },
)
def release_query(
    body: QueryRequest,
    request: Request,
    principal: ResearcherDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Any:
    """Release a differentially private answer, spending ε from the project's budget.

    An identical earlier query (same spec, dataset version and consenting subjects) returns the stored
    release at no cost. Queries on datasets above the configured size answer 202 with a job.
    """
    with service.refusals(session, principal.actor, body.project_id, body.spec) as asked:
        prepared = asked.note(service.prepare(session, principal.account_id, body.project_id, body.spec))
        if prepared.rows > settings.dp_async_row_threshold:
            job = service.queue_job(session, principal, prepared)
            session.flush()
            answer = _job(session, job)
            return JSONResponse(answer.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED)
        released = service.release_prepared(session, principal.actor, prepared, _store(request))
    return ReleaseAnswer(
        **_release(released.release).model_dump(),
        reused=released.reused,
        charged_epsilon=budget.epsilon_text(released.charged),
        remaining_epsilon=budget.epsilon_text(released.remaining),
    )


@router.get("/jobs/{job_id}", response_model=JobRead, responses=PROBLEMS)
def get_job(job_id: JobId, principal: ResearcherDep, session: SessionDep) -> JobRead:
    """A queued query: its status, and its release once done (or the refusal once failed)."""
    return _job(session, service.get_job(session, principal, job_id))


@router.get("/releases", response_model=ReleasePage, responses=PROBLEMS)
def list_releases(
    *,
    principal: ReaderDep,
    session: SessionDep,
    project_id: Annotated[str, Query(pattern=UUID_PATTERN, description="The project's id.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ReleasePage:
    """A project's releases, newest first (members and the DPO)."""
    rows, total = service.list_releases(session, principal, project_id, limit=limit, offset=offset)
    return ReleasePage(items=[_release(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/releases/{release_id}", response_model=ReleaseRead, responses=PROBLEMS)
def get_release(release_id: ReleaseId, principal: ReaderDep, session: SessionDep) -> ReleaseRead:
    """One release with its estimates and their accuracy."""
    return _release(service.get_release(session, principal, release_id))


@router.get(
    "/releases/{release_id}/csv",
    responses={**PROBLEMS, 200: {"content": {"text/csv": {}}, "description": "The estimates as CSV."}},
)
def release_csv(release_id: ReleaseId, principal: ReaderDep, session: SessionDep) -> Response:
    """The release's estimates as CSV: group keys, statistic, estimate, accuracy and the noise flag."""
    row = service.get_release(session, principal, release_id)
    rows = row.result.get("rows") or []
    text = pl.DataFrame(rows).write_csv() if rows else "statistic,estimate,accuracy_95,noise_dominates\n"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="release-{row.id}.csv"'},
    )


@router.get("/projects/{project_id}/budget", response_model=BudgetRead, responses=PROBLEMS)
def project_budget(project_id: ProjectId, principal: ReaderDep, session: SessionDep) -> BudgetRead:
    """The project's budget: granted, spent, remaining, per researcher and every spend over time."""
    return service.budget_of(session, service.visible_project(session, principal, project_id))


@router.put("/projects/{project_id}/caps/{account_id}", response_model=BudgetRead, responses=PROBLEMS)
def set_cap(
    project_id: ProjectId, account_id: AccountId, body: CapSet, principal: ReaderDep, session: SessionDep
) -> BudgetRead:
    """Cap what one member may spend within the project (null removes the cap): the DPO or the owner."""
    service.set_cap(session, principal, project_id, account_id, body.cap)
    return service.budget_of(session, service.visible_project(session, principal, project_id))


@router.get("/budgets", response_model=list[BudgetRead])
def all_budgets(principal: DpoDep, session: SessionDep) -> list[BudgetRead]:
    """Every project's budget over time (the DPO's view)."""
    return service.all_budgets(session)
