"""Invitations: who a campaign reaches, single-use links, short codes and their rate limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from access.audit.actions import Role
from access.audit.models import AuditEntry
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.invitations import service
from consent.invitations.exceptions import CodeAttemptsExceeded, LinkNotUsable
from consent.invitations.models import InvitationChannel, InvitationReason, InviteeKind
from consent.rosters.models import Delivery
from tests.support.consent import load_rules, make_form, make_guardian, make_student, make_teacher
from tests.support.projects import make_principal

SCHOOL = "PL-KRK-007"
NOW = datetime(2027, 2, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _rules(db_session):
    load_rules(db_session)


@pytest.fixture
def keys(components):
    return components.keys


@pytest.fixture
def steward(db_session):
    principal = make_principal(db_session, Role.data_steward)
    return principal.__class__(
        account_id=principal.account_id, roles=principal.roles, country="PL", schools=frozenset({SCHOOL})
    )


def pupil(db_session, protector, age: int):
    """A PL student of ``age`` on NOW (Polish rule: assent from 7, alone from 16)."""
    return make_student(
        db_session,
        protector,
        country="PL",
        school=SCHOOL,
        birth_year=NOW.year - age - 1,
        birth_month=12,
        language="pl",
    )


def test_a_campaign_invites_whoever_still_has_something_to_decide(db_session, protector, keys, steward):
    form = make_form(db_session, "PL", "pl")
    small, middle, older, done = (pupil(db_session, protector, age) for age in (5, 10, 16, 5))
    by_email = make_guardian(db_session, protector, [small, middle], language="pl")
    by_letter = make_guardian(db_session, protector, [middle], language="uk")
    by_letter.delivery = Delivery.school.value
    done_guardian = make_guardian(db_session, protector, [done], language="pl")
    record_decision(
        db_session,
        steward.actor,
        DecisionCreate(
            subject_id=done.subject_id,
            decided_by="guardian",
            guardian_id=done_guardian.guardian_id,
            form_id=form.id,
            text_sha256=next(t.sha256 for t in form.texts if t.audience == "guardian"),
            choices={p.purpose: "granted" for p in form.purposes},
            channel="paper",
        ),
        now=NOW - timedelta(days=1),
    )
    teacher = make_teacher(db_session, protector, country="PL", school=SCHOOL, language="pl")
    result = service.start_campaign(db_session, steward, keys, country="PL", school=SCHOOL, now=NOW)
    invited = {
        (i.invitation.kind, i.invitation.guardian_id or i.invitation.student_id or i.invitation.teacher_id)
        for i in result.issued
    }
    assert invited == {
        ("guardian", by_email.id),
        ("guardian", by_letter.id),
        ("student", middle.id),  # ten: asked for assent
        ("student", older.id),  # sixteen: decides alone
        ("teacher", teacher.id),
    }, "the five-year-old whose guardian decided everything is not invited again"
    channels = {
        i.invitation.guardian_id: i.invitation.channel for i in result.issued if i.invitation.guardian_id
    }
    assert channels == {by_email.id: "email", by_letter.id: "letter"}
    assert {i.invitation.language for i in result.issued if i.invitation.guardian_id == by_letter.id} == {
        "uk"
    }
    db_session.commit()  # ledger entries are written when the transaction commits
    entry = db_session.execute(
        select(AuditEntry).where(AuditEntry.action == "consent.campaign_created")
    ).scalar_one()
    assert entry.details["guardians"] == 2
    assert entry.details["letters"] == 3


def test_neither_tokens_nor_codes_are_stored(db_session, protector, keys, steward):
    student = pupil(db_session, protector, 5)
    make_guardian(db_session, protector, [student], language="pl")
    [issued] = service.start_campaign(db_session, steward, keys, country="PL", school=SCHOOL, now=NOW).issued
    dump = " ".join(str(v) for v in db_session.execute(text("SELECT * FROM consent_invitation")).one())
    assert issued.token not in dump
    assert issued.code not in dump
    assert len(issued.code) == 10


def test_a_link_opens_the_family_pages_once(db_session, protector, keys, steward):
    student = pupil(db_session, protector, 5)
    make_guardian(db_session, protector, [student], language="pl")
    [issued] = service.start_campaign(db_session, steward, keys, country="PL", school=SCHOOL, now=NOW).issued
    opened = service.open_link(db_session, keys, issued.token, now=NOW + timedelta(hours=1))
    assert opened.invitation.id == issued.invitation.id
    family = service.session_for(db_session, opened.cookie, now=NOW + timedelta(hours=1, minutes=29))
    assert family is not None
    assert family.csrf_token == opened.csrf_token
    assert service.session_for(db_session, opened.cookie, now=NOW + timedelta(hours=1, minutes=31)) is None
    with pytest.raises(LinkNotUsable) as reused:
        service.open_link(db_session, keys, issued.token, now=NOW + timedelta(hours=2))
    assert reused.value.reason == "used"
    assert reused.value.status_code == 410
    assert "new link" in reused.value.detail


@pytest.mark.parametrize(
    ("token", "reason"),
    [("", "unknown"), ("x" * 43, "unknown"), ("a" * 500, "unknown")],
)
def test_forged_links_are_refused_without_saying_more(db_session, keys, token, reason):
    with pytest.raises(LinkNotUsable) as refused:
        service.open_link(db_session, keys, token, now=NOW)
    assert refused.value.reason == reason


def test_expired_and_replaced_links_say_what_to_do(db_session, protector, keys, steward):
    student = pupil(db_session, protector, 5)
    make_guardian(db_session, protector, [student], language="pl")
    [first] = service.start_campaign(db_session, steward, keys, country="PL", school=SCHOOL, now=NOW).issued
    [second] = service.start_campaign(
        db_session, steward, keys, country="PL", school=SCHOOL, reason=InvitationReason.reminder, now=NOW
    ).issued
    with pytest.raises(LinkNotUsable) as replaced:
        service.open_link(db_session, keys, first.token, now=NOW)
    assert replaced.value.reason == "replaced"
    with pytest.raises(LinkNotUsable) as expired:
        service.open_link(db_session, keys, second.token, now=NOW + service.VALID_FOR + timedelta(seconds=1))
    assert expired.value.reason == "expired"


def test_a_short_code_works_as_typed_by_a_person(db_session, protector, keys, steward):
    student = pupil(db_session, protector, 5)
    guardian = make_guardian(db_session, protector, [student], language="pl")
    guardian.delivery = Delivery.school.value
    [issued] = service.start_campaign(db_session, steward, keys, country="PL", school=SCHOOL, now=NOW).issued
    assert issued.invitation.channel == InvitationChannel.letter.value
    typed = " " + service.format_code(issued.code).lower().replace("0", "o") + " "
    opened = service.enter_code(db_session, keys, typed, client="203.0.113.9", now=NOW)
    assert opened.invitation.kind == InviteeKind.guardian.value


def test_guessing_codes_is_stopped_by_the_rate_limit(db_session, protector, keys, steward):
    student = pupil(db_session, protector, 5)
    guardian = make_guardian(db_session, protector, [student], language="pl")
    guardian.delivery = Delivery.school.value
    [issued] = service.start_campaign(db_session, steward, keys, country="PL", school=SCHOOL, now=NOW).issued
    for attempt in range(service.CODE_ATTEMPTS):
        with pytest.raises(LinkNotUsable):
            service.enter_code(db_session, keys, f"AAAAA-{attempt:05d}", client="198.51.100.7", now=NOW)
    with pytest.raises(CodeAttemptsExceeded) as limited:
        service.enter_code(db_session, keys, issued.code, client="198.51.100.7", now=NOW)
    assert limited.value.status_code == 429
    # Another address is not blocked, and the guesser may try again after the window.
    later = NOW + service.CODE_WINDOW + timedelta(seconds=1)
    assert service.enter_code(db_session, keys, issued.code, client="198.51.100.7", now=later).invitation


def test_a_steward_cannot_run_a_campaign_outside_their_schools(db_session, keys, steward):
    with pytest.raises(Exception, match="outside your scope") as refused:
        service.start_campaign(db_session, steward, keys, country="PL", school="PL-WAW-001", now=NOW)
    assert getattr(refused.value, "status_code", None) == 403


def test_guessing_links_is_stopped_by_the_same_rate_limit(db_session, protector, keys, steward):
    student = pupil(db_session, protector, 5)
    make_guardian(db_session, protector, [student], language="pl")
    [issued] = service.start_campaign(db_session, steward, keys, country="PL", school=SCHOOL, now=NOW).issued
    for attempt in range(service.CODE_ATTEMPTS):
        with pytest.raises(LinkNotUsable):
            service.open_link(db_session, keys, f"guess-{attempt}", client="192.0.2.44", now=NOW)
    with pytest.raises(CodeAttemptsExceeded):
        service.open_link(db_session, keys, issued.token, client="192.0.2.44", now=NOW)
    assert service.open_link(db_session, keys, issued.token, client="192.0.2.45", now=NOW).invitation
