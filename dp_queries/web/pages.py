"""The researcher portal and the DPO's privacy-budget view: staff pages under ``/staff``.

* ``/staff/research``: a researcher's projects with their budgets;
* ``/staff/research/query``: the query builder (project and dataset, statistic, variables,
  group-by, filters, ε or a target accuracy) with the accuracy preview; releasing shows the result;
* ``/staff/research/releases/{id}``: a result as a chart with 95 % error bars and a table, with its
  CSV download;
* ``/staff/budgets``: every project's budget over time, for the DPO.

They share the staff sign-in (the session cookie holds the access token; every POST carries the
signed CSRF token) and work without JavaScript: the one script only keeps the preview live as the
researcher types (it posts the form to ``/staff/research/preview``, same origin, same CSRF token).
The pages are in English (staff tooling).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from access.accounts.models import Account
from access.audit.actions import Role
from access.principal import Principal
from access.projects import repository as projects
from access.projects.models import ProjectStatus, ResearchProject
from access.projects.rules import grants_access
from access.web import security
from access.web.pages import StaffPage, staff_page
from dp_queries import budget, service
from dp_queries.budget import BudgetExhausted
from dp_queries.models import JobStatus
from dp_queries.schemas import BudgetRead
from dp_queries.spec import QuerySpec
from dp_queries.web import forms, views
from dp_queries.web.charts import number
from enclave.datasets import service as catalog
from enclave.datasets.schemas import DatasetRead
from enclave.objects.store import EncryptedStore
from infra.errors import EnclaveError
from infra.web.deps import SessionDep, SettingsDep
from infra.web.templating import templates

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates.add_folder(HERE / "templates")

PREFIX = "/staff/research"
router = APIRouter(tags=["research portal"], include_in_schema=False)

EXPIRED_FORM = "The form has expired. Please reload the page and try again."
STATUS_LABELS = {
    ProjectStatus.draft.value: "draft",
    ProjectStatus.submitted.value: "waiting for review",
    ProjectStatus.changes_requested.value: "changes requested",
    ProjectStatus.rejected.value: "rejected",
    ProjectStatus.approved.value: "approved, not started",
    ProjectStatus.active.value: "active",
    ProjectStatus.suspended.value: "suspended",
    ProjectStatus.expired.value: "expired",
    ProjectStatus.closed.value: "closed",
}
MAX_PROJECTS = 500


def _english(page: StaffPage) -> StaffPage:
    # The portal's words are English only, its lang attribute included, whatever the browser prefers.
    page.request.state.language = "en"
    return page


def _researcher(page: Annotated[StaffPage, Depends(staff_page(Role.researcher))]) -> StaffPage:
    return _english(page)


def _dpo(page: Annotated[StaffPage, Depends(staff_page(Role.dpo))]) -> StaffPage:
    return _english(page)


ResearcherPage = Annotated[StaffPage, Depends(_researcher)]
DpoPage = Annotated[StaffPage, Depends(_dpo)]


def _allowed(page: StaffPage) -> Principal | None:
    return page.principal if page.principal is not None and page.permitted else None


def render(page: StaffPage, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """A portal page: no language switch (nothing to switch to), the navigation for the roles held."""
    principal = page.principal
    values = {
        "languages": [],
        "is_researcher": bool(principal and principal.has(Role.researcher)),
        "is_dpo": bool(principal and principal.has(Role.dpo)),
        **context,
    }
    return page.render(name, values, status=status)


# --- static files ----------------------------------------------------------------------------------


@router.get(f"{PREFIX}/static/portal.js")
def script() -> FileResponse:
    """The query builder's script: shows the fields a statistic uses, keeps the preview live."""
    return FileResponse(
        STATIC / "portal.js", media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"}
    )


@router.get(f"{PREFIX}/static/portal.css")
def stylesheet() -> FileResponse:
    """The portal's stylesheet."""
    return FileResponse(
        STATIC / "portal.css", media_type="text/css", headers={"Cache-Control": "public, max-age=300"}
    )


# --- projects --------------------------------------------------------------------------------------


def member_projects(session: SessionDep, principal: Principal) -> list[ResearchProject]:
    """The projects the researcher belongs to, newest first."""
    rows, _ = projects.list_visible(session, principal, limit=MAX_PROJECTS)
    return list(rows)


@dataclass(frozen=True)
class Source:
    """A project open for queries today and the datasets it was granted."""

    id: str
    title: str
    datasets: list[str]


