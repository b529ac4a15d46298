"""Staff pages: sign-in and the audit review console (ledger, export, verification, sign-offs).

They work without JavaScript: filters are a GET form, pagination and exports are links, and the
two state-changing forms (sign-out and sign-off) are POSTs guarded by a CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from access.accounts.exceptions import MfaEnrolmentRequired
from access.audit import review
from access.audit.actions import Outcome, Role
from access.audit.review import DEFAULT_PAGE, MAX_COMMENT, MAX_PAGE, EntryFilter
from access.audit.review_export import ExportFormat, entry_json, prepare_export, stream_export
from access.audit.router import entry_filter
from access.principal import Principal
from access.web import security
from access.web.staff_auth import principal_for_token, sign_in, sign_out
from infra.errors import EnclaveError, TooManyRequests
from infra.logging import get_logger
from infra.web.deps import SessionDep, SettingsDep
from infra.web.i18n import add_catalog_dir
from infra.web.templating import templates

log = get_logger(__name__)

HERE = Path(__file__).parent
templates.add_folder(HERE / "templates")
add_catalog_dir(HERE / "locale")

router = APIRouter(prefix="/staff", include_in_schema=False)

FILTER_FIELDS = (
    "actor_id",
    "role",
    "action",
    "target_id",
    "project_id",
    "outcome",
    "from",
    "to",
    "first_seq",
    "last_seq",
)
REVIEWER_ROLES = (Role.dpo, Role.legal_reviewer)


@dataclass
class StaffPage:
    """One staff page request: who is signed in (if anyone) and the CSRF token for its forms."""

    request: Request
    settings: Any
    principal: Principal | None
    token: str | None
    nonce: str
    new_nonce: bool
    allowed: frozenset[Role] = field(default_factory=frozenset)

    @property
    def csrf(self) -> str:
        """The token the page's forms carry."""
        return security.csrf_token(self.settings, self.nonce, self.token)

    @property
    def permitted(self) -> bool:
        """True when the signed-in principal holds one of the page's roles."""
        return self.principal is not None and (not self.allowed or self.principal.has(*self.allowed))

    def render(self, name: str, context: dict[str, Any] | None = None, status: int = 200) -> HTMLResponse:
        """Render a template with the staff navigation and the CSRF token."""
        values = {"principal": self.principal, "csrf_token": self.csrf, "csrf_field": security.CSRF_FIELD}
        values.update(context or {})
        response = templates.render(self.request, name, values, status=status)
        response.headers["Cache-Control"] = "no-store"
        if self.new_nonce:
            security.set_csrf_cookie(response, self.request, self.settings, self.nonce)
        return response

    def refuse(self) -> Response:
        """Where to send a visitor who may not see the page."""
        if self.principal is None:
            return security.login_redirect(self.request)
        gettext = _gettext(self.request)
        return self.render(
            "error.html",
            {
                "title": gettext("Not allowed"),
                "detail": gettext("Your account does not have a role that may open this page."),
            },
            status=403,
        )


def _gettext(request: Request) -> Callable[[str], str]:
    from infra.web.i18n import translations_for

    return translations_for(getattr(request.state, "language", "en")).gettext


def staff_page(*roles: Role) -> Callable[..., StaffPage]:
    """A dependency describing the page request; ``roles`` are the roles that may use the page."""

    def dependency(request: Request, session: SessionDep, settings: SettingsDep) -> StaffPage:
        token = security.session_token(request)
        principal = None
        if token is not None:
            try:
                principal = principal_for_token(request, session, token)
            except EnclaveError:
                # Expired, revoked or otherwise unusable: the visitor simply is not signed in.
                token = None
        nonce, new = security.csrf_nonce(request)
        return StaffPage(request, settings, principal, token, nonce, new, frozenset(roles))

    dependency.allowed_roles = frozenset(roles)  # type: ignore[attr-defined]
    return dependency


PublicPage = Annotated[StaffPage, Depends(staff_page())]
ReviewerPage = Annotated[StaffPage, Depends(staff_page(*REVIEWER_ROLES))]


