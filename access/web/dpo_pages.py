"""The DPO's pages: what waits for a decision, project reviews, and the data-subject request queue.

* ``/staff/dpo``: a home listing the proposals to review and the requests due;
* ``/staff/dpo/projects`` and ``/staff/dpo/projects/{id}``: a proposal with its approvals so far,
  a form to approve it with terms (ε, datasets, variables, end date) and one to request changes,
  reject or suspend with a note;
* ``/staff/dpo/requests`` and ``/staff/dpo/requests/{id}``: the data-subject requests, overdue
  first, with the forms to complete one or extend its deadline once.

Server-rendered and usable without JavaScript, under the staff sign-in: the session cookie holds the
access token, every POST carries the signed CSRF token. The rules are the services' own
(``access.projects.decisions``, ``consent.requests.service``): these pages only collect the input,
call them and show their answer, so a refusal reads the same here as from the API.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.principal import Principal
from access.projects import decisions
from access.projects import service as projects
from access.projects.models import ProjectStatus
from access.projects.rules import epsilon_text, utc_today
from access.projects.schemas import ApprovalCreate, DecisionNote
from access.web import security
from access.web.pages import StaffPage, staff_page
from consent.dependencies import IdentityDep
from consent.requests import service as requests
from consent.requests.models import RequestState
from consent.requests.schemas import CompleteBody, ExtendBody
from consent.requests.service import QueueItem
from infra.errors import EnclaveError
from infra.web.deps import SessionDep, SettingsDep

router = APIRouter(prefix="/staff/dpo", include_in_schema=False)

PROJECT_ROLES = (Role.dpo, Role.admin)
"""The DPO reviews; an administrator may give the second approval of a large budget."""
REQUEST_ROLES = (Role.dpo, Role.data_steward)
"""Stewards may follow the queue (as the API allows); only the DPO acts on a request."""
EXPIRED_FORM = "The form has expired. Please reload the page and try again."
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DUE_SOON_DAYS = 7
LIST_LIMIT = 100

APPROVAL_LABELS = {
    "granted_epsilon": "Privacy budget (ε)",
    "datasets": "Datasets",
    "variables": "Variables",
    "end_date": "Last day of access",
}
# The projects service names the rule it applied; this says which field of the form it concerns.
APPROVAL_RULE_FIELDS = {
    "epsilon_above_request": "granted_epsilon",
    "dataset_not_requested": "datasets",
    "variable_not_requested": "variables",
    "variable_outside_datasets": "variables",
    "end_before_start": "end_date",
    "end_after_request": "end_date",
    "end_date_passed": "end_date",
}
DECISIONS = {
    "request_changes": "Request changes (the researcher may revise and submit again)",
    "reject": "Reject (final)",
}
DONE = {
    "approved": "Approved. The budget and access are granted.",
    "recorded": "Your approval is recorded.",
    "changes_requested": "Changes requested. The researcher sees your note.",
    "rejected": "Proposal rejected. The researcher sees your note.",
    "suspended": "Project suspended. Its researchers cannot run queries until it is reinstated.",
    "completed": "Request completed and closed.",
    "extended": "Deadline extended.",
}


def _english(page: StaffPage) -> StaffPage:
    # Staff tooling in English only: the lang attribute says so, whatever the browser prefers.
    page.request.state.language = "en"
    return page


def _projects_page(page: Annotated[StaffPage, Depends(staff_page(*PROJECT_ROLES))]) -> StaffPage:
    return _english(page)


def _dpo_only_page(page: Annotated[StaffPage, Depends(staff_page(Role.dpo))]) -> StaffPage:
    return _english(page)


def _requests_page(page: Annotated[StaffPage, Depends(staff_page(*REQUEST_ROLES))]) -> StaffPage:
    return _english(page)


ProjectsPage = Annotated[StaffPage, Depends(_projects_page)]
DpoOnlyPage = Annotated[StaffPage, Depends(_dpo_only_page)]
RequestsPage = Annotated[StaffPage, Depends(_requests_page)]


def _allowed(page: StaffPage) -> Principal | None:
    return page.principal if page.principal is not None and page.permitted else None


def render(page: StaffPage, name: str, context: dict[str, Any], status: int = 200) -> Response:
    """Render a DPO page with the navigation matching the principal's roles."""
    principal = page.principal
    values = {
        "languages": [],
        "is_dpo": bool(principal and principal.has(Role.dpo)),
        "is_admin": bool(principal and principal.has(Role.admin)),
        "is_steward": bool(principal and principal.has(Role.data_steward)),
        "is_reviewer": bool(principal and principal.has(Role.dpo, Role.legal_reviewer)),
        "days_text": days_text,
        "iso": iso,
        **context,
    }
    return page.render(name, values, status=status)


