"""Effective status per LET'S CARE country: ages just below, at and above each threshold; guardians;
assent refused; expiry; form changes; erasure and restriction."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.audit.service import Actor
from consent import service as rules
from consent.decisions import ages, status_cache
from consent.decisions.models import Status
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.decisions.status import student_statuses, teacher_statuses
from consent.forms.models import ConsentForm
from consent.rosters.models import Guardian, Student
from consent.schemas import CountryRuleCreate
from tests.support.consent import load_rules, make_form, make_guardian, make_student, make_teacher
from tests.support.projects import make_principal

STEWARD = Actor("steward-1", Role.data_steward)
T0 = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
"""The instant decisions are recorded at in these tests."""
LANGUAGE = {"BE": "nl", "BG": "bg", "PL": "pl", "ES": "es"}


@pytest.fixture(autouse=True)
def _rules(db_session):
    load_rules(db_session)


def born_for(age: int, on: datetime) -> tuple[int, int]:
    """Birth year and month of a student who is exactly ``age`` on ``on``, having turned it that month."""
    month = on.month - 1 or 12
    year = on.year - age - (1 if on.month == 1 else 0)
    assert ages.age_on(year, month, on.date()) == age
    assert ages.age_on(year, month, (on.replace(day=1) - timedelta(days=1)).date()) == age - 1
    return year, month


def text_hash(form: ConsentForm, audience: str) -> str:
    return next(t.sha256 for t in form.texts if t.audience == audience)


class Family:
    """A student with guardians and the form of their country, and a way to decide."""

    def __init__(self, session: Session, protector, country: str, age: int, *, guardians: int = 1) -> None:
        self.session = session
        year, month = born_for(age, T0)
        self.form = make_form(session, country, LANGUAGE[country])
        self.student: Student = make_student(
            session,
            protector,
            country=country,
            birth_year=year,
            birth_month=month,
            language=LANGUAGE[country],
        )
        self.guardians: list[Guardian] = [
            make_guardian(session, protector, [self.student], language=LANGUAGE[country])
            for _ in range(guardians)
        ]

    def decide(
        self, by: str, choice: str, *, at: datetime = T0, guardian: int = 0, purpose: str = "questionnaires"
    ):
        audience = {"guardian": "guardian", "student": "child", "teacher": "adult"}[by]
        choices = (
            {"questionnaires": choice}
            if purpose == "questionnaires"
            else {"questionnaires": "granted", purpose: choice}
        )
        if choice == "withdrawn":
            choices = {purpose: "withdrawn"}
        return record_decision(
            self.session,
            STEWARD,
            DecisionCreate(
                subject_id=self.student.subject_id,
                decided_by=by,
                guardian_id=self.guardians[guardian].guardian_id if by == "guardian" else None,
                form_id=self.form.id,
                text_sha256=text_hash(self.form, audience),
                choices=choices,
                channel="paper",
            ),
            now=at,
        )

    def status(self, at: datetime = T0, purpose: str = "questionnaires") -> Status:
        return student_statuses(self.session, [self.student.subject_id], at=at).rows[self.student.subject_id][
            purpose
        ]


# --- assent threshold: 7 in the four countries (project default) ---------------------------------


@pytest.mark.parametrize("country", ["BE", "BG", "PL", "ES"])
def test_below_assent_age_the_guardians_grant_alone(db_session, protector, country):
    family = Family(db_session, protector, country, 6)
    family.decide("guardian", "granted")
    assert family.status() is Status.granted


@pytest.mark.parametrize("country", ["BE", "BG", "PL", "ES"])
def test_at_assent_age_the_guardians_grant_is_pending_until_the_child_assents(db_session, protector, country):
    family = Family(db_session, protector, country, 7)
    family.decide("guardian", "granted")
    assert family.status() is Status.pending
    family.decide("student", "granted", at=T0 + timedelta(minutes=1))
    assert family.status(T0 + timedelta(minutes=2)) is Status.granted
    assert family.status(T0 + timedelta(seconds=30)) is Status.pending, "the past answer does not change"


@pytest.mark.parametrize("country", ["BE", "BG", "PL", "ES"])
def test_assent_refused_means_declined_whatever_the_guardians_decided(db_session, protector, country):
    family = Family(db_session, protector, country, 8)
    family.decide("guardian", "granted")
    family.decide("student", "declined", at=T0 + timedelta(minutes=1))
    assert family.status(T0 + timedelta(minutes=1)) is Status.declined


def test_a_child_below_assent_age_cannot_decide(db_session, protector):
    family = Family(db_session, protector, "ES", 6)
    with pytest.raises(Exception, match="not asked") as error:
        family.decide("student", "granted")
    assert getattr(error.value, "status_code", None) == 409


# --- joint band: BE 13-18, BG 14-18 ---------------------------------------------------------------


@pytest.mark.parametrize(("country", "joint_from"), [("BE", 13), ("BG", 14)])
def test_just_below_the_joint_band_guardian_and_assent_suffice(db_session, protector, country, joint_from):
    family = Family(db_session, protector, country, joint_from - 1)
    family.decide("guardian", "granted")
    family.decide("student", "granted")
    assert family.status(T0 + timedelta(seconds=1)) is Status.granted


@pytest.mark.parametrize(("country", "joint_from"), [("BE", 13), ("BG", 14)])
def test_in_the_joint_band_both_guardian_and_student_must_consent(db_session, protector, country, joint_from):
    family = Family(db_session, protector, country, joint_from)
    family.decide("guardian", "granted")
    assert family.status(T0 + timedelta(seconds=1)) is Status.pending
    family.decide("student", "granted", at=T0 + timedelta(seconds=2))
    assert family.status(T0 + timedelta(seconds=3)) is Status.granted
    family.decide("student", "withdrawn", at=T0 + timedelta(seconds=4))
    assert family.status(T0 + timedelta(seconds=5)) is Status.withdrawn


@pytest.mark.parametrize(("country", "joint_from"), [("BE", 13), ("BG", 14)])
def test_entering_the_joint_band_with_only_a_childs_assent_requires_reconsent(
    db_session, protector, country, joint_from
):
    family = Family(db_session, protector, country, joint_from - 1)
    family.decide("guardian", "granted")
    family.decide("student", "granted")
    birthday = ages.birthday_of_age(family.student.birth_year, family.student.birth_month, joint_from)
    last_month = datetime.combine(birthday - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    assert family.status(last_month) is Status.granted
    assert family.status(last_month + timedelta(days=1)) is Status.reconsent_required


@pytest.mark.parametrize(("country", "joint_from"), [("BE", 13), ("BG", 14)])
def test_a_guardian_decline_in_the_joint_band_wins_over_the_students_consent(
    db_session, protector, country, joint_from
):
    family = Family(db_session, protector, country, joint_from + 1)
    family.decide("student", "granted")
    family.decide("guardian", "declined", at=T0 + timedelta(seconds=1))
    assert family.status(T0 + timedelta(seconds=2)) is Status.declined


# --- self-consent age: PL 16, ES 14, BE and BG 18 ---------------------------------------------------


@pytest.mark.parametrize(("country", "self_age"), [("PL", 16), ("ES", 14), ("BE", 18), ("BG", 18)])
def test_just_below_self_consent_age_the_guardian_still_decides(db_session, protector, country, self_age):
    family = Family(db_session, protector, country, self_age - 1)
    family.decide("guardian", "granted")
    family.decide("student", "granted")
    assert family.status(T0 + timedelta(seconds=1)) is Status.granted


@pytest.mark.parametrize(("country", "self_age"), [("PL", 16), ("ES", 14), ("BE", 18), ("BG", 18)])
def test_at_self_consent_age_the_guardian_no_longer_decides(db_session, protector, country, self_age):
    family = Family(db_session, protector, country, self_age)
    with pytest.raises(Exception, match="consents alone") as error:
        family.decide("guardian", "granted")
    assert getattr(error.value, "status_code", None) == 409
    family.decide("student", "granted")
    assert family.status(T0 + timedelta(seconds=1)) is Status.granted


@pytest.mark.parametrize(("country", "self_age"), [("PL", 16), ("ES", 14)])
def test_after_the_birthday_month_without_their_own_decision_reconsent_is_required(
    db_session, protector, country, self_age
):
    family = Family(db_session, protector, country, self_age - 1)
    family.decide("guardian", "granted")
    family.decide("student", "granted")
    birthday = ages.birthday_of_age(family.student.birth_year, family.student.birth_month, self_age)
    eve = datetime.combine(birthday, datetime.min.time(), tzinfo=UTC) - timedelta(seconds=1)
    assert family.status(eve) is Status.granted, "still granted during the birthday month"
    assert family.status(eve + timedelta(seconds=1)) is Status.reconsent_required
    family.decide("student", "granted", at=eve + timedelta(days=3))
    assert family.status(eve + timedelta(days=4)) is Status.granted


@pytest.mark.parametrize("country", ["BE", "BG"])
def test_the_students_own_consent_in_the_joint_band_carries_over_at_eighteen(db_session, protector, country):
    family = Family(db_session, protector, country, 17)
    family.decide("guardian", "granted")
    family.decide("student", "granted")
    birthday = ages.birthday_of_age(family.student.birth_year, family.student.birth_month, 18)
    after = datetime.combine(birthday, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    assert family.status(after) is Status.granted
    family.decide("student", "withdrawn", at=after)
    assert family.status(after + timedelta(seconds=1)) is Status.withdrawn


def test_a_guardian_withdrawal_is_not_turned_into_reconsent_at_self_age(db_session, protector):
    family = Family(db_session, protector, "ES", 13)
    family.decide("guardian", "granted")
    family.decide("student", "granted")
    family.decide("guardian", "withdrawn", at=T0 + timedelta(seconds=1))
    later = datetime(T0.year + 2, 1, 15, tzinfo=UTC)
    assert family.status(later) is Status.withdrawn


# --- one or all guardians ------------------------------------------------------------------------


def test_with_one_guardian_required_the_latest_guardian_decision_counts(db_session, protector):
    family = Family(db_session, protector, "PL", 5, guardians=2)
    family.decide("guardian", "granted", guardian=0)
    assert family.status(T0 + timedelta(seconds=1)) is Status.granted
    family.decide("guardian", "withdrawn", guardian=1, at=T0 + timedelta(seconds=2))
    assert family.status(T0 + timedelta(seconds=3)) is Status.withdrawn


def test_with_all_guardians_required_both_must_grant(db_session, protector):
    dpo = make_principal(db_session, Role.dpo)
    current = rules.rule_for(db_session, "PL", T0.date())
    later = date(2027, 1, 1)
    rules.create_rule(
        db_session,
        dpo,
        "PL",
        CountryRuleCreate.model_validate(
            {
                **{
                    name: getattr(current, name)
                    for name in (
                        "age_of_digital_consent",
                        "self_consent_age",
                        "joint_consent_from_age",
                        "joint_consent_to_age",
                        "assent_from_age",
                        "languages",
                        "letscare_country",
                        "legal_source",
                        "verified",
                        "notes",
                    )
                },
                "effective_from": later,
                "guardians_required": "all",
            }
        ),
        today=T0.date(),
    )
    family = Family(db_session, protector, "PL", 5, guardians=2)
    at = datetime(2027, 1, 10, tzinfo=UTC)
    family.decide("guardian", "granted", guardian=0, at=at)
    assert family.status(at + timedelta(seconds=1)) is Status.pending
    assert family.status(datetime(2026, 12, 31, tzinfo=UTC)) is Status.pending, "nothing decided yet then"
    family.decide("guardian", "granted", guardian=1, at=at + timedelta(seconds=2))
    assert family.status(at + timedelta(seconds=3)) is Status.granted
    family.decide("guardian", "declined", guardian=0, at=at + timedelta(seconds=4))
    assert family.status(at + timedelta(seconds=5)) is Status.declined


def test_a_guardian_no_longer_listed_does_not_count(db_session, protector):
    family = Family(db_session, protector, "PL", 5, guardians=2)
    family.decide("guardian", "granted", guardian=1)
    from consent.rosters.models import Guardianship

    link = db_session.get(Guardianship, (family.student.id, family.guardians[1].id))
    db_session.delete(link)
    db_session.flush()
    status_cache.invalidate(db_session, [family.student.id])  # as every writer of guardian links does
    assert family.status(T0 + timedelta(seconds=1)) is Status.pending


# --- purposes, expiry, form changes, erasure and restriction -------------------------------------


def test_purposes_are_independent(db_session, protector):
    family = Family(db_session, protector, "PL", 5)
    family.decide("guardian", "declined", purpose="interviews")
    table = student_statuses(db_session, [family.student.subject_id], at=T0 + timedelta(seconds=1))
    row = table.rows[family.student.subject_id]
    assert row["questionnaires"] is Status.granted
    assert row["interviews"] is Status.declined
    assert row["special_category"] is Status.pending


def test_a_grant_expires_with_its_form_version(db_session, protector):
    family = Family(db_session, protector, "PL", 5)
    family.form = make_form(db_session, "PL", "pl", version=2, valid_until=date(2027, 9, 1))
    family.decide("guardian", "granted")
    assert family.status(datetime(2027, 8, 31, 23, 59, tzinfo=UTC)) is Status.granted
    assert family.status(datetime(2027, 9, 1, tzinfo=UTC)) is Status.expired


def test_a_new_form_version_rewording_a_purpose_requires_reconsent_for_it_only(db_session, protector):
    family = Family(db_session, protector, "PL", 5)
    family.decide("guardian", "granted", purpose="interviews")
    published = T0 + timedelta(days=1)
    make_form(db_session, "PL", "pl", version=2, published_at=published)
    assert family.status(published + timedelta(hours=1), "interviews") is Status.granted, "same wording"
    make_form(
        db_session, "PL", "pl", version=3, reworded=["interviews"], published_at=published + timedelta(days=1)
    )
    table = student_statuses(db_session, [family.student.subject_id], at=published + timedelta(days=2))
    assert table.rows[family.student.subject_id]["interviews"] is Status.reconsent_required
    assert table.rows[family.student.subject_id]["questionnaires"] is Status.granted


def test_a_decision_on_a_superseded_form_is_refused(db_session, protector):
    family = Family(db_session, protector, "PL", 5)
    make_form(db_session, "PL", "pl", version=2, published_at=T0 - timedelta(days=1))
    with pytest.raises(Exception, match="superseded") as error:
        family.decide("guardian", "granted")
    assert getattr(error.value, "status_code", None) == 409


def test_erased_or_restricted_subjects_count_as_withdrawn_from_that_moment(db_session, protector):
    family = Family(db_session, protector, "PL", 5)
    family.decide("guardian", "granted")
    family.student.restricted_at = T0 + timedelta(hours=1)
    db_session.flush()
    assert family.status(T0 + timedelta(minutes=59)) is Status.granted
    assert family.status(T0 + timedelta(hours=1)) is Status.withdrawn


def test_a_country_without_a_rule_in_force_is_pending(db_session, protector):
    student = make_student(db_session, protector, country="US", language="en")
    assert (
        student_statuses(db_session, [student.subject_id]).rows[student.subject_id]["questionnaires"]
        is Status.pending
    )


def test_teachers_decide_for_themselves(db_session, protector):
    teacher = make_teacher(db_session, protector, country="ES", language="es")
    form = make_form(db_session, "ES", "es")
    record_decision(
        db_session,
        STEWARD,
        DecisionCreate(
            subject_id=teacher.subject_id,
            decided_by="teacher",
            form_id=form.id,
            text_sha256=text_hash(form, "adult"),
            choices={"questionnaires": "granted", "interviews": "declined"},
            channel="paper",
        ),
        now=T0,
    )
    row = teacher_statuses(db_session, [teacher.subject_id], at=T0).rows[teacher.subject_id]
    assert row["questionnaires"] is Status.granted
    assert row["interviews"] is Status.declined
    assert row["recontact"] is Status.pending
