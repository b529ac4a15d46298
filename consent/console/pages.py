"""The data steward's console: roster imports with the line-by-line report, invitation campaigns,
letters downloads and a dashboard per school and purpose.

Server-rendered, no JavaScript needed. The pages live under ``/staff/steward`` so they share the
staff sign-in: the session cookie (scoped to ``/staff``) holds the access token, every POST carries
the signed CSRF token, and only accounts with the ``data_steward`` role may open them. The console
is in English (staff tooling); the family-facing texts it sends are in the families' languages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from access.audit.actions import Role
from access.principal import Principal
from access.web import security
from access.web.pages import StaffPage, staff_page
from consent.console import dashboard
from consent.dependencies import IdentityDep
from consent.invitations import campaigns, sending
from consent.invitations.models import InvitationReason
from consent.invitations.router import campaign_read
from consent.rosters import importing, importing_guardians, importing_teachers
from consent.rosters.csv_format import MAX_FILE_BYTES, RosterKind
from infra.errors import EnclaveError
from infra.logging import get_logger
from infra.web.deps import SessionDep, SettingsDep
from infra.web.templating import templates

log = get_logger(__name__)

templates.add_folder(Path(__file__).parent / "templates")

PREFIX = "/staff/steward"
router = APIRouter(prefix=PREFIX, tags=["steward console"], include_in_schema=False)


def _english(page: Annotated[StaffPage, Depends(staff_page(Role.data_steward))]) -> StaffPage:
    # The console's own words are English only: the whole page, its lang attribute included, is
    # English whatever language the browser prefers, so screen readers pronounce it correctly.
    page.request.state.language = "en"
    return page


StewardPage = Annotated[StaffPage, Depends(_english)]

EXPIRED_FORM = "The form has expired. Please reload the page and try again."
IMPORTERS = {
    RosterKind.students: importing.import_students,
    RosterKind.guardians: importing_guardians.import_guardians,
    RosterKind.teachers: importing_teachers.import_teachers,
}
REASONS = {
    InvitationReason.invitation: "Invitation: everyone who still has something to decide",
    InvitationReason.reminder: "Reminder: the undecided again (new links replace the old ones)",
    InvitationReason.reconsent: "Re-consent: students marked to decide again",
}


def _render(page: StaffPage, name: str, context: dict[str, Any], status: int = 200) -> Response:
    # No language switch: there is nothing to switch to on these pages.
    return page.render(name, {"languages": [], **context}, status=status)


def _allowed(page: StaffPage) -> Principal | None:
    return page.principal if page.principal is not None and page.permitted else None


def _schools(session: SessionDep, principal: Principal) -> list[tuple[str, str]]:
    return dashboard.schools_in_scope(session, principal)


# --- home ----------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def home(page: StewardPage, session: SessionDep) -> Response:
    """The steward's start page: their schools and what they can do."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    return _render(page, "steward_home.html", {"schools": _schools(session, principal), "scope": principal})


# --- rosters -------------------------------------------------------------------------------------


def _rosters_page(page: StaffPage, status: int = 200, **context: Any) -> Response:
    values: dict[str, Any] = {"kinds": list(RosterKind), "kind": RosterKind.students.value, "max_mib": 20}
    values.update(context)
    return _render(page, "steward_rosters.html", values, status=status)


@router.get("/rosters", response_class=HTMLResponse)
def rosters(page: StewardPage) -> Response:
    """Upload a roster: check it first (the report lists every problem), then import it."""
    if _allowed(page) is None:
        return page.refuse()
    return _rosters_page(page)