def sources(rows: list[ResearchProject]) -> list[Source]:
    """The researcher's projects that may be queried today, with their datasets."""
    return [Source(p.id, p.title, list(p.allowed_datasets or [])) for p in rows if grants_access(p)]


@router.get(PREFIX, response_class=HTMLResponse)
def home(page: ResearcherPage, session: SessionDep) -> Response:
    """The researcher's projects: status, datasets to query and privacy budget."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    listed = []
    rows = member_projects(session, principal)
    budgets = {b.project_id: b for b in service.budgets_of(session, [p for p in rows if p.granted_epsilon])}
    for project in rows:
        granted = project.granted_epsilon
        spent = budgets.get(project.id)
        listed.append(
            {
                "id": project.id,
                "title": project.title,
                "status_label": STATUS_LABELS.get(project.status, project.status),
                "usable": grants_access(project),
                "datasets": list(project.allowed_datasets or []),
                "granted": _epsilon(granted) if granted is not None else None,
                "spent": _epsilon(spent.spent) if spent else None,
                "remaining": _epsilon(spent.remaining) if spent else None,
            }
        )
    return render(page, "research_home.html", {"projects": listed})


def _epsilon(value: Decimal | str) -> str:
    """ε as short decimal text: 0.4, not 0.4000."""
    try:
        exact = Decimal(value)
    except ArithmeticError:
        return str(value)
    return format(exact.normalize(), "f")


# --- query builder ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The project and dataset a query is about, checked against the researcher's grants."""

    project: ResearchProject
    dataset: DatasetRead
    choices: forms.Choices


def _parse_source(source: str, project: str, dataset: str) -> tuple[str, str]:
    if source and ":" in source:
        project, dataset = source.split(":", 1)
    return project[:36], dataset[:64]


def resolve(
    session: SessionDep, principal: Principal, rows: list[ResearchProject], project_id: str, dataset_id: str
) -> Target:
    """The chosen project and dataset, or a clear refusal naming what is wrong."""
    project = next((p for p in rows if p.id == project_id), None)
    if project is None:
        raise forms.FormProblem("project_id", "this is not one of your projects")
    if not grants_access(project):
        status = STATUS_LABELS.get(project.status, project.status)
        raise forms.FormProblem(
            "project_id", f"{project.title} is not open for queries today (it is {status})"
        )
    if dataset_id not in (project.allowed_datasets or []):
        raise forms.FormProblem("dataset", f"{dataset_id} is not among the project's datasets")
    try:
        dataset = catalog.get_dataset(session, principal, dataset_id)
    except EnclaveError:
        raise forms.FormProblem("dataset", f"{dataset_id} is not in the catalog") from None
    allowed = forms.allowed_names(dataset.id, project.allowed_variables)
    return Target(project, dataset, forms.choices(dataset.schema_, allowed))


def builder_context(
    rows: list[ResearchProject], target: Target | None, form: forms.QueryForm, **extra: Any
) -> dict[str, Any]:
    """What the builder template needs."""
    return {
        "sources": sources(rows),
        "project": target.project if target else None,
        "dataset": target.dataset if target else None,
        "choices": target.choices if target else forms.Choices([], []),
        "form": form,
        "statistics": forms.STATISTICS,
        "category_values": forms.category_values,
        **extra,
    }


def problem_context(problem: forms.FormProblem) -> dict[str, Any]:
    """An error message and the field it points at."""
    message = labelled(problem)
    return {
        "error": message[:1].upper() + message[1:] + ("" if message.endswith(".") else "."),
        "problem_field": problem.field,
        "problem_anchor": forms.FIELD_IDS.get(problem.field),
    }