def _not_found(page: StaffPage, what: str) -> Response:
    return render(
        page, "error.html", {"title": f"{what} not found", "detail": f"There is no such {what.lower()}."}, 404
    )


# --- home ----------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def home(page: ProjectsPage, session: SessionDep) -> Response:
    """What waits for the DPO: proposals to review and data-subject requests due."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    waiting, _ = projects.list_projects(session, principal, status=ProjectStatus.submitted, limit=LIST_LIMIT)
    due: list[QueueItem] = []
    overdue = 0
    if principal.has(Role.dpo):
        open_items = _open_requests(session, principal)
        overdue = sum(1 for item in open_items if item.overdue)
        due = [item for item in open_items if item.overdue or (item.days_left or 0) <= DUE_SOON_DAYS]
    return render(
        page,
        "dpo_home.html",
        {"projects": waiting, "due": due, "overdue": overdue, "due_soon_days": DUE_SOON_DAYS},
    )


def _open_requests(session: Session, principal: Principal) -> list[QueueItem]:
    items = requests.list_queue(session, principal, limit=500)
    return [
        item for item in items if item.request.state not in (RequestState.completed, RequestState.refused)
    ]


# --- projects ------------------------------------------------------------------------------------


@router.get("/projects", response_class=HTMLResponse)
def project_list(page: ProjectsPage, session: SessionDep) -> Response:
    """Proposals waiting for review first, then the other projects."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    rows, total = projects.list_projects(session, principal, limit=LIST_LIMIT)
    waiting = [p for p in rows if p.status == ProjectStatus.submitted.value]
    others = [p for p in rows if p.status != ProjectStatus.submitted.value]
    return render(
        page,
        "dpo_projects.html",
        {"waiting": waiting, "others": others, "total": total, "limit": LIST_LIMIT},
    )


def _approval_form(view: projects.ProjectView) -> dict[str, Any]:
    """The approval form's starting values: the first approval's terms, or else the request."""
    project = view.project
    current = [a for a in view.approvals if a.review_round == project.review_round]
    if current:
        first = current[0]
        return {
            "granted_epsilon": epsilon_text(first.granted_epsilon),
            "datasets": list(first.allowed_datasets),
            "variables": list(first.allowed_variables),
            "end_date": first.end_date.isoformat(),
        }
    return {
        "granted_epsilon": epsilon_text(project.requested_epsilon),
        "datasets": list(project.requested_datasets),
        "variables": list(project.requested_variables),
        "end_date": project.end_date.isoformat(),
    }


