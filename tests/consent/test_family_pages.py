"""The family pages over HTTP: opening links and codes, deciding, receipts, withdrawal, requests, and
each abuse case (reused, expired and forged links, guessed codes, missing CSRF token, another
family's child, double submission, switching language halfway)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from consent.decisions.models import Decision
from consent.forms.models import ConsentForm
from consent.invitations import service as invitations
from consent.invitations.models import FamilySession, InvitationChannel, InvitationReason, InviteeKind
from consent.requests.models import DataSubjectRequest
from tests.support.consent import load_rules, make_form, make_guardian, make_student, make_teacher

SCHOOL = "BG-SOF-001"


def born_aged(age: int) -> tuple[int, int]:
    """Birth year and month of someone who is ``age`` today and stays so for weeks."""
    today = datetime.now(UTC).date()
    month = 6 if today.month >= 9 or today.month <= 3 else 12
    return today.year - age - (1 if month >= today.month else 0), month


def text_hash(form: ConsentForm, audience: str) -> str:
    return next(t.sha256 for t in form.texts if t.audience == audience)


def hidden(html: str) -> dict[str, str]:
    """The hidden fields of the first form of a page."""
    return dict(re.findall(r'<input type="hidden" name="([a-z_0-9]+)" value="([^"]*)"', html))


def decisions(session) -> int:
    return session.execute(select(func.count()).select_from(Decision)).scalar_one()


class World:
    """A Bulgarian family (a 10-year-old; forms in Bulgarian and English), another Bulgarian family,
    a Spanish 15-year-old (decides alone) with a guardian, and a Bulgarian teacher."""

    def __init__(self, session, protector, keys) -> None:
        self.session, self.keys = session, keys
        load_rules(session)
        self.form = make_form(session, "BG", "bg", required=("questionnaires",))
        self.form_en = make_form(session, "BG", "en", wording="english")
        self.es_form = make_form(session, "ES", "es")
        year, month = born_aged(10)
        self.child = make_student(session, protector, birth_year=year, birth_month=month)
        self.guardian = make_guardian(session, protector, [self.child])
        self.other_child = make_student(session, protector, birth_year=year, birth_month=month)
        self.other_guardian = make_guardian(session, protector, [self.other_child])
        year, month = born_aged(15)
        self.teen = make_student(
            session,
            protector,
            country="ES",
            school="ES-AND-003",
            language="es",
            birth_year=year,
            birth_month=month,
        )
        self.teen_guardian = make_guardian(session, protector, [self.teen], language="es")
        self.teacher = make_teacher(session, protector)

    def invite(self, target, kind: InviteeKind = InviteeKind.guardian, *, now: datetime | None = None, **kw):
        country = getattr(target, "country_code", "BG")
        return invitations.issue(
            self.session,
            self.keys,
            kind=kind,
            target=target,
            school=kw.get("school", SCHOOL),
            country=country,
            language=kw.get("language", target.language),
            channel=InvitationChannel.email,
            reason=InvitationReason.invitation,
            now=now,
        )


@pytest.fixture
def world(db_session, protector, components):
    return World(db_session, protector, components.keys)


def open_as(client, world, target, kind=InviteeKind.guardian):
    issued = world.invite(target, kind)
    answer = client.get(f"/f/{issued.token}", follow_redirects=False)
    assert answer.status_code == 303
    return issued


def start_decision(client, subject_id: str, lang: str | None = None) -> dict[str, str]:
    page = client.get(f"/family/decide/{subject_id}" + (f"?lang={lang}" if lang else ""))
    assert page.status_code == 200, page.text
    return hidden(page.text)


def confirm(client, subject_id: str, fields: dict[str, str], choices: dict[str, str]):
    body = dict(fields)
    body.update({f"choice_{p}": c for p, c in choices.items()})
    return client.post(f"/family/decide/{subject_id}/confirm", data=body, follow_redirects=False)


# --- opening links and codes ----------------------------------------------------------------------


def test_a_link_opens_a_short_httponly_strict_session_and_the_home_page_identifies_the_child_without_a_name(
    client, world, db_session
):
    issued = world.invite(world.guardian)
    answer = client.get(f"/f/{issued.token}", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/family?lang=bg"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("family_session=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/", f"Max-Age={invitations.SESSION_MINUTES * 60}"):
        assert attribute.lower() in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http here; https requests get Secure
    home = client.get("/family?lang=en")
    assert home.status_code == 200
    assert '<html lang="en">' in home.text
    assert "class 7A" in home.text
    assert SCHOOL in home.text
    assert "Maria" not in home.text  # the guardian's name is never shown
    assert f"/family/decide/{world.child.subject_id}" in home.text
    assert f"/family/decide/{world.other_child.subject_id}" not in home.text
    assert home.text.count("<h1") == 1


def test_a_link_used_twice_answers_410_with_how_to_get_a_new_one_in_the_family_language(client, world):
    issued = open_as(client, world, world.guardian)
    client.cookies.clear()
    again = client.get(f"/f/{issued.token}", headers={"Accept-Language": "bg,en;q=0.5"})
    assert again.status_code == 410
    assert '<html lang="bg">' in again.text
    assert "училището" in again.text  # ask the school, in Bulgarian
    assert 'href="/code"' in again.text


def test_an_expired_link_answers_410_and_opens_nothing(client, world, db_session):
    issued = world.invite(world.guardian, now=datetime.now(UTC) - invitations.VALID_FOR - timedelta(hours=1))
    answer = client.get(f"/f/{issued.token}?lang=en", follow_redirects=False)
    assert answer.status_code == 410
    assert "too old" in answer.text
    assert "family_session" not in answer.headers.get("set-cookie", "")
    assert db_session.execute(select(func.count()).select_from(FamilySession)).scalar_one() == 0


def test_a_forged_link_answers_410_without_saying_whether_it_ever_existed(client, world):
    answer = client.get("/f/forged-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa?lang=en")
    assert answer.status_code == 410
    assert "We do not know this link" in answer.text
    assert client.get("/f/" + "x" * 300 + "?lang=en").status_code == 410


def test_a_replaced_link_points_to_the_newest_invitation(client, world):
    old = world.invite(world.guardian)
    world.invite(world.guardian)
    answer = client.get(f"/f/{old.token}?lang=en")
    assert answer.status_code == 410
    assert "newer link" in answer.text


def test_a_family_with_a_letter_types_the_code_in_any_case_with_spaces(client, world):
    issued = world.invite(world.guardian)
    page = client.get("/code?lang=en")
    assert page.status_code == 200
    assert '<label for="code">' in page.text
    typed = f"{issued.code[:5].lower()} {issued.code[5:]}"
    answer = client.post("/code", data={"code": typed}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get("/family").status_code == 200


def test_a_code_posted_from_another_site_opens_nothing(client, world, db_session):
    issued = world.invite(world.guardian)
    answer = client.post(
        "/code?lang=en", data={"code": issued.code}, headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert "family_session" not in answer.headers.get("set-cookie", "")
    fetched = client.post("/code", data={"code": issued.code}, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status_code == 403
    assert db_session.execute(select(func.count()).select_from(FamilySession)).scalar_one() == 0


def test_guessed_codes_hit_the_rate_limit_and_then_even_the_right_code_must_wait(client, world):
    issued = world.invite(world.guardian)
    for attempt in range(invitations.CODE_ATTEMPTS):
        wrong = client.post("/code?lang=en", data={"code": f"AAAAA-{attempt:05d}"})
        assert wrong.status_code == 410
        assert "This code does not work" in wrong.text
        assert 'aria-invalid="true"' in wrong.text
    limited = client.post("/code?lang=en", data={"code": issued.code})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == str(int(invitations.CODE_WINDOW.total_seconds()))
    assert "wait 15 minutes" in limited.text
    assert client.get("/family").status_code == 401


def test_every_family_page_without_a_live_session_explains_how_to_get_a_new_link(client, world, db_session):
    for path in ("/family", "/family/agreed", f"/family/decide/{world.child.subject_id}"):
        answer = client.get(path + "?lang=en")
        assert answer.status_code == 401
        assert "Ask the school for a new link" in answer.text
    open_as(client, world, world.guardian)
    for row in db_session.execute(select(FamilySession)).scalars():
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db_session.flush()
    assert client.get("/family?lang=en").status_code == 401


# --- deciding -----------------------------------------------------------------------------------


def test_a_guardian_reads_decides_confirms_and_gets_a_receipt(client, world, db_session):
    open_as(client, world, world.guardian)
    page = client.get(f"/family/decide/{world.child.subject_id}?lang=bg")
    assert page.status_code == 200
    assert 'lang="bg"' in page.text
    assert "checked" not in page.text  # nothing pre-selected
    assert page.text.count("<fieldset") == len(world.form.purposes)
    fields = hidden(page.text)
    assert fields["form_id"] == str(world.form.id)
    assert fields["text_sha256"] == text_hash(world.form, "guardian")
    body = {**fields, "choice_questionnaires": "granted", "choice_interviews": "declined", "action": "review"}
    summary = client.post(f"/family/decide/{world.child.subject_id}", data=body)
    assert summary.status_code == 200
    assert "/confirm" in summary.text
    assert decisions(db_session) == 0  # the summary saves nothing
    answer = client.post(
        f"/family/decide/{world.child.subject_id}/confirm", data=hidden(summary.text), follow_redirects=False
    )
    assert answer.status_code == 303
    receipt = client.get(answer.headers["location"] + "?lang=en")
    assert receipt.status_code == 200
    assert "Your receipt" in receipt.text
    assert text_hash(world.form, "guardian") in receipt.text
    rows = db_session.execute(select(Decision)).scalars().all()
    assert {(r.purpose, r.choice) for r in rows} == {
        ("questionnaires", "granted"),
        ("interviews", "declined"),
    }
    assert {(r.channel, r.recorded_by, r.decided_by, r.guardian_id) for r in rows} == {
        ("web", "family-link", "guardian", world.guardian.id)
    }
    # A 10-year-old in Bulgaria is asked too (assent): the status waits for the child's answer.
    home = client.get("/family?lang=en")
    assert "Your Yes is saved: waiting for the other answer" in home.text
    assert "Your answer: Yes" in client.get("/family/agreed?lang=en").text


def test_an_unanswered_required_purpose_is_shown_next_to_its_question_and_nothing_is_recorded(
    client, world, db_session
):
    open_as(client, world, world.guardian)
    fields = start_decision(client, world.child.subject_id, "en")
    answer = client.post(
        f"/family/decide/{world.child.subject_id}?lang=en",
        data={**fields, "choice_interviews": "granted", "action": "review"},
    )
    assert answer.status_code == 422
    assert 'id="error-questionnaires"' in answer.text
    assert 'aria-describedby="error-questionnaires"' in answer.text
    assert 'value="granted" checked' in answer.text  # the answer given is kept
    assert decisions(db_session) == 0


@pytest.mark.parametrize(("action", "choice"), [("accept_all", "granted"), ("decline_all", "declined")])
def test_accept_all_and_decline_all_fill_every_answer_and_still_ask_to_confirm(
    client, world, db_session, action, choice
):
    open_as(client, world, world.guardian)
    fields = start_decision(client, world.child.subject_id)
    summary = client.post(f"/family/decide/{world.child.subject_id}", data={**fields, "action": action})
    assert summary.status_code == 200
    confirmed = hidden(summary.text)
    assert all(confirmed[f"choice_{p.purpose}"] == choice for p in world.form.purposes)
    assert decisions(db_session) == 0
    assert (
        client.post(
            f"/family/decide/{world.child.subject_id}/confirm", data=confirmed, follow_redirects=False
        ).status_code
        == 303
    )
    assert decisions(db_session) == len(world.form.purposes)


def test_a_form_posted_without_its_csrf_token_is_refused_and_nothing_is_recorded(client, world, db_session):
    open_as(client, world, world.guardian)
    fields = start_decision(client, world.child.subject_id)
    del fields["csrf_token"]
    answer = confirm(client, world.child.subject_id, fields, {"questionnaires": "granted"})
    assert answer.status_code == 403
    forged = confirm(
        client, world.child.subject_id, {**fields, "csrf_token": "x" * 43}, {"questionnaires": "granted"}
    )
    assert forged.status_code == 403
    assert (
        client.post(
            f"/family/withdraw/{world.child.subject_id}", data={"purpose": "questionnaires"}
        ).status_code
        == 403
    )
    assert (
        client.post(f"/family/request/{world.child.subject_id}", data={"kind": "access"}).status_code == 403
    )
    assert decisions(db_session) == 0
    assert db_session.execute(select(func.count()).select_from(DataSubjectRequest)).scalar_one() == 0


def test_a_guardians_session_cannot_act_on_another_familys_child(client, world, db_session):
    open_as(client, world, world.guardian)
    fields = start_decision(client, world.child.subject_id)
    other = world.other_child.subject_id
    assert client.get(f"/family/decide/{other}").status_code == 404
    assert confirm(client, other, fields, {"questionnaires": "granted"}).status_code == 404
    assert client.post(f"/family/decide/{other}", data={**fields, "action": "accept_all"}).status_code == 404
    assert client.get(f"/family/withdraw/{other}").status_code == 404
    assert (
        client.post(
            f"/family/request/{other}", data={"kind": "erasure", "csrf_token": fields["csrf_token"]}
        ).status_code
        == 404
    )
    assert client.get("/family/decide/not-a-subject").status_code == 404
    assert decisions(db_session) == 0


def test_a_students_session_acts_only_on_themselves(client, world, db_session):
    open_as(client, world, world.teen, InviteeKind.student)
    home = client.get("/family?lang=en")
    assert home.text.count("/family/decide/") == 1
    assert client.get(f"/family/decide/{world.child.subject_id}").status_code == 404
    assert client.get(f"/family/request/{world.teen.subject_id}").status_code == 200
    assert client.get(f"/family/request/{world.child.subject_id}").status_code == 404
    assert decisions(db_session) == 0


def test_over_https_the_session_cookie_is_secure(client, world):
    issued = world.invite(world.guardian)
    answer = client.get(f"https://testserver/f/{issued.token}", follow_redirects=False)
    assert answer.status_code == 303
    assert "secure" in answer.headers["set-cookie"].lower()


def test_another_familys_receipt_is_not_found(client, world, db_session):
    open_as(client, world, world.other_guardian)
    fields = start_decision(client, world.other_child.subject_id)
    event = confirm(client, world.other_child.subject_id, fields, {"questionnaires": "granted"}).headers[
        "location"
    ]
    client.cookies.clear()
    open_as(client, world, world.guardian)
    assert client.get(event).status_code == 404
    assert client.get(event + ".json").status_code == 404


def test_double_clicking_confirm_records_one_decision(client, world, db_session):
    open_as(client, world, world.guardian)
    fields = start_decision(client, world.child.subject_id)
    first = confirm(
        client, world.child.subject_id, fields, {"questionnaires": "granted", "recontact": "declined"}
    )
    second = confirm(
        client, world.child.subject_id, fields, {"questionnaires": "granted", "recontact": "declined"}
    )
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert decisions(db_session) == 2
    assert len({r.event_id for r in db_session.execute(select(Decision)).scalars()}) == 1


def test_switching_language_halfway_records_the_text_actually_shown(client, world, db_session):
    open_as(client, world, world.guardian)
    bulgarian = start_decision(client, world.child.subject_id, "bg")
    english = start_decision(client, world.child.subject_id, "en")
    assert english["form_id"] == str(world.form_en.id)
    assert english["text_sha256"] == text_hash(world.form_en, "guardian") != bulgarian["text_sha256"]
    answer = confirm(client, world.child.subject_id, english, {"questionnaires": "granted"})
    assert answer.status_code == 303
    row = db_session.execute(select(Decision)).scalar_one()
    assert (row.form_id, row.text_sha256) == (world.form_en.id, text_hash(world.form_en, "guardian"))


def test_a_stale_text_hash_says_the_text_changed_and_records_nothing(client, world, db_session):
    open_as(client, world, world.guardian)
    bulgarian = start_decision(client, world.child.subject_id, "bg")
    english = start_decision(client, world.child.subject_id, "en")
    mixed = {**bulgarian, "text_sha256": english["text_sha256"]}
    answer = confirm(client, world.child.subject_id, mixed, {"questionnaires": "granted"})
    assert answer.status_code == 422
    assert "The text has changed" in answer.text  # in the language last chosen (English)
    review = client.post(
        f"/family/decide/{world.child.subject_id}?lang=en", data={**mixed, "action": "accept_all"}
    )
    assert review.status_code == 409
    assert "The text has changed" in review.text
    assert decisions(db_session) == 0


def test_a_form_republished_while_reading_asks_to_read_again(client, world, db_session):
    open_as(client, world, world.guardian)
    fields = start_decision(client, world.child.subject_id, "bg")
    make_form(
        db_session, "BG", "bg", version=2, wording="v2", published_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    answer = confirm(client, world.child.subject_id, fields, {"questionnaires": "granted"})
    assert answer.status_code == 409
    assert decisions(db_session) == 0


def test_a_guardian_sees_that_a_student_now_decides_alone_and_cannot_decide_for_them(
    client, world, db_session
):
    open_as(client, world, world.teen_guardian)
    home = client.get("/family?lang=en")
    assert "decides alone" in home.text
    assert f"/family/decide/{world.teen.subject_id}" not in home.text
    assert client.get(f"/family/decide/{world.teen.subject_id}?lang=en").status_code == 409
    assert decisions(db_session) == 0


def test_a_fifteen_year_old_in_spain_decides_alone_on_the_child_text(client, world, db_session):
    open_as(client, world, world.teen, InviteeKind.student)
    page = client.get(f"/family/decide/{world.teen.subject_id}?lang=es")
    assert page.status_code == 200
    assert '<html lang="es">' in page.text
    fields = hidden(page.text)
    assert fields["text_sha256"] == text_hash(world.es_form, "child")
    assert confirm(client, world.teen.subject_id, fields, {"questionnaires": "granted"}).status_code == 303
    row = db_session.execute(select(Decision)).scalar_one()
    assert (row.decided_by, row.capacity, row.guardian_id) == ("student", "consent", None)


def test_a_teacher_decides_for_themselves_on_the_adult_text(client, world, db_session):
    open_as(client, world, world.teacher, InviteeKind.teacher)
    fields = start_decision(client, world.teacher.subject_id, "bg")
    assert fields["text_sha256"] == text_hash(world.form, "adult")
    assert (
        confirm(client, world.teacher.subject_id, fields, {"questionnaires": "declined"}).status_code == 303
    )
    assert db_session.execute(select(Decision.teacher_id)).scalar_one() == world.teacher.id


# --- receipts, withdrawal, requests -----------------------------------------------------------------


def test_the_receipt_downloads_as_an_iso_27560_consent_record_without_identities(client, world, db_session):
    open_as(client, world, world.guardian)
    fields = start_decision(client, world.child.subject_id)
    location = confirm(
        client, world.child.subject_id, fields, {"questionnaires": "granted", "special_category": "declined"}
    ).headers["location"]
    download = client.get(location + ".json")
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    record = json.loads(download.text)
    assert record["schema"] == "ISO/IEC TS 27560:2023"
    assert record["record_id"] == location.rsplit("/", 1)[1]
    assert record["data_subject"]["id"] == world.child.subject_id
    assert record["controller"]["dpo_contact"]
    assert record["jurisdiction"]["country"] == "BG"
    notice = record["notice"]
    assert (notice["form_id"], notice["language"], notice["version"], notice["text_sha256"]) == (
        world.form.id,
        "bg",
        1,
        text_hash(world.form, "guardian"),
    )
    assert record["method"]["channel"] == "web"
    assert record["consent_given_by"]["role"] == "guardian"
    assert "parental responsibility" in record["consent_given_by"]["legal_basis"]
    assert {p["purpose"]: p["consent_status"] for p in record["processing"]} == {
        "questionnaires": "given",
        "special_category": "refused",
    }
    assert record["timestamps"]["created"]
    assert len(record["event_history"]) == 1
    assert "@" not in json.dumps(record["data_subject"])
    printable = client.get(location + "?print=1&lang=en")
    assert printable.status_code == 200
    assert "The text you read" in printable.text


def test_withdrawing_one_purpose_takes_two_clicks_and_records_a_withdrawal(client, world, db_session):
    open_as(client, world, world.guardian)
    fields = start_decision(client, world.child.subject_id)
    confirm(client, world.child.subject_id, fields, {"questionnaires": "granted", "interviews": "granted"})
    agreed = client.get("/family/agreed?lang=en")
    link = f"/family/withdraw/{world.child.subject_id}?purpose=interviews"
    assert link in agreed.text
    first_click = client.get(link)
    assert first_click.status_code == 200
    second_click = client.post(
        f"/family/withdraw/{world.child.subject_id}", data=hidden(first_click.text), follow_redirects=False
    )
    assert second_click.status_code == 303
    assert "done=withdrawn" in second_click.headers["location"]
    again = client.post(
        f"/family/withdraw/{world.child.subject_id}", data=hidden(first_click.text), follow_redirects=False
    )
    assert again.headers["location"] == second_click.headers["location"]
    rows = db_session.execute(select(Decision).where(Decision.choice == "withdrawn")).scalars().all()
    assert [(r.purpose, r.recorded_by) for r in rows] == [("interviews", "family-link")]
    after = client.get("/family/agreed?lang=en")
    assert "Withdrawn" in after.text


def test_withdraw_everything_withdraws_every_granted_purpose(client, world, db_session):
    open_as(client, world, world.guardian)
    fields = start_decision(client, world.child.subject_id)
    confirm(
        client,
        world.child.subject_id,
        fields,
        {"questionnaires": "granted", "interviews": "granted", "recontact": "declined"},
    )
    page = client.get(f"/family/withdraw/{world.child.subject_id}?lang=en")
    assert page.status_code == 200
    posted = client.post(
        f"/family/withdraw/{world.child.subject_id}",
        data=hidden(page.text) | {"purpose": ["interviews", "questionnaires"]},
        follow_redirects=False,
    )
    assert posted.status_code == 303
    withdrawn = (
        db_session.execute(select(Decision.purpose).where(Decision.choice == "withdrawn")).scalars().all()
    )
    assert sorted(withdrawn) == ["interviews", "questionnaires"]
    assert client.get(f"/family/withdraw/{world.child.subject_id}").status_code == 404


def test_a_guardian_asks_for_a_copy_and_is_told_the_legal_deadline(client, world, db_session):
    open_as(client, world, world.guardian)
    page = client.get(f"/family/request/{world.child.subject_id}?lang=en")
    assert page.status_code == 200
    token = hidden(page.text)["csrf_token"]
    missing = client.post(f"/family/request/{world.child.subject_id}?lang=en", data={"csrf_token": token})
    assert missing.status_code == 422
    assert 'id="kind-error"' in missing.text
    done = client.post(
        f"/family/request/{world.child.subject_id}?lang=en", data={"csrf_token": token, "kind": "erasure"}
    )
    assert done.status_code == 201
    request = db_session.execute(select(DataSubjectRequest)).scalar_one()
    assert (
        request.kind,
        request.subject_kind,
        request.subject_id,
        request.requested_by,
        request.created_by,
    ) == (
        "erasure",
        "student",
        world.child.subject_id,
        "guardian",
        "family-link",
    )
    assert request.due_on.strftime("%Y") in done.text


def test_interface_catalogs_translate_every_string_of_the_family_pages():
    from babel.messages.pofile import read_po

    from consent.family import pages

    templates = (pages.HERE / "templates").glob("*.html")
    wanted = set()
    for path in templates:
        wanted |= set(re.findall(r'_\("((?:[^"\\]|\\.)*)"\)', path.read_text()))
        wanted |= set(re.findall(r"_\('((?:[^'\\]|\\.)*)'\)", path.read_text()))
    for language in ("es", "bg", "pl", "fr", "nl"):
        with (pages.HERE / "locale" / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
            catalog = read_po(handle, locale=language)
        missing = sorted(m for m in wanted if not (catalog.get(m) and catalog.get(m).string))
        assert not missing, f"{language}: untranslated {missing}"


def test_trying_many_links_from_one_address_is_stopped_for_a_while(client, world):
    for attempt in range(invitations.CODE_ATTEMPTS):
        assert client.get(f"/f/guess-{attempt}?lang=en").status_code == 410
    limited = client.get("/f/guess-again?lang=en")
    assert limited.status_code == 429
    assert "Too many links" in limited.text
    assert int(limited.headers["Retry-After"]) > 0
