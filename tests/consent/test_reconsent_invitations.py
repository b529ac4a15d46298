"""The daily job invites the students the re-consent scan marked, school by school."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from access.audit.actions import Role
from access.audit.service import Actor
from consent.decisions import ages, reconsent
from consent.decisions.models import ReconsentMark
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.invitations.automatic import send_reconsent_invitations
from consent.invitations.models import Campaign, Invitation
from consent.invitations.sending import Links
from tests.support.consent import load_rules, make_form, make_guardian, make_student

SCHOOL = "PL-KRK-009"


def test_marked_students_are_invited_once_without_a_steward(
    db_session, session_factory, components, protector
):
    load_rules(db_session)
    form = make_form(db_session, "PL", "pl")
    now = datetime.now(UTC)
    year, month = now.year - 16, now.month  # counts as 16 from the 1st of next month (Poland: alone at 16)
    birthday = ages.birthday_of_age(year, month, 16)
    student = make_student(
        db_session, protector, country="PL", school=SCHOOL, birth_year=year, birth_month=month, language="pl"
    )
    guardian = make_guardian(db_session, protector, [student], language="pl")
    record_decision(
        db_session,
        Actor("steward", Role.data_steward),
        DecisionCreate(
            subject_id=student.subject_id,
            decided_by="guardian",
            guardian_id=guardian.guardian_id,
            form_id=form.id,
            text_sha256=next(t.sha256 for t in form.texts if t.audience == "guardian"),
            choices={"questionnaires": "granted"},
            channel="paper",
        ),
        now=datetime.combine(birthday - timedelta(days=40), datetime.min.time(), tzinfo=UTC),
    )
    assert reconsent.scan(db_session, birthday - timedelta(days=10)).marked == 1
    links = Links("https://consent.example.org")
    first = send_reconsent_invitations(
        session_factory, keys=components.keys, storage=components.storage, links=links
    )
    assert first.invited == [SCHOOL]
    campaign = db_session.execute(select(Campaign)).scalar_one()
    assert campaign.reason == "reconsent"
    [invitation] = db_session.execute(select(Invitation)).scalars().all()
    assert invitation.student_id == student.id, "the student is asked, not the guardian"
    mark = db_session.execute(select(ReconsentMark)).scalar_one()
    db_session.refresh(mark)
    assert mark.invited_at is not None
    again = send_reconsent_invitations(
        session_factory, keys=components.keys, storage=components.storage, links=links
    )
    assert again.invited == [], "nobody is invited twice for the same mark"