@router.get(f"{PREFIX}/query", response_class=HTMLResponse)
def builder(
    page: ResearcherPage, session: SessionDep, source: str = "", project: str = "", dataset: str = ""
) -> Response:
    """The query builder for one of the researcher's projects and one of its datasets."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    rows = member_projects(session, principal)
    project_id, dataset_id = _parse_source(source, project, dataset)
    if not project_id:
        usable = sources(rows)
        if len(usable) == 1 and len(usable[0].datasets) == 1:
            project_id, dataset_id = usable[0].id, usable[0].datasets[0]
    form = forms.QueryForm(project=project_id, dataset=dataset_id)
    if not project_id:
        return render(page, "research_query.html", builder_context(rows, None, form))
    try:
        target = resolve(session, principal, rows, project_id, dataset_id)
    except forms.FormProblem as problem:
        context = builder_context(rows, None, form, **problem_context(problem))
        return render(page, "research_query.html", context, status=404)
    return render(page, "research_query.html", builder_context(rows, target, form))


async def posted_form(request: Request) -> FormData:
    """The posted fields (no files; a bounded number of fields)."""
    return await request.form(max_files=0, max_fields=2000)


PostedForm = Annotated[FormData, Depends(posted_form)]


def _problem_of(error: EnclaveError | ValidationError) -> forms.FormProblem:
    """The form field and message of a refusal of the spec."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        location = ".".join(str(p) for p in first["loc"])
        return forms.FormProblem(forms.field_of(location), str(first["msg"]).lower())
    errors = error.extra.get("errors") or []
    if errors:
        first = errors[0]
        return forms.FormProblem(forms.field_of(str(first.get("field", ""))), str(first.get("message", "")))
    return forms.FormProblem("", error.detail)


def labelled(problem: forms.FormProblem) -> str:
    """The message with the name of its field, as the form labels it."""
    label = forms.FIELD_LABELS.get(problem.field)
    return f"{label}: {problem.message}" if label else problem.message


def spec_of(target: Target, form: forms.QueryForm) -> QuerySpec:
    """The query the form asks (FormProblem when the form cannot be read as one)."""
    try:
        return QuerySpec.model_validate(form.spec(target.dataset.schema_))
    except ValidationError as error:
        raise _problem_of(error) from None


def prepared_of(
    session: SessionDep, principal: Principal, target: Target, spec: QuerySpec
) -> service.Prepared:
    """Every rule a release checks (project, dataset, version, variables, ε), as FormProblem."""
    try:
        return service.prepare(session, principal.account_id, target.project.id, spec)
    except EnclaveError as error:
        raise _problem_of(error) from None


def preview_of(
    session: SessionDep, principal: Principal, target: Target, prepared: service.Prepared
) -> dict[str, Any]:
    """What the query would spend and how accurate it would be (no data read, nothing spent)."""
    current = budget.balance(session, target.project, principal.account_id)
    statistics = [
        {
            "name": str(s.get("name")),
            "accuracy": number(float(s["accuracy_95"]))
            if s.get("accuracy_95") is not None
            else "depends on the data",
            # A quantile: a band of ranks (students) and the candidate grid's half step.
            "rank": number(float(s["rank_accuracy_95"])) if s.get("rank_accuracy_95") is not None else None,
            "half_step": number(float(s["grid_half_step"])) if s.get("grid_half_step") is not None else None,
        }
        for s in prepared.statistics
    ]
    return {
        "epsilon": _epsilon(prepared.epsilon),
        "statistics": statistics,
        "remaining": _epsilon(current.remaining),
        "over_budget": prepared.epsilon > current.available,
    }


def _fragment(**context: Any) -> str:
    return templates.env.get_template("research_preview.html").render(**context)


@router.post(f"{PREFIX}/preview")
def live_preview(
    page: ResearcherPage, session: SessionDep, settings: SettingsDep, data: PostedForm
) -> Response:
    """The builder's preview as JSON for the page's script: ε, accuracy per statistic and the
    HTML of the preview region (or the reason there is none)."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    if not security.csrf_valid(page.request, settings, _text(data, security.CSRF_FIELD), page.token):
        message = EXPIRED_FORM
        return JSONResponse({"error": message, "html": _fragment(preview_error=message)}, status_code=400)
    form = forms.QueryForm.from_form(data)
    try:
        target = resolve(session, principal, member_projects(session, principal), form.project, form.dataset)
        prepared = prepared_of(session, principal, target, spec_of(target, form))
        preview = preview_of(session, principal, target, prepared)
    except forms.FormProblem as problem:
        message = labelled(problem)
        body = {"error": message, "field": problem.field, "html": _fragment(preview_error=message)}
        return JSONResponse(body, status_code=422, headers={"Cache-Control": "no-store"})
    body = {
        "epsilon": preview["epsilon"],
        "statistics": preview["statistics"],
        "html": _fragment(preview=preview),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _text(data: FormData, name: str) -> str:
    value = data.get(name)
    return value[:400] if isinstance(value, str) else ""


@dataclass
class Builder:
    """One builder request about a checked project and dataset: renders the page around it."""

    page: StaffPage
    session: Session
    principal: Principal
    rows: list[ResearchProject]
    target: Target
    form: forms.QueryForm

    def show(self, status: int = 200, **extra: Any) -> Response:
        """The builder with the project's budget and ``extra`` (preview, error...)."""
        box = budget_box(self.session, self.principal, self.target.project)
        context = builder_context(self.rows, self.target, self.form, budget=box, **extra)
        return render(self.page, "research_query.html", context, status=status)

    def refused(self, problem: forms.FormProblem) -> Response:
        """The builder with the problem in the alert and in the preview region."""
        context = problem_context(problem)
        return self.show(422, preview_error=context["error"], **context)


