"""Data-subject requests through the service: lifecycle, deadlines, queue, scope, carrying out, export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.audit.models import AuditEntry
from access.principal import Principal
from consent.decisions import status, status_cache
from consent.decisions.models import Decision, Status, Withdrawal
from consent.forms.models import ConsentForm
from consent.identity import IdentityField
from consent.requests import deadlines, export, service, sources
from consent.requests.deadlines import utc_today
from consent.requests.exceptions import InvalidRequest, RequestConflict, RequestNotFound, SubjectNotFound
from consent.requests.models import RequestKind, RequestState
from consent.requests.schemas import ExportFormat, RequestCreate
from consent.requests.sources import DatasetRows
from consent.rosters.models import Guardian, Guardianship, Student, Teacher
from infra.errors import Conflict, ValidationFailed
from tests.support.consent import (
    ALL_PURPOSES,
    load_rules,
    make_form,
    make_guardian,
    make_student,
    make_teacher,
)
from tests.support.projects import make_principal


def dpo(session: Session) -> Principal:
    """A DPO principal backed by a real account."""
    return make_principal(session, Role.dpo)


def steward(session: Session, country: str, schools: tuple[str, ...] = ()) -> Principal:
    """A data steward of ``country`` (and of ``schools`` when given)."""
    account = make_principal(session, Role.data_steward)
    return Principal(
        account_id=account.account_id,
        roles=frozenset({Role.data_steward}),
        country=country,
        schools=frozenset(schools),
    )


def decide(
    session: Session,
    form: ConsentForm,
    *,
    student: Student | None = None,
    teacher: Teacher | None = None,
    guardian: Guardian | None = None,
    purpose: str = "questionnaires",
    choice: str = "granted",
) -> Decision:
    """Insert one decision (a guardian's for a student when ``guardian`` is given)."""
    decided_by = "guardian" if guardian is not None else ("student" if student is not None else "teacher")
    decision = Decision(
        event_id=str(uuid.uuid4()),
        student_id=student.id if student is not None else None,
        teacher_id=teacher.id if teacher is not None else None,
        decided_by=decided_by,
        guardian_id=guardian.id if guardian is not None else None,
        capacity="consent",
        form_id=form.id,
        text_sha256=form.texts[0].sha256,
        purpose=purpose,
        choice=choice,
        channel="web",
        recorded_by="family-link",
    )
    session.add(decision)
    session.flush()
    return decision


def payload(
    subject_id: str,
    *,
    kind: str = "access",
    subject_kind: str = "student",
    requested_by: str = "guardian",
    received_on: date | None = None,
    **details: Any,
) -> dict[str, Any]:
    """A request body as JSON-ready values."""
    body: dict[str, Any] = {
        "kind": kind,
        "subject_kind": subject_kind,
        "subject_id": subject_id,
        "requested_by": requested_by,
        "language": "bg",
        "details": details,
    }
    if received_on is not None:
        body["received_on"] = received_on.isoformat()
    return body


def create_body(subject_id: str, **kwargs: Any) -> RequestCreate:
    """A validated request body for the service."""
    return RequestCreate.model_validate(payload(subject_id, **kwargs))


# --- fixtures -------------------------------------------------------------------------------------

TODAY = date(2027, 3, 10)


@pytest.fixture
def family(db_session, protector):
    """A BG student at school BG-SOF-001 with one guardian, and a form with a few decisions."""
    form = make_form(db_session)
    student = make_student(db_session, protector, ref="P-FAMILY-1")
    guardian = make_guardian(
        db_session, protector, [student], name="Maria Ivanova", email="maria@family.example.org"
    )
    decide(db_session, form, student=student, guardian=guardian, purpose="questionnaires")
    decide(db_session, form, student=student, guardian=guardian, purpose="interviews", choice="declined")
    return SimpleNamespace(form=form, student=student, guardian=guardian)


@pytest.fixture
def other_family(db_session, protector):
    """Another BG student, at another school, with a guardian and a decision."""
    form = make_form(db_session, version=2)
    student = make_student(db_session, protector, school="BG-PLO-002", ref="P-OTHER-9")
    guardian = make_guardian(
        db_session, protector, [student], name="Other Parent", email="other@family.example.org"
    )
    decide(db_session, form, student=student, guardian=guardian, purpose="recontact")
    return SimpleNamespace(form=form, student=student, guardian=guardian)


def _create(session, principal, protector, subject_id, *, today=TODAY, **kwargs):
    return service.create_request(
        session, principal, protector, create_body(subject_id, **kwargs), today=today
    )


def _actions(session, target_id):
    session.commit()  # entries are chained when the transaction commits
    return [
        entry.action
        for entry in session.execute(
            select(AuditEntry).where(AuditEntry.target_id == target_id).order_by(AuditEntry.seq)
        ).scalars()
    ]


# --- receipt and deadlines ------------------------------------------------------------------------


def test_a_request_received_on_the_31st_of_january_is_due_on_the_last_day_of_february(
    db_session, protector, family
):
    boss = dpo(db_session)
    request = _create(
        db_session,
        boss,
        protector,
        family.student.subject_id,
        received_on=date(2027, 1, 31),
        today=date(2027, 2, 1),
    )
    assert request.due_on == date(2027, 2, 28)
    assert request.state == "open"
    assert request.subject_id == family.student.subject_id
    leap = _create(
        db_session,
        boss,
        protector,
        family.student.subject_id,
        received_on=date(2028, 1, 31),
        today=date(2028, 2, 1),
    )
    assert leap.due_on == date(2028, 2, 29)
    assert _actions(db_session, family.student.subject_id) == ["consent.dsr_received", "consent.dsr_received"]


def test_a_request_received_today_by_default_is_recorded_with_ids_and_dates_only(
    db_session, protector, family
):
    boss = dpo(db_session)
    request = _create(
        db_session, boss, protector, family.student.subject_id, today=None, note="Mother called, upset"
    )
    today = utc_today()
    assert request.received_on == today
    db_session.commit()
    entry = db_session.execute(
        select(AuditEntry).where(AuditEntry.target_id == request.subject_id)
    ).scalar_one()
    assert entry.action == "consent.dsr_received"
    assert entry.target_type == "student"
    assert entry.details["request_id"] == request.id
    assert entry.details["due_on"] == deadlines.due_on(today).isoformat()
    assert "upset" not in str(entry.details)


@pytest.mark.parametrize(
    ("received", "reason"),
    [
        (TODAY + timedelta(days=1), "received_in_future"),
        (TODAY - timedelta(days=400), "received_too_long_ago"),
    ],
)
def test_received_on_may_not_be_in_the_future_nor_more_than_a_year_ago(
    db_session, protector, family, received, reason
):
    with pytest.raises(InvalidRequest) as raised:
        _create(db_session, dpo(db_session), protector, family.student.subject_id, received_on=received)
    assert raised.value.code == reason


def test_a_teacher_cannot_make_a_request_about_a_student(db_session, protector, family):
    with pytest.raises(InvalidRequest) as raised:
        _create(db_session, dpo(db_session), protector, family.student.subject_id, requested_by="teacher")
    assert raised.value.code == "requester_not_entitled"


def test_a_guardian_cannot_ask_to_restrict_or_object_about_themselves(db_session, protector, family):
    for kind in ("restriction", "objection"):
        with pytest.raises(InvalidRequest) as raised:
            _create(
                db_session,
                dpo(db_session),
                protector,
                family.guardian.guardian_id,
                kind=kind,
                subject_kind="guardian",
            )
        assert raised.value.code == "not_applicable_to_guardian"


def test_an_unknown_subject_is_not_found(db_session, protector):
    with pytest.raises(SubjectNotFound):
        _create(db_session, dpo(db_session), protector, str(uuid.uuid4()))


# --- extension and lifecycle ----------------------------------------------------------------------


def test_an_extension_adds_two_months_from_receipt_once_only_with_a_stored_reason(
    db_session, protector, family
):
    boss = dpo(db_session)
    request = _create(
        db_session,
        boss,
        protector,
        family.student.subject_id,
        received_on=date(2027, 1, 31),
        today=date(2027, 2, 3),
    )
    extended = service.extend_request(
        db_session, boss, request.id, "  Many datasets to search  ", today=date(2027, 2, 28)
    )
    assert extended.extended_due_on == date(2027, 4, 30)
    assert extended.extension_reason == "Many datasets to search"
    with pytest.raises(RequestConflict) as again:
        service.extend_request(db_session, boss, request.id, "more", today=date(2027, 2, 28))
    assert again.value.code == "already_extended"
    db_session.commit()
    entry = db_session.execute(
        select(AuditEntry).where(
            AuditEntry.action == "consent.dsr_extended", AuditEntry.target_id == request.subject_id
        )
    ).scalar_one()
    assert entry.details["extended_due_on"] == "2027-04-30"
    assert "datasets" not in str(entry.details)


def test_an_extension_needs_a_reason_and_must_come_before_the_original_deadline(
    db_session, protector, family
):
    boss = dpo(db_session)
    request = _create(db_session, boss, protector, family.student.subject_id, received_on=date(2027, 1, 31))
    with pytest.raises(InvalidRequest) as blank:
        service.extend_request(db_session, boss, request.id, "   ", today=date(2027, 2, 10))
    assert blank.value.code == "reason_required"
    with pytest.raises(RequestConflict) as late:
        service.extend_request(db_session, boss, request.id, "too late", today=date(2027, 3, 1))
    assert late.value.code == "original_deadline_passed"
    one_month = service.extend_request(db_session, boss, request.id, "volume", 1, today=date(2027, 2, 28))
    assert one_month.extended_due_on == date(2027, 3, 31)


def test_a_closed_request_cannot_change_any_more(db_session, protector, family):
    boss = dpo(db_session)
    request = _create(db_session, boss, protector, family.student.subject_id)
    service.start_request(db_session, boss, request.id)
    with pytest.raises(RequestConflict) as twice:
        service.start_request(db_session, boss, request.id)
    assert twice.value.code == "already_started"
    refused = service.refuse_request(db_session, boss, request.id, "Manifestly unfounded: repeated request")
    assert refused.state == "refused"
    assert refused.outcome == "Manifestly unfounded: repeated request"
    assert refused.closed_by == boss.account_id
    for change in (
        lambda: service.start_request(db_session, boss, request.id),
        lambda: service.extend_request(db_session, boss, request.id, "x", today=request.received_on),
        lambda: service.refuse_request(db_session, boss, request.id, "again"),
        lambda: service.complete_request(db_session, boss, protector, request.id),
    ):
        with pytest.raises(RequestConflict) as closed:
            change()
        assert closed.value.code == "request_closed"
    assert _actions(db_session, request.subject_id) == [
        "consent.dsr_received",
        "consent.dsr_started",
        "consent.dsr_refused",
    ]


def test_a_refusal_needs_a_reason(db_session, protector, family):
    boss = dpo(db_session)
    request = _create(db_session, boss, protector, family.student.subject_id)
    with pytest.raises(InvalidRequest):
        service.refuse_request(db_session, boss, request.id, "  ")
    assert service.get_request(db_session, boss, request.id).state == "open"


# --- queue and scope ------------------------------------------------------------------------------


def test_the_queue_puts_overdue_requests_first_oldest_due_first_then_the_rest_by_due_date(
    db_session, protector, family, other_family
):
    boss = dpo(db_session)
    student = family.student.subject_id

    def made(received, **kwargs):
        return _create(db_session, boss, protector, student, received_on=received, **kwargs)

    soon = made(date(2027, 2, 20))  # due 20 March
    late_recent = made(date(2027, 2, 5))  # due 5 March: overdue
    late_oldest = made(date(2027, 1, 31))  # due 28 Feb: overdue
    later = made(date(2027, 3, 1))  # due 1 April
    extended = made(date(2027, 2, 1))  # due 1 March, extended to 1 May: not overdue
    service.extend_request(db_session, boss, extended.id, "complex", today=date(2027, 2, 20))
    done = made(date(2027, 1, 15))  # due 15 Feb but refused: not overdue
    service.refuse_request(db_session, boss, done.id, "identity not verified")

    queue = service.list_queue(db_session, boss, today=TODAY)
    assert [item.request.id for item in queue] == [
        late_oldest.id,
        late_recent.id,
        done.id,
        soon.id,
        later.id,
        extended.id,
    ]
    first = queue[0]
    assert first.overdue
    assert first.days_left == -10
    assert first.effective_due_on == date(2027, 2, 28)
    assert queue[-1].effective_due_on == date(2027, 5, 1)
    assert not queue[-1].overdue
    assert queue[2].days_left is None
    assert not queue[2].overdue
    overdue_only = service.list_queue(db_session, boss, overdue=True, today=TODAY)
    assert [item.request.id for item in overdue_only] == [late_oldest.id, late_recent.id]
    refused = service.list_queue(db_session, boss, state=RequestState.refused, today=TODAY)
    assert [item.request.id for item in refused] == [done.id]
    assert service.list_queue(db_session, boss, kind=RequestKind.erasure, today=TODAY) == []


def test_a_school_steward_sees_and_records_requests_of_their_school_only(
    db_session, protector, family, other_family
):
    boss = dpo(db_session)
    mine = _create(db_session, boss, protector, family.student.subject_id)
    theirs = _create(db_session, boss, protector, other_family.student.subject_id)
    guardian_request = _create(
        db_session, boss, protector, other_family.guardian.guardian_id, subject_kind="guardian"
    )
    school = steward(db_session, "BG", ("BG-SOF-001",))
    assert [item.request.id for item in service.list_queue(db_session, school, today=TODAY)] == [mine.id]
    assert service.get_request(db_session, school, mine.id).id == mine.id
    for hidden in (theirs.id, guardian_request.id):
        with pytest.raises(RequestNotFound):
            service.get_request(db_session, school, hidden)
    with pytest.raises(RequestNotFound):
        service.start_request(db_session, school, theirs.id)
    with pytest.raises(SubjectNotFound):
        _create(db_session, school, protector, other_family.student.subject_id)
    with pytest.raises(SubjectNotFound):
        _create(db_session, school, protector, other_family.guardian.guardian_id, subject_kind="guardian")
    own_guardian = _create(
        db_session, school, protector, family.guardian.guardian_id, subject_kind="guardian"
    )
    assert own_guardian.created_by == school.account_id

    country = steward(db_session, "BG")
    assert len(service.list_queue(db_session, country, today=TODAY)) == 4
    spain = steward(db_session, "ES")
    assert service.list_queue(db_session, spain, today=TODAY) == []
    with pytest.raises(SubjectNotFound):
        _create(db_session, spain, protector, family.student.subject_id)


# --- carrying out ---------------------------------------------------------------------------------


def _withdrawals(session, subject_id):
    return session.execute(select(Withdrawal).where(Withdrawal.subject_id == subject_id)).scalars().all()


def test_erasing_a_student_leaves_no_decryptable_identity_keeps_decisions_and_emits_a_withdrawal(
    db_session, protector, family
):
    boss = dpo(db_session)
    student = family.student
    earlier = _create(db_session, boss, protector, student.subject_id, note="Father phoned from work")
    request = _create(db_session, boss, protector, student.subject_id, kind="erasure", note="Asked at school")
    completed = service.complete_request(db_session, boss, protector, request.id, "done by the DPO")
    assert earlier.details == {}
    assert completed.details == {}
    assert completed.state == "completed"
    assert completed.outcome == "done by the DPO"
    db_session.refresh(student)
    assert student.erased_at is not None
    assert protector.decrypt(db_session, IdentityField.student_ref, student.ref_ciphertext) == ""
    assert student.ref_index.startswith("erased:")
    kept = db_session.execute(select(Decision).where(Decision.student_id == student.id)).scalars().all()
    assert len(kept) == 2
    (withdrawal,) = _withdrawals(db_session, student.subject_id)
    assert withdrawal.reason == "erasure"
    assert set(withdrawal.purposes) >= set(ALL_PURPOSES)
    db_session.commit()
    entry = db_session.execute(
        select(AuditEntry).where(
            AuditEntry.action == "consent.dsr_completed", AuditEntry.target_id == student.subject_id
        )
    ).scalar_one()
    assert entry.details["withdrawal_event"] == withdrawal.event_id
    assert "DPO" not in str(entry.details)


def test_erasing_a_guardian_empties_their_identity_and_unlinks_them_without_a_withdrawal(
    db_session, protector, family
):
    boss = dpo(db_session)
    guardian = family.guardian
    request = _create(
        db_session, boss, protector, guardian.guardian_id, kind="erasure", subject_kind="guardian"
    )
    service.complete_request(db_session, boss, protector, request.id)
    db_session.refresh(guardian)
    assert guardian.erased_at is not None
    assert protector.decrypt(db_session, IdentityField.guardian_name, guardian.name_ciphertext) == ""
    assert guardian.email_ciphertext is None
    assert guardian.email_index is None
    assert (
        db_session.execute(select(Guardianship).where(Guardianship.guardian_id == guardian.id)).first()
        is None
    )
    assert db_session.execute(select(Decision).where(Decision.guardian_id == guardian.id)).scalars().all()
    assert _withdrawals(db_session, guardian.guardian_id) == []
    assert _withdrawals(db_session, family.student.subject_id) == []


def test_erasing_a_teacher_empties_name_and_email(db_session, protector):
    boss = dpo(db_session)
    teacher = make_teacher(db_session, protector, name="Petar Georgiev")
    request = _create(
        db_session,
        boss,
        protector,
        teacher.subject_id,
        kind="erasure",
        subject_kind="teacher",
        requested_by="teacher",
    )
    service.complete_request(db_session, boss, protector, request.id)
    db_session.refresh(teacher)
    assert protector.decrypt(db_session, IdentityField.teacher_name, teacher.name_ciphertext) == ""
    assert protector.decrypt(db_session, IdentityField.teacher_email, teacher.email_ciphertext) == ""
    assert [w.reason for w in _withdrawals(db_session, teacher.subject_id)] == ["erasure"]


@pytest.mark.parametrize("kind", ["restriction", "objection"])
def test_restriction_and_objection_mark_the_subject_restricted_and_emit_a_withdrawal(
    db_session, protector, family, kind
):
    boss = dpo(db_session)
    student = family.student
    request = _create(db_session, boss, protector, student.subject_id, kind=kind, requested_by="student")
    service.complete_request(db_session, boss, protector, request.id)
    db_session.refresh(student)
    assert student.restricted_at is not None
    assert student.erased_at is None
    (withdrawal,) = _withdrawals(db_session, student.subject_id)
    assert withdrawal.reason == "restriction"
    assert "questionnaires" in withdrawal.purposes


def test_a_rectification_applies_the_corrections_and_keeps_no_values_afterwards(
    db_session, protector, family
):
    boss = dpo(db_session)
    guardian = family.guardian
    request = _create(
        db_session,
        boss,
        protector,
        guardian.guardian_id,
        kind="rectification",
        subject_kind="guardian",
        changes={"name": "Maria Petrova", "email": "maria.petrova@family.example.org", "language": "en"},
    )
    assert request.details["fields"] == ["email", "language", "name"]
    assert "Petrova" not in str(request.details)  # identity values are held encrypted until applied
    service.complete_request(db_session, boss, protector, request.id)
    db_session.refresh(guardian)
    assert (
        protector.decrypt(db_session, IdentityField.guardian_name, guardian.name_ciphertext)
        == "Maria Petrova"
    )
    assert guardian.email_index == protector.blind_index(
        db_session, IdentityField.guardian_email, "maria.petrova@family.example.org"
    )
    assert guardian.language == "en"
    assert request.details == {"note": "", "fields": ["email", "language", "name"]}


def test_a_student_rectification_changes_the_pupil_reference_and_class(db_session, protector, family):
    boss = dpo(db_session)
    student = family.student
    request = _create(
        db_session,
        boss,
        protector,
        student.subject_id,
        kind="rectification",
        changes={"student_ref": "P-NEW-7", "class_name": "7B", "birth_month": 3},
    )
    service.complete_request(db_session, boss, protector, request.id)
    db_session.refresh(student)
    assert protector.decrypt(db_session, IdentityField.student_ref, student.ref_ciphertext) == "P-NEW-7"
    assert (student.class_name, student.birth_month) == ("7B", 3)


def test_a_rectification_is_refused_when_invalid_or_colliding(db_session, protector, family):
    boss = dpo(db_session)
    for body, code in (
        ({}, "no_changes"),
        ({"changes": {"name": "A Name"}}, "field_not_rectifiable"),
        ({"changes": {"language": "xx"}}, "unknown_language"),
    ):
        with pytest.raises(InvalidRequest) as raised:
            _create(db_session, boss, protector, family.student.subject_id, kind="rectification", **body)
        assert raised.value.code == code
    with pytest.raises(InvalidRequest) as not_rectification:
        _create(db_session, boss, protector, family.student.subject_id, kind="erasure", changes={"stage": 3})
    assert not_rectification.value.code == "changes_not_expected"
    first = make_teacher(db_session, protector, email="one@school.example.org")
    second = make_teacher(db_session, protector, email="two@school.example.org")
    request = _create(
        db_session,
        boss,
        protector,
        second.subject_id,
        kind="rectification",
        subject_kind="teacher",
        requested_by="teacher",
        changes={"email": "One@School.example.org"},
    )
    with pytest.raises(Conflict) as taken:
        service.complete_request(db_session, boss, protector, request.id)
    assert taken.value.extra["reason"] == "email_taken"
    assert first.email_index != second.email_index


# --- access export --------------------------------------------------------------------------------


def test_the_access_export_holds_the_subjects_identity_decisions_and_ledger_and_nobody_elses(
    db_session, protector, family, other_family
):
    boss = dpo(db_session)
    student = family.student
    request = _create(db_session, boss, protector, student.subject_id)
    _create(db_session, boss, protector, other_family.student.subject_id)
    service.complete_request(db_session, boss, protector, request.id)
    db_session.commit()
    document = service.access_export(db_session, boss, protector, request.id, ExportFormat.json)
    assert document["subject"] == {"kind": "student", "id": student.subject_id}
    assert document["language"] == "bg"
    identity = document["identity"]
    assert identity["pupil_reference"] == "P-FAMILY-1"
    assert identity["school"] == "BG-SOF-001"
    assert identity["birth_year"] == 2012
    assert [(g["name"], g["email"]) for g in identity["guardians"]] == [
        ("Maria Ivanova", "maria@family.example.org")
    ]
    assert sorted((d["purpose"], d["choice"]) for d in document["decisions"]) == [
        ("interviews", "declined"),
        ("questionnaires", "granted"),
    ]
    decision = document["decisions"][0]
    assert decision["guardian_id"] == family.guardian.guardian_id
    assert decision["form_version"] == 1
    assert len(decision["text_sha256"]) == 64
    assert [e["action"] for e in document["ledger"]] == ["consent.dsr_received", "consent.dsr_completed"]
    assert [r["id"] for r in document["requests"]] == [request.id]
    assert document["datasets"] == []
    assert document["datasets_note"]
    text = str(document)
    for foreign in (
        other_family.student.subject_id,
        "Other Parent",
        "other@family.example.org",
        "P-OTHER-9",
        "recontact",
    ):
        assert foreign not in text


def test_the_access_export_lists_what_registered_sources_report(db_session, protector, family):
    class Catalog:
        name = "test-catalog"

        def rows_for(self, session, subject_id):
            return [DatasetRows("wave1_students", 3)] if subject_id == family.student.subject_id else []

    boss = dpo(db_session)
    request = _create(db_session, boss, protector, family.student.subject_id)
    sources.register_source(Catalog())
    try:
        document = service.access_export(db_session, boss, protector, request.id, ExportFormat.json)
    finally:
        sources.unregister_source("test-catalog")
    assert document["datasets"] == [{"source": "test-catalog", "dataset": "wave1_students", "rows": 3}]


def test_the_csv_export_is_one_long_table_with_formulas_neutralised(db_session, protector):
    boss = dpo(db_session)
    student = make_student(db_session, protector, ref='=HYPERLINK("http://x")')
    make_guardian(db_session, protector, [student], name="+Evil -Name", email="@x@family.example.org")
    request = _create(db_session, boss, protector, student.subject_id)
    document = service.access_export(db_session, boss, protector, request.id, ExportFormat.csv)
    rows = list(csv.reader(io.StringIO(export.to_csv(document))))
    assert rows[0] == ["section", "item", "field", "value"]
    cells = {(section, field): value for section, _, field, value in rows[1:]}
    assert cells[("identity", "pupil_reference")] == '\'=HYPERLINK("http://x")'
    assert cells[("identity", "guardians.0.name")] == "'+Evil -Name"
    assert cells[("identity", "guardians.0.email")] == "'@x@family.example.org"
    assert cells[("subject", "id")] == student.subject_id
    assert cells[("datasets_note", "")]


def test_only_an_access_request_has_an_export(db_session, protector, family):
    boss = dpo(db_session)
    request = _create(db_session, boss, protector, family.student.subject_id, kind="erasure")
    with pytest.raises(RequestConflict) as raised:
        service.access_export(db_session, boss, protector, request.id, ExportFormat.json)
    assert raised.value.code == "not_access"


def test_a_correction_the_rosters_refuse_changes_nothing_and_leaves_the_request_open(
    db_session, protector, family
):
    boss = dpo(db_session)
    guardian = family.guardian
    request = _create(
        db_session,
        boss,
        protector,
        guardian.guardian_id,
        kind="rectification",
        subject_kind="guardian",
        changes={"name": "=HYPERLINK(1)"},
    )
    with db_session.begin_nested(), pytest.raises(ValidationFailed):
        service.complete_request(db_session, boss, protector, request.id)
    db_session.refresh(guardian)
    db_session.refresh(request)
    assert (
        protector.decrypt(db_session, IdentityField.guardian_name, guardian.name_ciphertext)
        == "Maria Ivanova"
    )
    assert request.state == "open"
    assert "changes" in request.details


def test_a_guardians_access_export_lists_their_children_and_the_decisions_they_made(
    db_session, protector, family, other_family
):
    boss = dpo(db_session)
    guardian = family.guardian
    request = _create(db_session, boss, protector, guardian.guardian_id, subject_kind="guardian")
    document = service.access_export(db_session, boss, protector, request.id, ExportFormat.json)
    assert document["identity"]["name"] == "Maria Ivanova"
    assert document["identity"]["email"] == "maria@family.example.org"
    assert document["identity"]["students"] == [
        {"subject_id": family.student.subject_id, "relation": "mother"}
    ]
    assert {d["subject_id"] for d in document["decisions"]} == {family.student.subject_id}
    assert len(document["decisions"]) == 2
    assert "Other Parent" not in str(document)


def test_a_teachers_access_export_holds_their_name_email_school_and_own_decisions(db_session, protector):
    boss = dpo(db_session)
    form = make_form(db_session)
    teacher = make_teacher(db_session, protector, name="Petar Georgiev", email="petar@school.example.org")
    decide(db_session, form, teacher=teacher, purpose="interviews")
    request = _create(
        db_session, boss, protector, teacher.subject_id, subject_kind="teacher", requested_by="teacher"
    )
    document = service.access_export(db_session, boss, protector, request.id, ExportFormat.json)
    identity = document["identity"]
    assert (identity["name"], identity["email"], identity["school"]) == (
        "Petar Georgiev",
        "petar@school.example.org",
        "BG-SOF-001",
    )
    assert [(d["purpose"], d["decided_by"]) for d in document["decisions"]] == [("interviews", "teacher")]


@pytest.mark.parametrize("kind", ["restriction", "erasure"])
def test_batch_statuses_stop_counting_a_restricted_or_erased_student_at_once(
    db_session, protector, family, kind
):
    load_rules(db_session)
    student = family.student
    status_cache.refresh(db_session, [student.id])
    boss = dpo(db_session)
    request = _create(db_session, boss, protector, student.subject_id, kind=kind)
    service.complete_request(db_session, boss, protector, request.id)
    cached = status.student_statuses(db_session, [student.subject_id]).rows[student.subject_id]
    derived = status.derive_student_statuses(db_session, [student.subject_id]).rows[student.subject_id]
    assert cached == derived
    assert Status.granted not in cached.values()
