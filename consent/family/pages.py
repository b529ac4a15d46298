"""Family pages (server-rendered, no JavaScript needed): open a link or type a code, read, decide,
confirm, keep a receipt, see and withdraw what was agreed, ask for a copy or erasure of the data.

The link (``/f/<token>``) or the code (``/code``) opens a short family session: an HttpOnly,
SameSite=Strict cookie. Every page checks it (a missing or expired session gets the page telling how
to get a new link), every POST checks the session's CSRF token (403, nothing recorded), and every
subject or receipt named in a URL must belong to the person of the session (404 otherwise).

Deciding is two steps: the form (one fieldset per purpose, nothing pre-selected; "Accept all" and
"Decline all" fill every answer and still lead to the summary) and the summary with "Confirm" and
"Change". The form carries the id of the form version, the SHA-256 of the text shown and a random
nonce; the nonce makes the idempotency key, so a double click records once.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from babel.dates import format_date
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from consent.decisions import repository
from consent.decisions.exceptions import DecisionConflict, InvalidDecision
from consent.decisions.models import Choice, Status
from consent.dependencies import IdentityDep
from consent.family import receipts, service
from consent.family.service import FamilySubjectNotFound, SubjectView
from consent.family.texts import Question, demoted, segments, title_first
from consent.family.web import FamilyPage, Page, csrf_ok, link_keys, start_session
from consent.forms.models import ConsentForm
from consent.forms.service import text_for
from consent.invitations import service as invitations
from consent.invitations.exceptions import CodeAttemptsExceeded, LinkNotUsable
from consent.requests.models import RequestKind
from infra.logging import get_logger
from infra.settings import SUPPORTED_LANGUAGES
from infra.web.deps import SessionDep
from infra.web.i18n import add_catalog_dir, language_name
from infra.web.templating import templates

log = get_logger(__name__)

HERE = Path(__file__).parent
templates.add_folder(HERE / "templates")
add_catalog_dir(HERE / "locale")
CSS = HERE / "static" / "family.css"

router = APIRouter(tags=["family pages"], include_in_schema=False)

WITHDRAWABLE = {Status.granted, Status.expired, Status.reconsent_required}


# --- opening ------------------------------------------------------------------------------------


@router.get("/family/static/family.css")
def stylesheet() -> FileResponse:
    """The family pages' stylesheet."""
    return FileResponse(CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/f/{token}", response_class=HTMLResponse)
def open_link(token: str, request: Request, session: SessionDep) -> Response:
    """Use a link once: opens the family session, or explains what to do next."""
    page = FamilyPage(request, session, None)
    client = request.client.host if request.client else "unknown"
    try:
        opened = invitations.open_link(session, link_keys(request), token, client=client)
    except CodeAttemptsExceeded:
        limited = page.render("family_link_unusable.html", {"reason": "too_many"}, status=429)
        limited.headers["Retry-After"] = str(int(invitations.CODE_WINDOW.total_seconds()))
        return limited
    except LinkNotUsable as exc:
        return page.render("family_link_unusable.html", {"reason": exc.reason}, status=410)
    return start_session(request, opened)


@router.get("/code", response_class=HTMLResponse)
def code_form(request: Request, session: SessionDep) -> Response:
    """The page where a family with a letter types its short code."""
    return FamilyPage(request, session, None).render("family_code.html", {"error": None})


def _cross_site(request: Request) -> bool:
    """Whether a form post comes from another site (Fetch metadata, else the Origin header).

    With ``Referrer-Policy: no-referrer`` browsers send ``Origin: null`` for the pages' own forms, so
    only a real foreign origin counts; only the host is compared, as behind a proxy ending TLS the
    scheme seen here may differ from the browser's.
    """
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc != request.headers.get("host", request.url.netloc)


@router.post("/code", response_class=HTMLResponse)
async def enter_code(request: Request, session: SessionDep) -> Response:
    """Use a short code once; wrong codes count against the address, then it must wait."""
    page = FamilyPage(request, session, None)
    if _cross_site(request):
        # Another site posting a code would sign the visitor into someone else's family session.
        return page.forbidden()
    form = await request.form()
    code = str(form.get("code", ""))[:40]
    client = request.client.host if request.client else "unknown"
    try:
        opened = invitations.enter_code(session, link_keys(request), code, client=client)
    except CodeAttemptsExceeded:
        limited = page.render("family_code.html", {"error": "too_many"}, status=429)
        limited.headers["Retry-After"] = str(int(invitations.CODE_WINDOW.total_seconds()))
        return limited
    except LinkNotUsable as exc:
        if exc.reason == "unknown":
            return page.render("family_code.html", {"error": "unknown"}, status=410)
        return page.render("family_link_unusable.html", {"reason": exc.reason}, status=410)
    return start_session(request, opened)


# --- home ---------------------------------------------------------------------------------------


@router.get("/family", response_class=HTMLResponse)
def home(page: Page) -> Response:
    """Who you act as and, per child (or yourself), the current answers and what to do."""
    if page.family is None:
        return page.expired()
    views = service.subjects(page.session, page.family)
    return page.render("family_home.html", {"views": views})


# --- deciding -----------------------------------------------------------------------------------


def _decide_context(
    page: FamilyPage,
    view: SubjectView,
    form: ConsentForm,
    *,
    choices: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    assert page.family is not None
    parts, questions = segments(form, page.family.audience)
    title, parts = title_first(parts)
    languages = service.form_languages(page.session, view.country)
    return {
        "view": view,
        "form": form,
        "title": title,
        "parts": parts,
        "questions": questions,
        "text_sha256": service.text_sha256(form, page.family),
        "nonce": nonce or secrets.token_hex(16),
        "choices": choices or {},
        "errors": errors or {},
        "notice": notice,
        "form_languages": [(c, language_name(c)) for c in languages],
    }


def _subject_or_none(page: FamilyPage, subject_id: str) -> SubjectView | None:
    assert page.family is not None
    try:
        return service.subject(page.session, page.family, subject_id)
    except FamilySubjectNotFound:
        return None


def _cannot_decide(page: FamilyPage, view: SubjectView) -> HTMLResponse:
    return page.render("family_message.html", {"kind": view.blocked_reason or "cannot", "view": view}, 409)


@router.get("/family/decide/{subject_id}", response_class=HTMLResponse)
def decide_form(page: Page, subject_id: str, lang: str | None = None) -> Response:
    """The form text for the reader (guardian, child or adult) with one question per purpose."""
    view = _guard(page, subject_id)
    if isinstance(view, Response):
        return view
    assert page.family is not None
    form = service.pick_form(page.session, view.country, [lang, *page.preferred_languages])
    if form is None:
        return page.render("family_message.html", {"kind": "no_form"}, status=409)
    return page.render("family_decide.html", _decide_context(page, view, form))


def _posted_choices(form: Any, questions: list[Question]) -> tuple[dict[str, str], bool]:
    choices: dict[str, str] = {}
    bad = False
    for question in questions:
        value = form.get(f"choice_{question.code}")
        if value is None or value == "":
            continue
        if value in (Choice.granted.value, Choice.declined.value):
            choices[question.code] = str(value)
        else:
            bad = True
    return choices, bad


def _posted_form(page: FamilyPage, view: SubjectView, posted: Any) -> tuple[ConsentForm | None, str, str]:
    """The form version the page was rendered with, if it is still the one to answer."""
    assert page.family is not None
    raw_id = str(posted.get("form_id", ""))
    text_hash = str(posted.get("text_sha256", ""))
    nonce = str(posted.get("nonce", ""))
    if not raw_id.isdigit() or len(raw_id) > 9:
        return None, text_hash, nonce
    form = page.session.get(ConsentForm, int(raw_id))
    if form is None or form.country_code != view.country:
        return None, text_hash, nonce
    current = service.pick_form(page.session, view.country, [form.language])
    if current is None or current.id != form.id or service.text_sha256(form, page.family) != text_hash:
        return None, text_hash, nonce
    return form, text_hash, nonce


def _text_changed(page: FamilyPage, view: SubjectView, language: str | None, status: int) -> HTMLResponse:
    assert page.family is not None
    form = service.pick_form(page.session, view.country, [language, *page.preferred_languages])
    if form is None:
        return page.render("family_message.html", {"kind": "no_form"}, status=409)
    context = _decide_context(page, view, form, notice="text_changed")
    return page.render("family_decide.html", context, status=status)


def _guard(
    page: FamilyPage, subject_id: str, posted: Any = None, *, deciding: bool = True
) -> Response | SubjectView:
    """The subject, or the page to answer with: no session, a missing CSRF token, not theirs."""
    if page.family is None:
        return page.expired()
    if posted is not None and not csrf_ok(page, posted.get("csrf_token")):
        return page.forbidden()
    view = _subject_or_none(page, subject_id)
    if view is None:
        return page.not_found()
    if deciding and not view.can_decide:
        return _cannot_decide(page, view)
    return view


@router.post("/family/decide/{subject_id}", response_class=HTMLResponse)
async def decide_review(page: Page, subject_id: str) -> Response:
    """Check the answers: the form again with errors next to the questions, or the summary to confirm."""
    posted = await page.request.form()
    view = _guard(page, subject_id, posted)
    if isinstance(view, Response):
        return view
    assert page.family is not None
    form, _, nonce = _posted_form(page, view, posted)
    if form is None or not service.valid_nonce(nonce):
        return _text_changed(page, view, str(posted.get("lang", "")) or None, 409)
    _, questions = segments(form, page.family.audience)
    action = str(posted.get("action", "review"))
    if action == "accept_all":
        choices = {q.code: Choice.granted.value for q in questions}
    elif action == "decline_all":
        choices = {q.code: Choice.declined.value for q in questions}
    else:
        choices, _ = _posted_choices(posted, questions)
    errors = {q.code: "required" for q in questions if q.required and q.code not in choices}
    if not choices and not errors:
        errors = {questions[0].code: "one"} if questions else {}
    if action == "change" or errors:
        context = _decide_context(
            page, view, form, choices=choices, errors={} if action == "change" else errors, nonce=nonce
        )
        return page.render("family_decide.html", context, status=200 if action == "change" else 422)
    summary = [(q, choices.get(q.code)) for q in questions]
    return page.render(
        "family_confirm.html",
        {
            "view": view,
            "form": form,
            "summary": summary,
            "choices": choices,
            "text_sha256": service.text_sha256(form, page.family),
            "nonce": nonce,
        },
    )


def _record(
    page: FamilyPage,
    view: SubjectView,
    form: ConsentForm,
    *,
    choices: dict[str, str],
    text_hash: str,
    nonce: str,
) -> Response:
    """Record through the decision service; its refusals become pages saying what to do."""
    assert page.family is not None
    try:
        recorded = service.decide(
            page.session,
            page.family,
            view.subject_id,
            form_id=form.id,
            text_hash=text_hash,
            choices={code: Choice(value) for code, value in choices.items()},
            nonce=nonce,
        )
    except InvalidDecision as exc:
        log.info("consent.family_decision_refused", reason=exc.code)
        if exc.code == "required_purpose_missing":
            _, questions = segments(form, page.family.audience)
            errors = {q.code: "required" for q in questions if q.required and q.code not in choices}
            context = _decide_context(page, view, form, choices=choices, errors=errors, nonce=nonce)
            return page.render("family_decide.html", context, status=422)
        return _text_changed(page, view, form.language, 422)
    except DecisionConflict as exc:
        log.info("consent.family_decision_refused", reason=exc.code)
        if exc.code in ("form_superseded", "form_not_published"):
            return _text_changed(page, view, form.language, 409)
        kind = "decides_alone" if exc.code == "student_decides_alone" else "conflict"
        return page.render("family_message.html", {"kind": kind, "view": view}, status=409)
    return RedirectResponse(f"/family/receipt/{recorded.event_id}", status_code=303)


@router.post("/family/decide/{subject_id}/confirm", response_class=HTMLResponse)
async def decide_confirm(page: Page, subject_id: str) -> Response:
    """Record the confirmed answers, then show the receipt (a second click records nothing new)."""
    posted = await page.request.form()
    view = _guard(page, subject_id, posted)
    if isinstance(view, Response):
        return view
    assert page.family is not None
    raw_id = str(posted.get("form_id", ""))
    nonce = str(posted.get("nonce", ""))
    text_hash = str(posted.get("text_sha256", ""))
    well_formed = (
        raw_id.isdigit() and len(raw_id) <= 9 and service.valid_nonce(nonce) and len(text_hash) == 64
    )
    form = page.session.get(ConsentForm, int(raw_id)) if well_formed else None
    if form is None:
        return _text_changed(page, view, str(posted.get("lang", "")) or None, 409)
    _, questions = segments(form, page.family.audience)
    choices, bad = _posted_choices(posted, questions)
    if bad or not choices:
        return _text_changed(page, view, form.language, 422)
    return _record(page, view, form, choices=choices, text_hash=text_hash, nonce=nonce)


# --- receipts -----------------------------------------------------------------------------------


@router.get("/family/receipt/{event_id}.json")
def receipt_json(page: Page, event_id: str) -> Response:
    """The consent record of one decision (ISO/IEC TS 27560 structure) to download."""
    if page.family is None:
        return page.expired()
    try:
        found = service.event(page.session, page.family, event_id)
    except FamilySubjectNotFound:
        return page.not_found()
    history = service.own_decisions(page.session, page.family, found.view)
    record = receipts.consent_record(found, history)
    return Response(
        json.dumps(record, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="consent-record-{event_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/family/receipt/{event_id}", response_class=HTMLResponse)
def receipt(page: Page, event_id: str, print: str | None = None, done: str | None = None) -> Response:
    """What was decided, when, on which text; how to withdraw; download and print."""
    if page.family is None:
        return page.expired()
    try:
        found = service.event(page.session, page.family, event_id)
    except FamilySubjectNotFound:
        return page.not_found()
    text = text_for(found.form, page.family.audience)
    return page.render(
        "family_receipt.html",
        {
            "event": found,
            "view": found.view,
            "text_html": demoted(text.rendered_html),
            "printable": print == "1",
            "withdrawn": done == "withdrawn",
        },
    )


# --- what you agreed to, withdrawal ---------------------------------------------------------------


def _withdrawable(page: FamilyPage, view: SubjectView) -> list[str]:
    assert page.family is not None
    if not view.can_decide:
        return []
    own = service.latest_by_purpose(service.own_decisions(page.session, page.family, view))
    return [
        purpose
        for purpose, status in view.statuses.items()
        if purpose in own and (status in WITHDRAWABLE or own[purpose].choice == Choice.granted.value)
    ]


@router.get("/family/agreed", response_class=HTMLResponse)
def agreed(page: Page) -> Response:
    """The current answers per child and purpose, the date and the wording agreed to."""
    if page.family is None:
        return page.expired()
    rows = []
    for view in service.subjects(page.session, page.family):
        own = service.latest_by_purpose(service.own_decisions(page.session, page.family, view))
        rows.append((view, own, _withdrawable(page, view)))
    return page.render("family_agreed.html", {"rows": rows})


@router.get("/family/withdraw/{subject_id}", response_class=HTMLResponse)
def withdraw_form(page: Page, subject_id: str, purpose: str | None = None) -> Response:
    """Second click: confirm withdrawing one purpose, or everything agreed to."""
    view = _guard(page, subject_id)
    if isinstance(view, Response):
        return view
    open_purposes = _withdrawable(page, view)
    chosen = [purpose] if purpose else open_purposes
    if not chosen or any(p not in open_purposes for p in chosen):
        return page.render("family_message.html", {"kind": "nothing_to_withdraw"}, status=404)
    return page.render(
        "family_withdraw.html", {"view": view, "purposes": chosen, "nonce": secrets.token_hex(16)}
    )


@router.post("/family/withdraw/{subject_id}", response_class=HTMLResponse)
async def withdraw(page: Page, subject_id: str) -> Response:
    """Record the withdrawal; data for those purposes stop being used."""
    posted = await page.request.form()
    view = _guard(page, subject_id, posted)
    if isinstance(view, Response):
        return view
    assert page.family is not None
    purposes = [str(p) for p in posted.getlist("purpose")]
    nonce = str(posted.get("nonce", ""))
    if not service.valid_nonce(nonce):
        return page.forbidden()
    earlier = repository.event_rows(page.session, page.family.idempotency_key(nonce))
    if earlier:
        # The same confirmation posted again (a double click): show what the first one recorded.
        return RedirectResponse(f"/family/receipt/{earlier[0].event_id}?done=withdrawn", status_code=303)
    open_purposes = _withdrawable(page, view)
    form = _withdraw_form(page, view)
    if not purposes or form is None or any(p not in open_purposes for p in purposes):
        return page.render("family_message.html", {"kind": "nothing_to_withdraw"}, status=404)
    on_form = {fp.purpose for fp in form.purposes}
    choices = {p: Choice.withdrawn.value for p in purposes if p in on_form}
    answer = _record(
        page, view, form, choices=choices, text_hash=service.text_sha256(form, page.family), nonce=nonce
    )
    if isinstance(answer, RedirectResponse):
        answer.headers["location"] += "?done=withdrawn"
    return answer


def _withdraw_form(page: FamilyPage, view: SubjectView) -> ConsentForm | None:
    """The current form in the language of the person's last decision (or of the page)."""
    assert page.family is not None
    own = service.own_decisions(page.session, page.family, view)
    last_form = page.session.get(ConsentForm, own[0].form_id) if own else None
    wanted = [last_form.language if last_form else None, *page.preferred_languages]
    return service.pick_form(page.session, view.country, wanted)


# --- data-subject requests ----------------------------------------------------------------------


@router.get("/family/request/{subject_id}", response_class=HTMLResponse)
def request_form(page: Page, subject_id: str) -> Response:
    """Ask for a copy of the data or for their erasure."""
    view = _guard(page, subject_id, deciding=False)
    if isinstance(view, Response):
        return view
    return page.render("family_request.html", {"view": view, "error": None})


@router.post("/family/request/{subject_id}", response_class=HTMLResponse)
async def request_create(page: Page, subject_id: str, protector: IdentityDep) -> Response:
    """Create the data-subject request; the answer says by when the project must reply."""
    posted = await page.request.form()
    view = _guard(page, subject_id, posted, deciding=False)
    if isinstance(view, Response):
        return view
    assert page.family is not None
    kind = str(posted.get("kind", ""))
    if kind not in (RequestKind.access.value, RequestKind.erasure.value):
        return page.render("family_request.html", {"view": view, "error": "kind"}, status=422)
    language = page.language if page.language in SUPPORTED_LANGUAGES else "en"
    created = service.request_copy_or_erasure(
        page.session, protector, page.family, view, kind=RequestKind(kind), language=language
    )
    return page.render(
        "family_request_done.html",
        {
            "view": view,
            "kind": kind,
            "due": format_date(created.due_on, "long", locale=page.language),
            "request_id": created.id,
        },
        status=201,
    )