@router.post("/rosters", response_class=HTMLResponse)
def upload_roster(
    *,
    page: StewardPage,
    session: SessionDep,
    settings: SettingsDep,
    protector: IdentityDep,
    file: Annotated[UploadFile | None, File()] = None,
    kind: Annotated[str, Form(max_length=20)] = "",
    action: Annotated[str, Form(max_length=20)] = "validate",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Check (``action=validate``) or import (``action=import``) a CSV; all rows valid or none."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    if not security.csrf_valid(page.request, settings, csrf_token, page.token):
        return _rosters_page(page, 400, error=EXPIRED_FORM)
    context: dict[str, Any] = {"kind": kind, "file_name": file.filename if file else ""}
    data = file.file.read(MAX_FILE_BYTES + 1) if file is not None else b""
    refusal = _upload_problem(kind, data)
    if refusal is not None:
        return _rosters_page(page, refusal[1], error=refusal[0], **context)
    roster = RosterKind(kind)
    dry_run = action != "import"
    try:
        # A savepoint: a rejected file leaves nothing behind even though the page answers normally.
        with session.begin_nested():
            result = IMPORTERS[roster](session, principal, protector, data, dry_run=dry_run)
    except EnclaveError as exc:
        problems = exc.extra.get("errors") or [{"line": None, "column": None, "message": exc.detail}]
        return _rosters_page(
            page,
            exc.status_code,
            error=exc.detail,
            problems=problems,
            truncated=bool(exc.extra.get("truncated")),
            **context,
        )
    return _rosters_page(page, result=result, **context)


def _upload_problem(kind: str, data: bytes) -> tuple[str, int] | None:
    if kind not in {k.value for k in RosterKind}:
        return "Choose which roster the file holds.", 422
    if not data:
        return "Choose a CSV file to upload.", 422
    if len(data) > MAX_FILE_BYTES:
        return "The file is over 20 MiB: split it by school.", 413
    return None


# --- campaigns -----------------------------------------------------------------------------------


def _campaigns_page(
    page: StaffPage, session: SessionDep, principal: Principal, status: int = 200, **extra: Any
) -> Response:
    listed = campaigns.counts_for(session, campaigns.list_campaigns(session, principal))
    values: dict[str, Any] = {
        "campaigns": [campaign_read(c) for c in listed],
        "schools": [
            school for country, school in _schools(session, principal) if country == principal.country
        ],
        "reasons": REASONS,
        "form": {"school": "", "reason": InvitationReason.invitation.value},
    }
    values.update(extra)
    return _render(page, "steward_campaigns.html", values, status=status)


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(page: StewardPage, session: SessionDep) -> Response:
    """Start a campaign, a reminder or re-consent invitations; see past campaigns."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    return _campaigns_page(page, session, principal)


@router.post("/campaigns", response_class=HTMLResponse)
def start_campaign(
    *,
    page: StewardPage,
    session: SessionDep,
    settings: SettingsDep,
    protector: IdentityDep,
    school: Annotated[str, Form(max_length=32)] = "",
    reason: Annotated[str, Form(max_length=20)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Send a campaign for one of the steward's schools, then show it."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    form = {"school": school, "reason": reason}
    if not security.csrf_valid(page.request, settings, csrf_token, page.token):
        return _campaigns_page(page, session, principal, 400, error=EXPIRED_FORM, form=form)
    try:
        chosen = InvitationReason(reason)
    except ValueError:
        return _campaigns_page(page, session, principal, 422, error="Choose what to send.", form=form)
    if not school:
        return _campaigns_page(page, session, principal, 422, error="Choose a school.", form=form)
    components = page.request.app.state.components
    try:
        sent = sending.send_campaign(
            session,
            principal,
            keys=components.keys,
            protector=protector,
            storage=components.storage,
            links=sending.Links(settings.public_url),
            school=school,
            reason=chosen,
        )
    except EnclaveError as exc:
        return _campaigns_page(page, session, principal, exc.status_code, error=exc.detail, form=form)
    return RedirectResponse(f"{PREFIX}/campaigns/{sent.campaign.id}?sent=1", status_code=303)


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
def campaign_page(campaign_id: str, page: StewardPage, session: SessionDep, sent: int = 0) -> Response:
    """One campaign: who was invited, how the emails are doing, the letters to print."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    try:
        campaign = campaigns.get_campaign(session, principal, campaign_id[:36])
    except EnclaveError as exc:
        return _render(page, "error.html", {"title": "Campaign not found", "detail": exc.detail}, 404)
    counts = campaign_read(campaigns.counts_for(session, [campaign])[0])
    return _render(page, "steward_campaign.html", {"campaign": counts, "just_sent": bool(sent)})


@router.get("/campaigns/{campaign_id}/letters.pdf")
def letters_pdf(campaign_id: str, page: StewardPage, session: SessionDep) -> Response:
    """Download the campaign's letters (kept 7 days; each download is recorded)."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    components = page.request.app.state.components
    try:
        campaign = campaigns.get_campaign(session, principal, campaign_id[:36])
        counts = campaigns.counts_for(session, [campaign])[0]
        pdf = sending.letters_pdf(
            session,
            principal,
            keys=components.keys,
            storage=components.storage,
            campaign=campaign,
            letters=counts.letters,
        )
    except EnclaveError as exc:
        title = "Letters not available"
        return _render(page, "error.html", {"title": title, "detail": exc.detail}, exc.status_code)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="letters-{campaign.school_code}.pdf"',
            "Cache-Control": "no-store",
        },
    )


# --- dashboard -----------------------------------------------------------------------------------


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(page: StewardPage, session: SessionDep, school: str = "") -> Response:
    """Per school and purpose: invited, opened, granted, declined, withdrawn, pending, expired and
    re-consent required, as a chart and as a table."""
    principal = _allowed(page)
    if principal is None:
        return page.refuse()
    schools = _schools(session, principal)
    context: dict[str, Any] = {"schools": schools, "school": school, "board": None}
    chosen = next(((c, s) for c, s in schools if s == school), None) if school else None
    if chosen is None and not school and len(schools) == 1:
        chosen = schools[0]
    if chosen is None and school:
        context["error"] = f"{school[:32]} is not one of your schools."
        return _render(page, "steward_dashboard.html", context, status=404)
    if chosen is not None:
        context["school"] = chosen[1]
        context["board"] = dashboard.school_dashboard(session, principal, *chosen)
        context["statuses"] = [
            (s.value, dashboard.LABELS[s], dashboard.COLOURS[s]) for s in dashboard.STATUS_ORDER
        ]
        context["chart"] = {
            "width": dashboard.CHART_WIDTH,
            "bar_left": dashboard.BAR_LEFT,
            "bar_height": dashboard.BAR_HEIGHT,
            "bar_width": dashboard.BAR_WIDTH,
        }
    return _render(page, "steward_dashboard.html", context)