def _project_page(
    page: StaffPage,
    session: Session,
    settings: Any,
    principal: Principal,
    project_id: str,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    if not UUID.match(project_id):
        return _not_found(page, "Project")
    try:
        project = projects.get_project(session, principal, project_id)
    except EnclaveError as exc:
        if exc.status_code == 404:
            return _not_found(page, "Project")
        raise
    threshold: Decimal = settings.project_second_approval_epsilon
    view = projects.view(session, project, threshold)
    current = [a for a in view.approvals if a.review_round == project.review_round]
    submitted = project.status == ProjectStatus.submitted.value
    context: dict[str, Any] = {
        "project": project,
        "view": view,
        "current": current,
        "earlier": [a for a in view.approvals if a.review_round != project.review_round],
        "threshold": epsilon_text(threshold),
        "submitted": submitted,
        "second_needed": submitted and 0 < len(current) < view.approvals_required,
        "approved_by_me": any(a.approver_id == principal.account_id for a in current),
        "can_suspend": project.status in (ProjectStatus.approved.value, ProjectStatus.active.value),
        "form": _approval_form(view),
        "labels": APPROVAL_LABELS,
        "decisions": DECISIONS,
        "decision_form": {"decision": "", "note": ""},
        "errors": {},
        "epsilon_text": epsilon_text,
    }
    done = page.request.query_params.get("done", "")
    if done in DONE:
        context["done"] = DONE[done]
    context.update(extra)
    return render(page, "dpo_project.html", context, status=status)


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def project_detail(
    project_id: str, page: ProjectsPage, session: SessionDep, settings: SettingsDep
) -> Response:
    """A proposal, its approvals so far, and the forms to decide on it."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    return _project_page(page, session, settings, principal, project_id)


def _field_of(location: tuple[int | str, ...]) -> str:
    return str(location[0]) if location else ""


@router.post("/projects/{project_id}/approve", response_class=HTMLResponse)
def approve(
    *,
    project_id: str,
    page: ProjectsPage,
    session: SessionDep,
    settings: SettingsDep,
    granted_epsilon: Annotated[str, Form(max_length=40)] = "",
    datasets: Annotated[list[str] | None, Form()] = None,
    variables: Annotated[list[str] | None, Form()] = None,
    end_date: Annotated[str, Form(max_length=40)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Approve with the terms given; the project is approved once enough approvers agreed on them."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    form = {
        "granted_epsilon": granted_epsilon,
        "datasets": datasets or [],
        "variables": variables or [],
        "end_date": end_date,
    }
    if not security.csrf_valid(page.request, settings, csrf_token, page.token):
        return _project_page(
            page, session, settings, principal, project_id, status=400, form=form, error=EXPIRED_FORM
        )
    try:
        terms = ApprovalCreate.model_validate(
            {**form, "granted_epsilon": granted_epsilon.strip(), "end_date": end_date.strip()}
        )
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for problem in exc.errors():
            field = _field_of(problem["loc"])
            errors.setdefault(field, f"{APPROVAL_LABELS.get(field, field)}: {_plain(problem)}")
        return _project_page(
            page,
            session,
            settings,
            principal,
            project_id,
            status=422,
            form=form,
            errors=errors,
            error="The approval was not recorded. " + " ".join(errors.values()),
        )
    try:
        # A savepoint: a refused approval leaves nothing but the service's own denied entry.
        with session.begin_nested():
            project = decisions.approve_project(
                session,
                principal,
                project_id,
                terms,
                second_approval_epsilon=settings.project_second_approval_epsilon,
            )
    except EnclaveError as exc:
        if exc.status_code == 404:
            return _not_found(page, "Project")
        field = APPROVAL_RULE_FIELDS.get(str(exc.extra.get("reason", "")), "")
        message = f"{APPROVAL_LABELS[field]}: {exc.detail}" if field else exc.detail
        return _project_page(
            page,
            session,
            settings,
            principal,
            project_id,
            status=exc.status_code,
            form=form,
            errors={field: message} if field else {},
            error=f"The approval was not recorded. {message}",
        )
    done = "recorded" if project.status == ProjectStatus.submitted.value else "approved"
    return RedirectResponse(f"/staff/dpo/projects/{project_id}?done={done}", status_code=303)


def _plain(problem: Any) -> str:
    """Pydantic's message in words a reviewer reads, for the common cases."""
    kind = problem.get("type", "")
    if kind == "missing" or (kind in {"too_short", "list_type"} and not problem.get("input")):
        return "choose or enter a value."
    if kind.startswith("decimal") or kind in {"greater_than", "less_than_equal"}:
        return "enter a number above 0 and at most 10, with up to four decimal places."
    if kind.startswith("date"):
        return "enter a date as YYYY-MM-DD."
    return str(problem.get("msg", "is not valid")).rstrip(".") + "."


@router.post("/projects/{project_id}/decision", response_class=HTMLResponse)
def decide(
    *,
    project_id: str,
    page: DpoOnlyPage,
    session: SessionDep,
    settings: SettingsDep,
    decision: Annotated[str, Form(max_length=40)] = "",
    note: Annotated[str, Form(max_length=8000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Request changes to, reject, or suspend a project, with the note the researchers read."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    decision_form = {"decision": decision, "note": note}

    def again(status: int, message: str, field: str) -> Response:
        return _project_page(
            page,
            session,
            settings,
            principal,
            project_id,
            status=status,
            decision_form=decision_form,
            decision_errors={field: message},
            error=message,
        )

    problem = _decision_problem(decision, note)
    if not security.csrf_valid(page.request, settings, csrf_token, page.token):
        problem = (400, EXPIRED_FORM, "")
    if problem is not None:
        return again(*problem)
    text = note.strip()
    steps = {
        "request_changes": (decisions.request_changes, "changes_requested"),
        "reject": (decisions.reject_project, "rejected"),
        "suspend": (decisions.suspend_project, "suspended"),
    }
    step, done = steps[decision]
    try:
        with session.begin_nested():
            step(session, principal, project_id, text)
    except EnclaveError as exc:
        if exc.status_code == 404:
            return _not_found(page, "Project")
        return again(exc.status_code, exc.detail, "")
    return RedirectResponse(f"/staff/dpo/projects/{project_id}?done={done}", status_code=303)


def _decision_problem(decision: str, note: str) -> tuple[int, str, str] | None:
    """What is wrong with a decision form (status, message naming the field, field), if anything."""
    if decision not in {*DECISIONS, "suspend"}:
        return 422, "Decision: choose request changes or reject.", "decision"
    try:
        DecisionNote.model_validate({"note": note})
    except ValidationError:
        return (
            422,
            "Note to the researchers: write at least 3 characters (at most 4,000), no control characters.",
            "note",
        )
    return None


# --- data-subject requests -----------------------------------------------------------------------


@router.get("/requests", response_class=HTMLResponse)
def request_list(page: RequestsPage, session: SessionDep) -> Response:
    """The queue: overdue first, then by the date that counts; closed requests below."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    items = requests.list_queue(session, principal, limit=500)
    closed = (RequestState.completed.value, RequestState.refused.value)
    waiting = [i for i in items if i.request.state not in closed]
    done = sorted(
        (i for i in items if i.request.state in closed),
        key=lambda i: i.request.closed_at or i.request.created_at,
        reverse=True,
    )
    return render(
        page,
        "dpo_requests.html",
        {"waiting": waiting, "closed": done[:LIST_LIMIT], "overdue": sum(1 for i in waiting if i.overdue)},
    )


def _request_page(
    page: StaffPage, session: Session, principal: Principal, request_id: str, status: int = 200, **extra: Any
) -> Response:
    if not UUID.match(request_id):
        return _not_found(page, "Request")
    try:
        found = requests.get_request(session, principal, request_id)
    except EnclaveError as exc:
        if exc.status_code == 404:
            return _not_found(page, "Request")
        raise
    today = utc_today()
    item = QueueItem.of(found, today)
    closed = found.state in (RequestState.completed.value, RequestState.refused.value)
    context: dict[str, Any] = {
        "item": item,
        "req": found,
        "details": requests.visible_details(found),
        "closed": closed,
        "can_act": principal.has(Role.dpo) and not closed,
        "can_extend": found.extended_due_on is None and today <= found.due_on,
        "extend_form": {"reason": "", "months": "2"},
        "complete_form": {"outcome": ""},
        "errors": {},
    }
    done = page.request.query_params.get("done", "")
    if done in DONE:
        context["done"] = DONE[done]
    context.update(extra)
    return render(page, "dpo_request.html", context, status=status)


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_detail(request_id: str, page: RequestsPage, session: SessionDep) -> Response:
    """One request with its deadline and, for the DPO, the forms to complete or extend it."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    return _request_page(page, session, principal, request_id)


@router.post("/requests/{request_id}/complete", response_class=HTMLResponse)
def complete(
    *,
    request_id: str,
    page: DpoOnlyPage,
    session: SessionDep,
    settings: SettingsDep,
    protector: IdentityDep,
    outcome: Annotated[str, Form(max_length=8000)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Carry out what the request asks and close it (final)."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    form = {"outcome": outcome}
    if not security.csrf_valid(page.request, settings, csrf_token, page.token):
        return _request_page(
            page, session, principal, request_id, 400, complete_form=form, error=EXPIRED_FORM
        )
    try:
        body = CompleteBody.model_validate({"outcome": outcome})
    except ValidationError:
        message = "How the request was answered: at most 2,000 characters."
        return _request_page(
            page,
            session,
            principal,
            request_id,
            422,
            complete_form=form,
            errors={"outcome": message},
            error=message,
        )
    try:
        with session.begin_nested():
            requests.complete_request(session, principal, protector, request_id, body.outcome)
    except EnclaveError as exc:
        if exc.status_code == 404:
            return _not_found(page, "Request")
        return _request_page(
            page, session, principal, request_id, exc.status_code, complete_form=form, error=exc.detail
        )
    return RedirectResponse(f"/staff/dpo/requests/{request_id}?done=completed", status_code=303)


@router.post("/requests/{request_id}/extend", response_class=HTMLResponse)
def extend(
    *,
    request_id: str,
    page: DpoOnlyPage,
    session: SessionDep,
    settings: SettingsDep,
    reason: Annotated[str, Form(max_length=8000)] = "",
    months: Annotated[str, Form(max_length=4)] = "2",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Extend the deadline once, by one or two months from receipt, with the reason told to the subject."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    form = {"reason": reason, "months": months}
    if not security.csrf_valid(page.request, settings, csrf_token, page.token):
        return _request_page(page, session, principal, request_id, 400, extend_form=form, error=EXPIRED_FORM)
    try:
        body = ExtendBody.model_validate({"reason": reason, "months": months.strip() or "2"})
    except ValidationError as exc:
        fields = {_field_of(p["loc"]) for p in exc.errors()}
        errors = {}
        if "reason" in fields:
            errors["reason"] = (
                "Reason for the extension: write why more time is needed (at most 2,000 characters)."
            )
        if "months" in fields:
            errors["months"] = "Extend by: choose one or two months."
        message = " ".join(errors.values())
        return _request_page(
            page, session, principal, request_id, 422, extend_form=form, errors=errors, error=message
        )
    try:
        with session.begin_nested():
            requests.extend_request(session, principal, request_id, body.reason, body.months)
    except EnclaveError as exc:
        if exc.status_code == 404:
            return _not_found(page, "Request")
        return _request_page(
            page, session, principal, request_id, exc.status_code, extend_form=form, error=exc.detail
        )
    return RedirectResponse(f"/staff/dpo/requests/{request_id}?done=extended", status_code=303)


def days_text(days: int | None) -> str:
    """'3 days left', 'due today', '2 days overdue'."""
    if days is None:
        return "closed"
    if days == 0:
        return "due today"
    if days > 0:
        return f"{days} day{'s' if days != 1 else ''} left"
    return f"{-days} day{'s' if days != -1 else ''} overdue"


def iso(value: date | None) -> str:
    """A date as YYYY-MM-DD (empty for none)."""
    return value.isoformat() if value else ""
