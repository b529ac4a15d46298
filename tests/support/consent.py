"""Typed factories for consent tests: rules, forms, students, guardians and teachers.

They insert rows directly (with real encryption and blind indexes), so a test about decisions or
status does not depend on the CSV import or the form loader, which have their own tests.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from access.audit.actions import Role
from access.audit.service import Actor
from consent import service as rules
from consent.forms.models import Audience, ConsentForm, ConsentFormPurpose, ConsentFormText
from consent.identity import IdentityField, IdentityProtector, normalise_email
from consent.rosters.models import Delivery, Guardian, Guardianship, Student, Teacher

ALL_PURPOSES = (
    "questionnaires",
    "school_records",
    "interviews",
    "special_category",
    "recontact",
    "consortium_sharing",
)
SYSTEM = Actor("system", Role.system)
EARLY = datetime(2020, 1, 1, tzinfo=UTC)
"""Default publication time of factory forms: before any instant the tests look at."""


def load_rules(session: Session) -> None:
    """The shipped country rules (version 1, in force since 2018-05-25)."""
    rules.load_default_rules(session, SYSTEM)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_form(
    session: Session,
    country: str = "BG",
    language: str = "bg",
    *,
    version: int = 1,
    purposes: Iterable[str] = ALL_PURPOSES,
    required: Iterable[str] = ("questionnaires",),
    wording: str = "v1",
    reworded: Iterable[str] = (),
    valid_until: date | None = None,
    published_at: datetime = EARLY,
) -> ConsentForm:
    """A published form version with one text per audience.

    ``wording`` changes every purpose's text and hash; ``reworded`` purposes get a different wording.
    """
    required_set = set(required)
    changed = set(reworded)
    purpose_list = list(purposes)
    texts = {
        audience: f"<h1>{audience} {country} {language} {version}</h1>"
        + "".join(f"<h2>{p}</h2><p>{wording}{'*' if p in changed else ''}</p>" for p in purpose_list)
        for audience in Audience
    }
    text_hashes = [_sha(texts[a]) for a in sorted(Audience)]
    form = ConsentForm(
        country_code=country,
        language=language,
        version=version,
        sha256=_sha("".join(text_hashes) + uuid.uuid4().hex),
        valid_until=valid_until,
        published_by="system",
        source_name=f"factory-{country}-{language}-{version}",
        published_at=published_at,
    )
    session.add(form)
    session.flush()
    for audience, html in texts.items():
        session.add(
            ConsentFormText(
                form_id=form.id,
                audience=audience.value,
                title=f"{audience.value} form",
                markdown=html,
                rendered_html=html,
                sha256=_sha(html),
            )
        )
    for purpose in purpose_list:
        session.add(
            ConsentFormPurpose(
                form_id=form.id,
                purpose=purpose,
                required=purpose in required_set,
                section_sha256=_sha(f"{purpose}:{wording}{'*' if purpose in changed else ''}"),
            )
        )
    session.flush()
    session.refresh(form)
    return form


def make_student(
    session: Session,
    protector: IdentityProtector,
    *,
    country: str = "BG",
    birth_year: int = 2012,
    birth_month: int = 6,
    school: str = "BG-SOF-001",
    stage: int = 2,
    language: str = "bg",
    ref: str | None = None,
) -> Student:
    """A student with an encrypted pupil reference."""
    ref = ref or f"P-{uuid.uuid4().hex[:10]}"
    student = Student(
        ref_index=protector.blind_index(session, IdentityField.student_ref, f"{country}/{school}/{ref}"),
        ref_ciphertext=protector.encrypt(session, IdentityField.student_ref, ref),
        country_code=country,
        school_code=school,
        stage=stage,
        class_name="7A",
        language=language,
        birth_year=birth_year,
        birth_month=birth_month,
    )
    session.add(student)
    session.flush()
    return student


def make_guardian(
    session: Session,
    protector: IdentityProtector,
    students: Iterable[Student],
    *,
    name: str = "Maria Ivanova",
    email: str | None = None,
    language: str = "bg",
    relation: str = "mother",
) -> Guardian:
    """A guardian linked to ``students``, reachable by email."""
    students = list(students)
    email = email or f"{uuid.uuid4().hex[:10]}@family.example.org"
    guardian = Guardian(
        country_code=students[0].country_code if students else "BG",
        name_ciphertext=protector.encrypt(session, IdentityField.guardian_name, name),
        email_ciphertext=protector.encrypt(session, IdentityField.guardian_email, email),
        email_index=protector.blind_index(session, IdentityField.guardian_email, normalise_email(email)),
        delivery=Delivery.email.value,
        language=language,
    )
    session.add(guardian)
    session.flush()
    for student in students:
        session.add(Guardianship(student_id=student.id, guardian_id=guardian.id, relation=relation))
    session.flush()
    return guardian


def make_teacher(
    session: Session,
    protector: IdentityProtector,
    *,
    country: str = "BG",
    school: str = "BG-SOF-001",
    name: str = "Petar Georgiev",
    email: str | None = None,
    language: str = "bg",
) -> Teacher:
    """A teacher with encrypted name and email."""
    email = email or f"{uuid.uuid4().hex[:10]}@school.example.org"
    teacher = Teacher(
        email_index=protector.blind_index(session, IdentityField.teacher_email, normalise_email(email)),
        name_ciphertext=protector.encrypt(session, IdentityField.teacher_name, name),
        email_ciphertext=protector.encrypt(session, IdentityField.teacher_email, email),
        country_code=country,
        school_code=school,
        language=language,
    )
    session.add(teacher)
    session.flush()
    return teacher