@router.post(f"{PREFIX}/query", response_class=HTMLResponse)
def run_query(page: ResearcherPage, session: SessionDep, settings: SettingsDep, data: PostedForm) -> Response:
    """The builder's two buttons: preview the accuracy, or release (spending ε)."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    rows = member_projects(session, principal)
    form = forms.QueryForm.from_form(data)
    try:
        target = resolve(session, principal, rows, form.project, form.dataset)
    except forms.FormProblem as problem:
        context = builder_context(rows, None, form, **problem_context(problem))
        return render(page, "research_query.html", context, status=404)
    builder = Builder(page, session, principal, rows, target, form)
    if not security.csrf_valid(page.request, settings, _text(data, security.CSRF_FIELD), page.token):
        return builder.show(400, error=EXPIRED_FORM)
    try:
        spec = spec_of(target, form)
        if _text(data, "action") == "release":
            return _release(builder, settings, spec)
        prepared = prepared_of(session, principal, target, spec)
    except forms.FormProblem as problem:
        return builder.refused(problem)
    return builder.show(preview=preview_of(session, principal, target, prepared))


def _release(builder: Builder, settings: SettingsDep, spec: QuerySpec) -> Response:
    """Release the query (every refusal goes in the ledger), then show the result."""
    session, principal, project = builder.session, builder.principal, builder.target.project
    try:
        with service.refusals(session, principal.actor, project.id, spec) as asked:
            prepared = asked.note(service.prepare(session, principal.account_id, project.id, spec))
            if prepared.rows > settings.dp_async_row_threshold:
                job = service.queue_job(session, principal, prepared)
                return RedirectResponse(f"{PREFIX}/jobs/{job.id}", status_code=303)
            with session.begin_nested():  # a failed release leaves no spend behind
                released = service.release_prepared(session, principal.actor, prepared, _store(builder.page))
    except EnclaveError as error:
        return builder.show(error.status_code, **refusal_context(error))
    outcome = "reused" if released.reused else "released"
    return RedirectResponse(f"{PREFIX}/releases/{released.release.id}?{outcome}=1", status_code=303)


def _store(page: StaffPage) -> EncryptedStore:
    components = page.request.app.state.components
    return EncryptedStore(None, components.keys, components.storage)


def refusal_context(error: EnclaveError) -> dict[str, Any]:
    """A refused release as the page says it: what happened and what to do."""
    if isinstance(error, BudgetExhausted):
        reason = error.extra.get("reason")
        title = (
            "Your own cap in this project is reached."
            if reason == "researcher_cap_reached"
            else ("Budget exhausted.")
        )
        return {
            "error_title": title,
            "error": f"{error.detail[:1].upper()}{error.detail[1:]}. Nothing was spent; ask for less ε, "
            "or ask the DPO about the project's budget.",
        }
    problem = _problem_of(error)
    return {"error_title": "Not released.", **problem_context(problem)}


# --- budgets -----------------------------------------------------------------------------------------


def budget_box(session: SessionDep, principal: Principal, project: ResearchProject) -> dict[str, Any] | None:
    """The project's budget as the builder and result pages show it."""
    if project.granted_epsilon is None:
        return None
    read = service.budget_of(session, project)
    mine = next((r for r in read.researchers if r.account_id == principal.account_id), None)
    granted, spent = Decimal(read.granted), Decimal(read.spent)
    percent = int(min(spent / granted * 100, Decimal(100))) if granted > 0 else 100
    return {
        "title": project.title,
        "granted": _epsilon(read.granted),
        "spent": _epsilon(read.spent),
        "remaining": _epsilon(read.remaining),
        "cap": _epsilon(mine.cap) if mine and mine.cap else None,
        "mine": _epsilon(mine.spent) if mine else None,
        "percent": percent,
        "exhausted": Decimal(read.remaining) <= 0,
    }


