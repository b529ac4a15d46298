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
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from access.audit.actions import Role
from access.principal import Principal
from access.projects import repository as projects
from access.projects.models import ProjectStatus, ResearchProject
from access.projects.rules import grants_access
from access.web import security
from access.web.pages import StaffPage, staff_page
from dp_queries import engine
from dp_queries.spec import InvalidQuery, QuerySpec, check
from dp_queries.web import forms
from dp_queries.web.charts import number
from enclave.datasets import service as catalog
from enclave.datasets.schemas import DatasetRead
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
    for project in member_projects(session, principal):
        granted = project.granted_epsilon
        listed.append(
            {
                "id": project.id,
                "title": project.title,
                "status_label": STATUS_LABELS.get(project.status, project.status),
                "usable": grants_access(project),
                "datasets": list(project.allowed_datasets or []),
                "granted": _epsilon(granted) if granted is not None else None,
                "spent": None,
                "remaining": None,
            }
        )
    return render(page, "research_home.html", {"projects": listed})


def _epsilon(value: Any) -> str:
    return format(value.normalize(), "f") if hasattr(value, "normalize") else str(value)


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
    """The query the form asks, checked against the catalog and the project's grant (FormProblem)."""
    schema = target.dataset.schema_
    try:
        spec = QuerySpec.model_validate(form.spec(schema))
        check(spec, schema, target.choices.names)
    except (ValidationError, InvalidQuery) as error:
        raise _problem_of(error) from None
    return spec


def preview_of(target: Target, form: forms.QueryForm) -> dict[str, Any]:
    """What the query would spend and how accurate it would be (no data read, nothing spent)."""
    spec = spec_of(target, form)
    try:
        expected = engine.preview(spec, target.dataset.schema_)
    except InvalidQuery as error:
        raise _problem_of(error) from None
    statistics = [
        {
            "name": str(s.get("name")),
            "accuracy": number(float(s["accuracy_95"]))
            if s.get("accuracy_95") is not None
            else "depends on the data",
        }
        for s in expected.statistics
    ]
    return {
        "epsilon": _epsilon(expected.epsilon),
        "statistics": statistics,
        "remaining": None,
        "over_budget": False,
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
        preview = preview_of(target, form)
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
    if not security.csrf_valid(page.request, settings, _text(data, security.CSRF_FIELD), page.token):
        context = builder_context(rows, target, form, error=EXPIRED_FORM)
        return render(page, "research_query.html", context, status=400)
    try:
        preview = preview_of(target, form)
    except forms.FormProblem as problem:
        context = builder_context(
            rows, target, form, preview_error=labelled(problem), **problem_context(problem)
        )
        return render(page, "research_query.html", context, status=422)
    if _text(data, "action") != "release":
        return render(page, "research_query.html", builder_context(rows, target, form, preview=preview))
    context = builder_context(
        rows,
        target,
        form,
        preview=preview,
        error_title="Not released.",
        error="Releases are not available on this server yet; the preview above spent nothing.",
    )
    return render(page, "research_query.html", context, status=503)