# --- sign-in -----------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(page: PublicPage, next: str | None = None) -> Response:
    """The staff sign-in form (email, password and the code of the authenticator app)."""
    return page.render("staff_login.html", {"next": security.safe_next(next), "email": ""})


@router.post("/login", response_class=HTMLResponse)
def login(
    *,
    page: PublicPage,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    totp: Annotated[str, Form(max_length=12)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    """Sign in and start a short-lived session cookie holding the access token."""
    request = page.request
    gettext = _gettext(request)
    target = security.safe_next(next)
    context = {"next": target, "email": email}
    if not security.csrf_valid(request, settings, csrf_token, None):
        context["error"] = gettext("The form has expired. Please try again.")
        return page.render("staff_login.html", context, status=400)
    client = request.client.host if request.client else "unknown"
    try:
        result = sign_in(
            request,
            session,
            email=email.strip(),
            password=password,
            totp=totp.strip().replace(" ", ""),
            client_address=client,
        )
    except TooManyRequests:
        context["error"] = gettext("Too many failed sign-ins. Please wait a few minutes and try again.")
        return page.render("staff_login.html", context, status=429)
    except MfaEnrolmentRequired:
        context["error"] = gettext(
            "Your account needs a second factor. Enrol an authenticator app first, then sign in again."
        )
        return page.render("staff_login.html", context, status=403)
    except EnclaveError as exc:
        log.info("staff.sign_in_refused", error=exc.type_slug)
        context["error"] = gettext("Sign-in failed. Check your email address, password and code.")
        return page.render("staff_login.html", context, status=401)
    response = RedirectResponse(target, status_code=303)
    security.set_session(response, request, settings, result.token, result.expires_in)
    # A new nonce at sign-in: a token minted before it is worthless afterwards.
    security.set_csrf_cookie(response, request, settings, security.new_nonce())
    return response


@router.post("/logout")
def logout(
    page: PublicPage,
    session: SessionDep,
    settings: SettingsDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """End the staff session (and the sign-in behind it)."""
    if not security.csrf_valid(page.request, settings, csrf_token, page.token):
        gettext = _gettext(page.request)
        return page.render(
            "error.html", {"title": gettext("The form has expired. Please try again."), "detail": ""}, 400
        )
    if page.principal is not None:
        sign_out(session, page.principal)
    response = RedirectResponse("/staff/login", status_code=303)
    security.clear_session(response)
    return response


# --- ledger ------------------------------------------------------------------------------------


def _query_filters(request: Request) -> dict[str, str]:
    return {name: request.query_params.get(name, "") for name in FILTER_FIELDS}


def _parse_filters(values: dict[str, str]) -> EntryFilter:
    names = {"from": "since", "to": "until"}
    return entry_filter(**{names.get(k, k): v for k, v in values.items()})


def _link(path: str, values: dict[str, str], **extra: str) -> str:
    query = {k: v for k, v in {**values, **extra}.items() if v}
    return f"{path}?{urlencode(query)}" if query else path


@router.get("/audit", response_class=HTMLResponse)
def ledger(page: ReviewerPage, session: SessionDep) -> Response:
    """The ledger with a filter form, pagination links and export links."""
    principal = page.principal
    if principal is None or not page.permitted:
        return page.refuse()
    request = page.request
    values = _query_filters(request)
    limit_text = request.query_params.get("limit", str(DEFAULT_PAGE))
    cursor = request.query_params.get("cursor") or None
    context: dict[str, Any] = {
        "filters": values,
        "roles": [r.value for r in Role],
        "outcomes": [o.value for o in Outcome],
        "limit": limit_text,
        "limits": [25, 100, 250, MAX_PAGE],
        "entries": [],
        "csv_link": _link("/staff/audit/export", values, format="csv"),
        "json_link": _link("/staff/audit/export", values, format="json"),
        "first_link": _link("/staff/audit", values, limit=limit_text),
    }
    try:
        limit = int(limit_text) if limit_text.isdigit() else 0
        filters = _parse_filters(values)
        result = review.list_entries(session, principal, filters, cursor=cursor, limit=limit)
    except EnclaveError as exc:
        context["error"] = exc.detail
        return page.render("audit_ledger.html", context, status=exc.status_code)
    context["entries"] = [entry_json(e) for e in result.entries]
    context["ledger_size"] = result.ledger_size
    context["paged"] = cursor is not None
    if result.next_cursor:
        context["next_link"] = _link("/staff/audit", values, limit=limit_text, cursor=result.next_cursor)
    return page.render("audit_ledger.html", context)


@router.get("/audit/export")
def export(page: ReviewerPage, session: SessionDep) -> Response:
    """Download the filtered entries with a signed checkpoint and inclusion proofs (CSV or JSON)."""
    principal = page.principal
    if principal is None or not page.permitted:
        return page.refuse()
    request = page.request
    try:
        fmt = ExportFormat(request.query_params.get("format", "json"))
        filters = _parse_filters(_query_filters(request))
    except (ValueError, EnclaveError) as exc:
        gettext = _gettext(request)
        detail = exc.detail if isinstance(exc, EnclaveError) else gettext("Choose CSV or JSON.")
        return page.render("error.html", {"title": gettext("Export failed"), "detail": detail}, 400)
    plan = prepare_export(session, principal, request.app.state.components.keys, filters, fmt)
    media = "application/json" if fmt is ExportFormat.json else "text/csv; charset=utf-8"
    name = f"audit-export-{plan.checkpoint.tree_size}.{fmt.value}"
    return StreamingResponse(
        stream_export(request.app.state.components.session_factory, plan, fmt),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/audit/verify", response_class=HTMLResponse)
def verify(page: ReviewerPage, session: SessionDep) -> Response:
    """Recompute the whole ledger and show the result."""
    principal = page.principal
    if principal is None or not page.permitted:
        return page.refuse()
    result = review.verify(session, principal, page.request.app.state.components.keys)
    return page.render("audit_verify.html", {"report": result.report})


# --- sign-offs ---------------------------------------------------------------------------------


def _signoff_page(
    page: StaffPage, principal: Principal, session: SessionDep, status: int = 200, **context: Any
) -> Response:
    rows = review.list_signoffs(session, principal)
    values: dict[str, Any] = {
        "signoffs": rows,
        "max_comment": MAX_COMMENT,
        "form": {"first_seq": "", "last_seq": "", "comment": ""},
    }
    values.update(context)
    return page.render("audit_signoffs.html", values, status=status)


@router.get("/audit/signoffs", response_class=HTMLResponse)
def signoffs(page: ReviewerPage, session: SessionDep, signed: int | None = None) -> Response:
    """Past sign-offs and the form to sign off a reviewed range."""
    principal = page.principal
    if principal is None or not page.permitted:
        return page.refuse()
    return _signoff_page(page, principal, session, signed=signed)


@router.post("/audit/signoffs", response_class=HTMLResponse)
def sign_off(
    *,
    page: ReviewerPage,
    session: SessionDep,
    settings: SettingsDep,
    first_seq: Annotated[str, Form(max_length=20)] = "",
    last_seq: Annotated[str, Form(max_length=20)] = "",
    comment: Annotated[str, Form(max_length=MAX_COMMENT * 4)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Sign off the range first_seq..last_seq against a signed checkpoint."""
    principal = page.principal
    if principal is None or not page.permitted:
        return page.refuse()
    gettext = _gettext(page.request)
    form = {"first_seq": first_seq, "last_seq": last_seq, "comment": comment}
    if not security.csrf_valid(page.request, settings, csrf_token, page.token):
        return _signoff_page(
            page, principal, session, 400, form=form, error=gettext("The form has expired. Please try again.")
        )
    if not (first_seq.strip().isdigit() and last_seq.strip().isdigit()):
        return _signoff_page(
            page,
            principal,
            session,
            400,
            form=form,
            error=gettext("Enter the first and last sequence numbers."),
        )
    try:
        row = review.sign_off(
            session,
            principal,
            page.request.app.state.components.keys,
            first_seq=int(first_seq),
            last_seq=int(last_seq),
            comment=comment.strip(),
        )
    except EnclaveError as exc:
        return _signoff_page(page, principal, session, exc.status_code, form=form, error=exc.detail)
    return RedirectResponse(f"/staff/audit/signoffs?signed={row.id}", status_code=303)