# --- results -----------------------------------------------------------------------------------------


@router.get(PREFIX + "/releases/{release_id}", response_class=HTMLResponse)
def release_page(
    release_id: str, page: ResearcherPage, session: SessionDep, released: int = 0, reused: int = 0
) -> Response:
    """A release: its chart with 95 % error bars, the same numbers as a table, the CSV and the budget."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    try:
        row = service.get_release(session, principal, release_id[:36])
        project = service.visible_project(session, principal, row.project_id)
    except EnclaveError as error:
        return render(page, "error.html", {"title": "Result not found", "detail": error.detail}, 404)
    view = views.release_view(
        release_id=row.id,
        project_id=row.project_id,
        project_title=project.title,
        dataset=row.dataset_id,
        version=row.version,
        epsilon=_epsilon(row.epsilon),
        created_at=row.created_at,
        spec=row.spec,
        result=row.result,
        reused=bool(reused),
    )
    context = {
        "release": view,
        "chart": views.chart_of(row.spec, row.result),
        "just_released": bool(released or reused),
        "budget": budget_box(session, principal, project),
    }
    return render(page, "research_release.html", context)


@router.get(PREFIX + "/releases/{release_id}/result.csv")
def release_csv(release_id: str, page: ResearcherPage, session: SessionDep) -> Response:
    """The release as CSV: group keys, statistic, estimate, ± at 95 %, the interval and the noise flag."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    try:
        row = service.get_release(session, principal, release_id[:36])
    except EnclaveError as error:
        return render(page, "error.html", {"title": "Result not found", "detail": error.detail}, 404)
    return Response(
        views.csv_text(row.result, row.spec),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{row.dataset_id}-release-{row.id[:8]}.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get(PREFIX + "/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, page: ResearcherPage, session: SessionDep) -> Response:
    """A query on a large dataset running on the worker: its state, then its result or refusal."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    try:
        job = service.get_job(session, principal, job_id[:36])
    except EnclaveError as error:
        return render(page, "error.html", {"title": "Query not found", "detail": error.detail}, 404)
    if job.status == JobStatus.done.value and job.release_id:
        return RedirectResponse(f"{PREFIX}/releases/{job.release_id}?released=1", status_code=303)
    context = {"job": job, "failed": job.status == JobStatus.failed.value, "problem": job.error or {}}
    return render(page, "research_job.html", context)


@router.get("/staff/budgets", response_class=HTMLResponse)
def budgets_page(page: DpoPage, session: SessionDep) -> Response:
    """Every project's privacy budget: granted, spent, remaining, and each spend over time."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    reads = service.all_budgets(session)
    return render(page, "research_budgets.html", {"projects": budget_views(session, reads)})


def budget_views(session: SessionDep, reads: list[BudgetRead]) -> list[views.ProjectBudgetView]:
    """The DPO's view of each budget, with researchers by name."""
    now = datetime.now(UTC)
    ids = [r.project_id for r in reads]
    started: dict[str, datetime | None] = {}
    if ids:
        query = select(ResearchProject.id, ResearchProject.approved_at).where(ResearchProject.id.in_(ids))
        started = {row[0]: row[1] for row in session.execute(query)}
    accounts = {r.account_id for read in reads for r in read.researchers}
    names: dict[str, str] = {}
    if accounts:
        query_names = select(Account.id, Account.display_name).where(Account.id.in_(accounts))
        names = {row[0]: row[1] for row in session.execute(query_names)}
    result = []
    for read in reads:
        first = started.get(read.project_id) or (read.spends[0].at if read.spends else now)
        result.append(
            views.budget_view(
                project_id=read.project_id,
                title=read.title,
                status_label=STATUS_LABELS.get(read.status, read.status),
                granted=_epsilon(read.granted),
                spent=_epsilon(read.spent),
                remaining=_epsilon(read.remaining),
                spends=[
                    (s.at, _epsilon(s.epsilon), _epsilon(s.cumulative), s.release_id) for s in read.spends
                ],
                start=first,
                now=now,
                researchers=[
                    {
                        "name": names.get(r.account_id, r.account_id),
                        "spent": _epsilon(r.spent),
                        "cap": _epsilon(r.cap) if r.cap else None,
                    }
                    for r in read.researchers
                ],
            )
        )
    return result
