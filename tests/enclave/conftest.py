"""Fixtures of the enclave tests: a school's roster with consents, a declared dataset, an encrypted store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy import select

from access.audit.actions import Role
from access.principal import Principal
from consent.decisions.schemas import DecisionCreate
from consent.decisions.service import record_decision
from consent.identity import IdentityProtector
from consent.rosters.importing import import_students
from consent.rosters.importing_guardians import import_guardians
from consent.rosters.models import Guardian, Guardianship, Student
from enclave.datasets import service as catalog
from enclave.datasets.schemas import DatasetCreate
from enclave.objects.store import EncryptedStore
from enclave.synthetic import generate
from tests.support.consent import load_rules, make_form
from tests.support.projects import make_principal

DATASET = "questionnaire-wave1"


@pytest.fixture
def world(db_session, components):
    """An ES school's roster from the synthetic data; guardians of every other student granted."""
    load_rules(db_session)
    protector = IdentityProtector(components.keys)
    data = generate(students=400, schools=6, seed=5)
    school = data.students.filter(pl.col("country") == "ES")["school"][0]
    students = data.students.filter(pl.col("school") == school)
    base = make_principal(db_session, Role.data_steward)
    steward = Principal(account_id=base.account_id, roles=base.roles, country="ES", schools=frozenset())
    import_students(db_session, steward, protector, students.write_csv().encode())
    import_guardians(
        db_session, steward, protector, data.guardians.filter(pl.col("school") == school).write_csv().encode()
    )
    form = make_form(db_session, "ES", "es")
    guardian_text = next(t.sha256 for t in form.texts if t.audience == "guardian")
    child_text = next(t.sha256 for t in form.texts if t.audience == "child")
    granted: list[str] = []
    rows = db_session.execute(
        select(Student).where(Student.school_code == school).order_by(Student.id)
    ).scalars()
    for number, student in enumerate(rows):
        if number % 2:
            continue
        guardian = (
            db_session.execute(
                select(Guardian)
                .join(Guardianship, Guardianship.guardian_id == Guardian.id)
                .where(Guardianship.student_id == student.id)
            )
            .scalars()
            .first()
        )
        # Spain: the guardians decide below 14 (with the child's assent from 7); from 14 the student alone.
        age = (
            datetime.now(UTC).year
            - student.birth_year
            - (1 if datetime.now(UTC).month <= student.birth_month else 0)
        )
        deciders = [("student", None, child_text)] if age >= 14 else [("guardian", guardian, guardian_text)]
        if 7 <= age < 14:
            deciders.append(("student", None, child_text))
        for by, who, text in deciders:
            record_decision(
                db_session,
                steward.actor,
                DecisionCreate(
                    subject_id=student.subject_id,
                    decided_by=by,
                    guardian_id=who.guardian_id if who else None,
                    form_id=form.id,
                    text_sha256=text,
                    choices={"questionnaires": "granted"},
                    channel="paper",
                ),
            )
        granted.append(student.subject_id)
    catalog.create_dataset(
        db_session,
        steward,
        DatasetCreate.model_validate(
            {
                "id": DATASET,
                "title": "Questionnaire, first wave",
                "purpose": "questionnaires",
                "domain": "letscare-main",
                "retention_until": (datetime.now(UTC) + timedelta(days=365)).date().isoformat(),
                "schema": {
                    "subject_id_column": "student_ref",
                    "school_column": "school",
                    "drop_columns": ["country"],
                    "variables": [
                        {"name": "gender", "type": "categorical", "categories": ["female", "male", "other"]},
                        {"name": "stage", "type": "integer", "min": 1, "max": 4},
                        {"name": "engagement", "type": "numeric", "min": 1, "max": 5},
                        {"name": "special_needs", "type": "boolean", "special_category": True},
                    ],
                },
            }
        ),
    )
    upload = data.questionnaire.filter(pl.col("school") == school).select(
        "student_ref", "school", "country", "gender", "stage", "engagement", "special_needs"
    )
    store = EncryptedStore(None, components.keys, components.storage)
    return {
        "steward": steward,
        "protector": protector,
        "store": store,
        "upload": upload,
        "granted": granted,
        "components": components,
    }
