"""The demo's bulk decisions: the same checks, refusals and effects as ``record_decision``.

Each case is sent once through the service and once through the bulk path, for two students in the
same situation, on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from sqlalchemy import func, select

from access.audit.actions import Role
from access.audit.models import AuditEntry
from access.audit.sealer import flush_all
from access.principal import Principal
from consent.decisions import ages
from consent.decisions.exceptions import DecisionConflict, InvalidDecision
from consent.decisions.models import Withdrawal
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.decisions.status import student_statuses
from consent.identity import IdentityProtector
from consent.rosters.importing import import_students
from consent.rosters.importing_guardians import import_guardians
from consent.rosters.models import Guardian, Guardianship, Student
from enclave.demo_decisions import Submission, country_book, record_in_bulk
from enclave.synthetic import generate
from tests.support.consent import load_rules, make_form
from tests.support.projects import make_principal


@pytest.fixture
def spain(db_session, components):
    """A Spanish school's roster and the current Spanish form; students by age, with their guardian."""
    load_rules(db_session)
    data = generate(students=600, schools=6, seed=11)
    school = data.students.filter(pl.col("country") == "ES")["school"][0]
    base = make_principal(db_session, Role.data_steward)
    steward = Principal(account_id=base.account_id, roles=base.roles, country="ES")
    protector = IdentityProtector(components.keys)
    import_students(
        db_session, steward, protector, data.students.filter(pl.col("school") == school).write_csv().encode()
    )
    import_guardians(
        db_session, steward, protector, data.guardians.filter(pl.col("school") == school).write_csv().encode()
    )
    form = make_form(db_session, "ES", "es")
    today = datetime.now(UTC).date()
    young: list[tuple[str, str]] = []
    older: list[tuple[str, str]] = []
    for student in db_session.execute(select(Student).order_by(Student.id)).scalars():
        guardian = db_session.execute(
            select(Guardian.guardian_id)
            .join(Guardianship, Guardianship.guardian_id == Guardian.id)
            .where(Guardianship.student_id == student.id)
        ).scalar()
        age = ages.age_on(student.birth_year, student.birth_month, today)
        (older if age >= 14 else young if age >= 7 else []).append((student.subject_id, guardian))
    texts = {t.audience: t.sha256 for t in form.texts}
    return {"steward": steward, "form": form, "texts": texts, "young": young, "older": older}


def _data(spain, subject: str, by: str, guardian: str | None, choice: str = "granted", **changes):
    values = {
        "subject_id": subject,
        "decided_by": by,
        "guardian_id": guardian if by == "guardian" else None,
        "form_id": spain["form"].id,
        "text_sha256": spain["texts"]["guardian" if by == "guardian" else "child"],
        "choices": {"questionnaires": choice},
        "channel": "web",
    }
    values.update(changes)
    return DecisionCreate.model_validate(values)


def _bulk(db_session, spain, submissions: list[DecisionCreate]) -> None:
    book = country_book(db_session, "ES", datetime.now(UTC))
    assert book is not None
    record_in_bulk(
        db_session, book, [Submission(spain["steward"].actor, d) for d in submissions], lambda _: None
    )


def _status(db_session, subject: str) -> str:
    table = student_statuses(db_session, [subject], purposes=["questionnaires"])
    return str(table.rows[subject]["questionnaires"])


def test_bulk_decisions_give_the_statuses_and_events_the_service_gives(db_session, spain):
    (young_a, guardian_a), (young_b, guardian_b) = spain["young"][:2]
    (old_a, _), (old_b, _) = spain["older"][:2]
    actor = spain["steward"].actor
    for data in (
        _data(spain, young_a, "guardian", guardian_a),
        _data(spain, young_a, "student", None),
        _data(spain, old_a, "student", None),
        _data(spain, old_a, "student", None, "withdrawn"),
    ):
        record_decision(db_session, actor, data)
    _bulk(
        db_session,
        spain,
        [
            _data(spain, young_b, "guardian", guardian_b),
            _data(spain, young_b, "student", None),
            _data(spain, old_b, "student", None),
            _data(spain, old_b, "student", None, "withdrawn"),
        ],
    )
    assert _status(db_session, young_a) == _status(db_session, young_b) == "granted"
    assert _status(db_session, old_a) == _status(db_session, old_b) == "withdrawn"
    withdrawn = set(db_session.execute(select(Withdrawal.subject_id)).scalars())
    assert withdrawn == {old_a, old_b}
    db_session.commit()
    flush_all()
    entries = db_session.execute(
        select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "consent.decision_recorded")
    ).scalar_one()
    assert entries == 8


@pytest.mark.parametrize(
    ("case", "error", "code"),
    [
        ("guardian_for_a_student_who_decides_alone", DecisionConflict, "student_decides_alone"),
        ("text_of_another_audience", InvalidDecision, "text_mismatch"),
        ("guardian_of_another_student", InvalidDecision, "guardian_not_listed"),
        ("required_purpose_missing", InvalidDecision, "required_purpose_missing"),
        ("purpose_not_on_the_form", InvalidDecision, "purpose_not_on_form"),
    ],
)
def test_bulk_decisions_refuse_what_the_service_refuses(db_session, spain, case, error, code):
    (young, guardian), (other_young, other_guardian) = spain["young"][:2]
    (older, _) = spain["older"][0]
    data = {
        "guardian_for_a_student_who_decides_alone": _data(spain, older, "guardian", guardian),
        "text_of_another_audience": _data(
            spain, young, "guardian", guardian, text_sha256=spain["texts"]["child"]
        ),
        "guardian_of_another_student": _data(spain, young, "guardian", other_guardian),
        "required_purpose_missing": _data(
            spain, young, "guardian", guardian, choices={"recontact": "granted"}
        ),
        "purpose_not_on_the_form": _data(
            spain, young, "guardian", guardian, choices={"questionnaires": "granted", "astrology": "granted"}
        ),
    }[case]
    assert other_young != young
    with pytest.raises(error) as by_service:
        record_decision(db_session, spain["steward"].actor, data)
    with pytest.raises(error) as in_bulk:
        _bulk(db_session, spain, [data])
    assert by_service.value.code == in_bulk.value.code == code
