"""Staff review pages over HTTP: sign-in with password and TOTP, a session cookie, CSRF on every
form, and the ledger, verification and sign-off pages."""

from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import select, text

from access.audit.actions import AUDIT_READ, Role
from access.audit.models import AuditEntry, AuditSignoff
from access.audit.review import AUDIT_RANGE_SIGNED_OFF
from tests.support.auth import StaffUser

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def _login(client, user: StaffUser, code: str | None = None):
    page = client.get("/staff/login")
    assert page.status_code == 200
    form = {
        "email": user.email,
        "password": user.password,
        "totp": code if code is not None else pyotp.TOTP(user.totp_secret).now(),
        "csrf_token": _csrf(page.text),
        "next": "/staff/audit",
    }
    return client.post("/staff/login", data=form, follow_redirects=False)


@pytest.fixture
def dpo(staff_factory) -> StaffUser:
    return staff_factory(roles=[Role.dpo])


def test_pages_send_visitors_who_are_not_signed_in_to_the_sign_in_form(client):
    response = client.get("/staff/audit?role=dpo", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/staff/login?next=%2Fstaff%2Faudit%3Frole%3Ddpo"


def test_dpo_signs_in_with_a_code_and_gets_a_strict_http_only_session_cookie(client, dpo, db_session):
    response = _login(client, dpo)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/staff/audit"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("staff_session="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/staff" in cookie
    page = client.get("/staff/audit")
    assert page.status_code == 200
    assert "Audit ledger" in page.text
    assert "auth.signed_in" in page.text
    reads = db_session.scalars(select(AuditEntry).where(AuditEntry.action == AUDIT_READ)).all()
    assert [r.actor_id for r in reads] == [dpo.account_id]


def test_wrong_code_is_refused_without_a_session(client, dpo):
    response = _login(client, dpo, code="000000")
    assert response.status_code == 401
    assert "Sign-in failed" in response.text
    assert "staff_session" not in response.headers.get("set-cookie", "")


def test_sign_in_without_the_form_token_is_refused(client, dpo):
    client.get("/staff/login")
    form = {"email": dpo.email, "password": dpo.password, "totp": pyotp.TOTP(dpo.totp_secret).now()}
    response = client.post("/staff/login", data=form, follow_redirects=False)
    assert response.status_code == 400
    assert "staff_session" not in response.headers.get("set-cookie", "")


def test_sign_off_form_needs_its_csrf_token_and_then_records_the_range(client, dpo, db_session):
    assert _login(client, dpo).status_code == 303
    page = client.get("/staff/audit/signoffs")
    token = _csrf(page.text)
    forged = client.post(
        "/staff/audit/signoffs", data={"first_seq": "1", "last_seq": "2", "csrf_token": "0" * 64}
    )
    assert forged.status_code == 400
    assert db_session.scalars(select(AuditSignoff)).all() == []
    done = client.post(
        "/staff/audit/signoffs",
        data={"first_seq": "1", "last_seq": "2", "comment": "First look", "csrf_token": token},
    )
    assert done.status_code == 200
    assert "Range signed off" in done.text
    assert "First look" in done.text
    (row,) = db_session.scalars(select(AuditSignoff)).all()
    assert (row.first_seq, row.last_seq, row.reviewer_id) == (1, 2, dpo.account_id)
    entries = db_session.scalars(select(AuditEntry).where(AuditEntry.action == AUDIT_RANGE_SIGNED_OFF))
    assert [e.target_id for e in entries] == [str(row.id)]


def test_sign_off_beyond_the_ledger_is_explained_on_the_page(client, dpo):
    assert _login(client, dpo).status_code == 303
    token = _csrf(client.get("/staff/audit/signoffs").text)
    response = client.post(
        "/staff/audit/signoffs", data={"first_seq": "1", "last_seq": "99999", "csrf_token": token}
    )
    assert response.status_code == 400
    assert "cannot end at 99999" in response.text


def test_bad_filters_are_explained_on_the_ledger_page(client, dpo):
    assert _login(client, dpo).status_code == 303
    response = client.get("/staff/audit", params={"from": "2026-03-01T00:00", "to": "2026-01-01T00:00"})
    assert response.status_code == 400
    assert "after its end" in response.text


def test_verification_page_reports_an_intact_ledger(client, dpo):
    assert _login(client, dpo).status_code == 303
    response = client.get("/staff/audit/verify")
    assert response.status_code == 200
    assert "Intact." in response.text


def test_export_link_downloads_csv_with_the_session_cookie(client, dpo):
    assert _login(client, dpo).status_code == 303
    response = client.get("/staff/audit/export", params={"format": "csv", "action": "auth.signed_in"})
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.text.splitlines()[0].startswith("seq,time,actor_id")


def test_sign_out_ends_the_session(client, dpo):
    assert _login(client, dpo).status_code == 303
    token = _csrf(client.get("/staff/audit").text)
    response = client.post("/staff/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert client.get("/staff/audit", follow_redirects=False).status_code == 303


def test_researcher_may_not_open_the_review_pages(client, staff_factory):
    researcher = staff_factory(roles=[Role.researcher])
    page = client.get("/staff/login")
    form = {
        "email": researcher.email,
        "password": researcher.password,
        "totp": "",
        "csrf_token": _csrf(page.text),
    }
    assert client.post("/staff/login", data=form, follow_redirects=False).status_code == 303
    response = client.get("/staff/audit")
    assert response.status_code == 403
    assert "Not allowed" in response.text


@pytest.mark.parametrize(
    ("lang", "heading"),
    [("es", "Acceso del personal"), ("bg", "Вход за служители"), ("pl", "Logowanie pracowników"),
     ("fr", "Connexion du personnel"), ("nl", "Aanmelden voor medewerkers")],
)  # fmt: skip
def test_sign_in_page_speaks_each_project_language(client, lang, heading):
    response = client.get("/staff/login", params={"lang": lang})
    assert f"<h1>{heading}</h1>" in response.text


def test_verification_page_names_the_first_tampered_entry(client, dpo, db_connection):
    assert _login(client, dpo).status_code == 303
    db_connection.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only"))
    # The sign-in just recorded is entry 1.
    db_connection.execute(text("UPDATE audit_entry SET target_id = 'forged' WHERE seq = 1"))
    db_connection.execute(text("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only"))
    response = client.get("/staff/audit/verify")
    assert response.status_code == 200
    assert "Problems found." in response.text
    assert "The first entry concerned is number 1." in response.text


def test_every_string_of_the_review_pages_is_translated():
    from pathlib import Path

    from babel.messages.pofile import read_po

    import access.web

    root = Path(access.web.__file__).parent
    sources = [root / "pages.py", *sorted((root / "templates").glob("*.html"))]
    pattern = re.compile(r"""(?:\b_|\bgettext)\(\s*(["'])(.+?)\1\s*\)""", re.S)
    wanted = {m.group(2) for path in sources for m in pattern.finditer(path.read_text())}
    wanted.discard("LET'S CARE research enclave")  # translated by the shared catalog
    assert len(wanted) > 70
    for lang in ("es", "bg", "pl", "fr", "nl"):
        with (root / "locale" / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
            catalog = read_po(handle, locale=lang)
        missing = sorted(m for m in wanted if not (catalog.get(m) and catalog.get(m).string))
        assert not missing, f"{lang}: {missing}"


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/staff/", "/api/audit/entries", "/staff/\\evil", ""]
)
def test_sign_in_never_redirects_off_the_staff_pages(client, dpo, target):
    page = client.get("/staff/login")
    form = {
        "email": dpo.email,
        "password": dpo.password,
        "totp": pyotp.TOTP(dpo.totp_secret).now(),
        "csrf_token": _csrf(page.text),
        "next": target,
    }
    response = client.post("/staff/login", data=form, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/staff/audit"


def test_cookies_are_secure_over_https(client, dpo):
    from fastapi.testclient import TestClient

    with TestClient(client.app, base_url="https://testserver") as secure:
        response = _login(secure, dpo)
    cookies = response.headers.get_list("set-cookie")
    assert cookies
    assert all("Secure" in c for c in cookies), cookies


def test_a_form_token_from_before_sign_in_is_refused_after_it(client, dpo, db_session):
    before = _csrf(client.get("/staff/login").text)
    assert _login(client, dpo).status_code == 303
    response = client.post(
        "/staff/audit/signoffs", data={"first_seq": "1", "last_seq": "1", "csrf_token": before}
    )
    assert response.status_code == 400
    assert db_session.scalars(select(AuditSignoff)).all() == []
