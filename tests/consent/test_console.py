"""The steward console pages over HTTP: staff sign-in, CSRF on every form, the roster report line by
line, campaigns with their counts and letters, and the dashboard per school and purpose."""

from __future__ import annotations

import re
from datetime import date

import pyotp
import pytest
from sqlalchemy import select, update

from access.accounts.models import Account
from access.audit.actions import Role
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.invitations.models import Campaign
from consent.rosters.models import Delivery, Student
from tests.support.consent import load_rules, make_form, make_guardian, make_student
from tests.support.projects import make_principal

SCHOOL = "PL-KRK-007"
HEADER = "student_ref,country,school,stage,class,language,birth_year,birth_month\n"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def students_csv(*rows: str) -> bytes:
    return (HEADER + "".join(f"{row}\n" for row in rows)).encode()


GOOD = f"P-0001,PL,{SCHOOL},2,7A,pl,2015,3"


@pytest.fixture(autouse=True)
def _rules(db_session):
    load_rules(db_session)


def sign_in_page(client, user) -> None:
    """Sign in through the staff sign-in form, as a browser does (cookie session)."""
    client.cookies.clear()
    token = CSRF.search(client.get("/staff/login").text).group(1)
    components = client.app.state.components
    with components.session_factory() as session:
        session.execute(update(Account).where(Account.id == user.account_id).values(totp_last_step=None))
        session.commit()
    answer = client.post(
        "/staff/login",
        data={
            "email": user.email,
            "password": user.password,
            "totp": pyotp.TOTP(user.totp_secret).now(),
            "csrf_token": token,
            "next": "/staff/steward",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/staff/steward"


def csrf_of(client, path: str) -> str:
    return CSRF.search(client.get(path).text).group(1)


@pytest.fixture
def steward(client, staff_factory):
    user = staff_factory(roles=[Role.data_steward], country="PL", schools=[SCHOOL])
    sign_in_page(client, user)
    return user


def upload(client, data: bytes, action: str, *, kind: str = "students", token: str | None = None):
    return client.post(
        "/staff/steward/rosters",
        data={
            "kind": kind,
            "action": action,
            "csrf_token": token or csrf_of(client, "/staff/steward/rosters"),
        },
        files={"file": ("students.csv", data, "text/csv")},
    )


def test_console_sends_anonymous_visitors_to_sign_in_and_refuses_other_roles(client, staff_factory):
    answer = client.get("/staff/steward/campaigns", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/staff/login?next=%2Fstaff%2Fsteward%2Fcampaigns"
    sign_in_page(client, staff_factory(roles=[Role.dpo]))
    refused = client.get("/staff/steward")
    assert refused.status_code == 403
    assert "Not allowed" in refused.text


def test_home_lists_the_stewards_schools(client, steward, db_session, protector):
    make_student(db_session, protector, country="PL", school=SCHOOL)
    make_student(db_session, protector, country="PL", school="PL-WAW-001")
    page = client.get("/staff/steward", headers={"Accept-Language": "bg"})
    assert page.status_code == 200
    assert '<html lang="en">' in page.text  # the console is in English whatever the browser prefers
    assert page.headers["content-language"] == "en"
    assert SCHOOL in page.text
    assert "PL-WAW-001" not in page.text


def test_roster_check_reports_every_problem_by_row_and_column_and_imports_nothing(
    client, steward, db_session
):
    bad = students_csv(
        GOOD, f"P-0002,PL,{SCHOOL},2,7A,pl,2015,13", f"P-0003,PL,{SCHOOL},2,=SUM(A1),pl,2015,3"
    )
    page = upload(client, bad, "validate")
    assert page.status_code == 422
    rows = re.findall(r'<tr><th scope="row">(\d+)</th><td>([^<]*)</td><td>([^<]*)</td></tr>', page.text)
    assert [(row, column) for row, column, _ in rows] == [("3", "birth_month"), ("4", "class")]
    assert "spreadsheet formula" in rows[1][2]
    imported = upload(client, bad, "import")
    assert imported.status_code == 422
    assert db_session.execute(select(Student)).first() is None


def test_fixed_roster_is_checked_then_imported(client, steward, db_session):
    fixed = students_csv(GOOD, f"P-0002,PL,{SCHOOL},2,7A,pl,2015,12")
    checked = upload(client, fixed, "validate")
    assert checked.status_code == 200
    assert "The file is valid: nothing has been imported yet." in checked.text
    assert db_session.execute(select(Student)).first() is None
    imported = upload(client, fixed, "import")
    assert imported.status_code == 200
    assert "Imported 2 rows:" in imported.text
    assert "2 created" in imported.text
    assert len(db_session.execute(select(Student)).all()) == 2


def test_roster_upload_without_the_csrf_token_is_refused(client, steward, db_session):
    answer = upload(client, students_csv(GOOD), "import", token="forged")
    assert answer.status_code == 400
    assert "The form has expired" in answer.text
    assert db_session.execute(select(Student)).first() is None


def test_roster_upload_without_a_file_or_kind_says_what_is_missing(client, steward):
    token = csrf_of(client, "/staff/steward/rosters")
    no_file = client.post("/staff/steward/rosters", data={"kind": "students", "csrf_token": token})
    assert no_file.status_code == 422
    assert "Choose a CSV file" in no_file.text
    no_kind = upload(client, students_csv(GOOD), "validate", kind="pupils")
    assert no_kind.status_code == 422
    assert "Choose which roster" in no_kind.text


def test_campaign_is_sent_from_the_console_with_counts_and_the_letters_download(
    client, steward, db_session, protector
):
    make_form(db_session, "PL", "pl")
    child = make_student(
        db_session, protector, country="PL", school=SCHOOL, birth_year=date.today().year - 11, language="pl"
    )
    make_guardian(db_session, protector, [child], language="pl")
    make_guardian(db_session, protector, [child], language="pl").delivery = Delivery.school.value
    db_session.flush()
    token = csrf_of(client, "/staff/steward/campaigns")
    answer = client.post(
        "/staff/steward/campaigns",
        data={"school": SCHOOL, "reason": "invitation", "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    page = client.get(answer.headers["location"])
    assert "Sent." in page.text
    assert "1 emails queued, 2 letters to print" in page.text
    link = re.search(r'href="(/staff/steward/campaigns/[^"]+/letters\.pdf)"', page.text).group(1)
    pdf = client.get(link)
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")
    listing = client.get("/staff/steward/campaigns")
    assert listing.text.count("<td>PL-KRK-007</td>") == 1


def test_campaign_form_without_the_csrf_token_sends_nothing(client, steward, db_session, protector):
    make_student(db_session, protector, country="PL", school=SCHOOL)
    answer = client.post("/staff/steward/campaigns", data={"school": SCHOOL, "reason": "invitation"})
    assert answer.status_code == 400
    assert db_session.execute(select(Campaign)).first() is None


def test_campaign_refusal_is_shown_on_the_page_and_leaves_nothing(client, steward, db_session, protector):
    make_student(db_session, protector, country="PL", school=SCHOOL)
    token = csrf_of(client, "/staff/steward/campaigns")
    answer = client.post(
        "/staff/steward/campaigns", data={"school": SCHOOL, "reason": "reconsent", "csrf_token": token}
    )
    assert answer.status_code == 409
    assert "nobody at PL-KRK-007 has anything to decide" in answer.text
    other = client.post(
        "/staff/steward/campaigns", data={"school": "PL-WAW-001", "reason": "invitation", "csrf_token": token}
    )
    assert other.status_code == 403
    assert "outside your scope" in other.text
    assert db_session.execute(select(Campaign)).first() is None


def test_dashboard_counts_statuses_per_purpose_with_a_chart_and_a_table(
    client, steward, db_session, protector
):
    form = make_form(db_session, "PL", "pl")
    year = date.today().year
    decided = make_student(db_session, protector, country="PL", school=SCHOOL, birth_year=year - 6)
    make_student(db_session, protector, country="PL", school=SCHOOL, birth_year=year - 6)
    guardian = make_guardian(db_session, protector, [decided], language="pl")
    purposes = [p.purpose for p in form.purposes]
    record_decision(
        db_session,
        make_principal(db_session, Role.data_steward).actor,
        DecisionCreate(
            subject_id=decided.subject_id,
            decided_by="guardian",
            guardian_id=guardian.guardian_id,
            form_id=form.id,
            text_sha256=next(t.sha256 for t in form.texts if t.audience == "guardian"),
            choices={p: ("granted" if i == 0 else "declined") for i, p in enumerate(purposes)},
            channel="paper",
        ),
    )
    page = client.get(f"/staff/steward/dashboard?school={SCHOOL}")
    assert page.status_code == 200
    assert '<svg role="img" aria-labelledby="chart-title chart-desc"' in page.text
    first = re.search(rf'<tr><th scope="row">{purposes[0]}</th>((?:<td>\d+</td>)+)</tr>', page.text).group(1)
    # granted, declined, withdrawn, pending, expired, re-consent required, students
    assert re.findall(r"\d+", first) == ["1", "0", "0", "1", "0", "0", "2"]
    second = re.search(rf'<tr><th scope="row">{purposes[1]}</th>((?:<td>\d+</td>)+)</tr>', page.text).group(1)
    assert re.findall(r"\d+", second)[:4] == ["0", "1", "0", "1"]


def test_dashboard_of_a_school_outside_the_scope_is_not_shown(client, steward, db_session, protector):
    make_student(db_session, protector, country="PL", school="PL-WAW-001")
    page = client.get("/staff/steward/dashboard?school=PL-WAW-001")
    assert page.status_code == 404
    assert "is not one of your schools" in page.text
