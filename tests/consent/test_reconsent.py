"""Re-consent: the daily scan near the self-consent age, rule changes listed for the DPO, reworded forms."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from access.audit.actions import Role
from access.audit.service import Actor
from consent import service as rules
from consent.decisions import ages, reconsent, status_cache
from consent.decisions.models import ReconsentMark, RuleImpact, Status
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.decisions.status import derive_student_statuses, student_statuses
from consent.forms import service as forms
from consent.forms.models import ConsentForm
from consent.schemas import CountryRuleCreate
from tests.support.consent import load_rules, make_form, make_guardian, make_student
from tests.support.projects import make_principal

STEWARD = Actor("steward-1", Role.data_steward)
DEMO_PL_EN = forms.DEMO_FORMS_DIR / "pl-en-v1.md"


@pytest.fixture(autouse=True)
def _rules(db_session):
    load_rules(db_session)


def text_of(form: ConsentForm, audience: str) -> str:
    return next(t.sha256 for t in form.texts if t.audience == audience)


def guardian_grants(session, student, guardian, form, *, at, choices=None):
    return record_decision(
        session,
        STEWARD,
        DecisionCreate(
            subject_id=student.subject_id,
            decided_by="guardian",
            guardian_id=guardian.guardian_id,
            form_id=form.id,
            text_sha256=text_of(form, "guardian"),
            choices=choices or {"questionnaires": "granted", "interviews": "granted"},
            channel="paper",
        ),
        now=at,
    )


def marks(session, student, reason=None):
    query = select(ReconsentMark).where(ReconsentMark.student_id == student.id)
    if reason is not None:
        query = query.where(ReconsentMark.reason == reason)
    return list(session.execute(query).scalars())


# --- the daily scan ----------------------------------------------------------------------------


def test_scan_marks_students_reaching_self_consent_age_within_thirty_days(db_session, protector):
    today = date(2027, 3, 20)
    form = make_form(db_session, "PL", "pl")
    # PL: self-consent at 16. Born March 2011: counts as 16 from 1 April 2027, 12 days away.
    soon = make_student(db_session, protector, country="PL", birth_year=2011, birth_month=3, language="pl")
    # Born May 2011: 16 from 1 June 2027, 73 days away.
    later = make_student(db_session, protector, country="PL", birth_year=2011, birth_month=5, language="pl")
    # Born March 2011 too, but nobody ever decided for them: nothing to renew.
    undecided = make_student(
        db_session, protector, country="PL", birth_year=2011, birth_month=3, language="pl"
    )
    for student in (soon, later):
        guardian = make_guardian(db_session, protector, [student], language="pl")
        guardian_grants(db_session, student, guardian, form, at=datetime(2027, 1, 10, tzinfo=UTC))
    result = reconsent.scan(db_session, today)
    assert result.marked == 1
    [mark] = marks(db_session, soon)
    assert mark.reason == "self_consent_age"
    assert mark.due_on == date(2027, 4, 1) == ages.birthday_of_age(2011, 3, 16)
    assert marks(db_session, later) == []
    assert marks(db_session, undecided) == []
    assert reconsent.scan(db_session, today).marked == 0, "running twice marks nothing more"


def test_the_students_own_consent_resolves_their_marks(db_session, protector):
    form = make_form(db_session, "PL", "pl")
    student = make_student(db_session, protector, country="PL", birth_year=2011, birth_month=3, language="pl")
    guardian = make_guardian(db_session, protector, [student], language="pl")
    guardian_grants(db_session, student, guardian, form, at=datetime(2027, 1, 10, tzinfo=UTC))
    reconsent.scan(db_session, date(2027, 3, 20))
    birthday = datetime(2027, 4, 1, tzinfo=UTC)
    assert (
        student_statuses(db_session, [student.subject_id], at=birthday).rows[student.subject_id][
            "questionnaires"
        ]
        is Status.reconsent_required
    )
    record_decision(
        db_session,
        STEWARD,
        DecisionCreate(
            subject_id=student.subject_id,
            decided_by="student",
            form_id=form.id,
            text_sha256=text_of(form, "child"),
            choices={"questionnaires": "granted"},
            channel="school_session",
        ),
        now=birthday + timedelta(days=2),
    )
    [mark] = marks(db_session, student)
    assert mark.resolved_at is not None
    row = student_statuses(db_session, [student.subject_id], at=birthday + timedelta(days=3)).rows[
        student.subject_id
    ]
    assert row["questionnaires"] is Status.granted
    assert row["interviews"] is Status.reconsent_required, "the student decided on one purpose only"


def test_scan_refreshes_status_rows_whose_span_is_ending(db_session, protector):
    student = make_student(
        db_session, protector, country="PL", birth_year=datetime.now(UTC).year - 10, language="pl"
    )
    assert reconsent.scan(db_session).refreshed >= 1, "a student without a row gets one"
    table = student_statuses(db_session, [student.subject_id])
    assert table.rows == derive_student_statuses(db_session, [student.subject_id], at=table.at).rows


# --- rule changes ------------------------------------------------------------------------------


def raised_rule(session, country: str, effective_from: date, **changes) -> CountryRuleCreate:
    current = rules.rule_for(session, country, effective_from)
    fields = (
        "age_of_digital_consent",
        "self_consent_age",
        "joint_consent_from_age",
        "joint_consent_to_age",
        "assent_from_age",
        "guardians_required",
        "languages",
        "letscare_country",
        "legal_source",
        "verified",
        "notes",
    )
    values = {name: getattr(current, name) for name in fields}
    values.update(changes, effective_from=effective_from)
    return CountryRuleCreate.model_validate(values)


def test_a_new_rule_version_lists_students_whose_status_changes_and_marks_them(
    db_session, protector, client, staff_factory
):
    today = datetime.now(UTC).date()
    effective = today + timedelta(days=40)
    form = make_form(db_session, "ES", "es")
    # ES: self-consent at 14. A student who is 14 on the new version's first day consented alone.
    year, month = effective.year - 15, effective.month  # 14 in the month of `effective`
    teen = make_student(
        db_session, protector, country="ES", birth_year=year, birth_month=month, language="es"
    )
    assert ages.age_on(year, month, effective) == 14
    record_decision(
        db_session,
        STEWARD,
        DecisionCreate(
            subject_id=teen.subject_id,
            decided_by="student",
            form_id=form.id,
            text_sha256=text_of(form, "child"),
            choices={"questionnaires": "granted"},
            channel="school_session",
        ),
    )
    child = make_student(
        db_session, protector, country="ES", birth_year=effective.year - 9, birth_month=1, language="es"
    )
    dpo = make_principal(db_session, Role.dpo)
    rule = rules.create_rule(
        db_session, dpo, "ES", raised_rule(db_session, "ES", effective, self_consent_age=15)
    )
    impacts = list(db_session.execute(select(RuleImpact).where(RuleImpact.rule_id == rule.id)).scalars())
    assert [i.student_id for i in impacts] == [teen.id], "the nine-year-old's status does not change"
    assert impacts[0].changes["questionnaires"] == ["granted", "pending"]
    [mark] = marks(db_session, teen, "rule_change")
    assert mark.due_on == effective
    assert marks(db_session, child) == []
    on_day = datetime.combine(effective, datetime.min.time(), tzinfo=UTC)
    assert (
        student_statuses(db_session, [teen.subject_id], at=on_day).rows[teen.subject_id]["questionnaires"]
        is Status.pending
    )
    assert (
        student_statuses(db_session, [teen.subject_id], at=on_day - timedelta(seconds=1)).rows[
            teen.subject_id
        ]["questionnaires"]
        is Status.granted
    )

    dpo_user = staff_factory(roles=[Role.dpo])
    from tests.support.auth import auth_headers

    answer = client.get(f"/api/consent/rule-impacts/{rule.id}", headers=auth_headers(client, dpo_user))
    assert answer.status_code == 200, answer.text
    assert answer.json() == [
        {
            "rule_id": rule.id,
            "country": "ES",
            "subject_id": teen.subject_id,
            "effective_from": effective.isoformat(),
            "changes": {"questionnaires": ["granted", "pending"]},
        }
    ]


# --- form changes -------------------------------------------------------------------------------


def test_publishing_a_version_that_rewords_a_purpose_marks_grants_under_the_old_wording(
    db_session, protector
):
    system = Actor.system()
    first = forms.load_form_file(db_session, system, DEMO_PL_EN).form
    # Five years old: the guardian's grant is enough (no assent asked before 7 in Poland).
    student = make_student(
        db_session,
        protector,
        country="PL",
        birth_year=datetime.now(UTC).year - 6,
        birth_month=12,
        language="en",
    )
    guardian = make_guardian(db_session, protector, [student], language="en")
    guardian_grants(db_session, student, guardian, first, at=None)
    source = DEMO_PL_EN.read_text(encoding="utf-8")
    reworded = source.replace("version: 1", "version: 2", 1).replace(
        "We make an audio recording (no video)", "We make an audio recording (never video)", 1
    )
    assert reworded.count("never video") == 1
    second = forms.publish_form(db_session, system, reworded.encode(), "pl-en-v2.md").form
    changed = {p.purpose for p in second.purposes} & {
        p.purpose
        for p in second.purposes
        for q in first.purposes
        if p.purpose == q.purpose and p.section_sha256 != q.section_sha256
    }
    assert changed == {"interviews"}
    [mark] = marks(db_session, student, "form_change")
    assert mark.due_on == second.published_at.date()
    row = student_statuses(db_session, [student.subject_id]).rows[student.subject_id]
    assert row["interviews"] is Status.reconsent_required
    assert row["questionnaires"] is Status.granted


def test_rows_that_no_longer_hold_are_refreshed_by_the_periodic_job(db_session, protector):
    student = make_student(
        db_session, protector, country="PL", birth_year=datetime.now(UTC).year - 10, language="pl"
    )
    status_cache.refresh(db_session, [student.id])
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert student.id not in status_cache.due_for_refresh(db_session, before=later, now=later)
    student.updated_at = later  # a roster re-import or rectification
    db_session.flush()
    after = later + timedelta(seconds=1)
    assert student.id in status_cache.due_for_refresh(db_session, before=after, now=after)
    status_cache.refresh(db_session, [student.id], at=after)
    assert student.id not in status_cache.due_for_refresh(db_session, before=after, now=after)
