"""Tables of the rosters: students, guardians, teachers and the link between students and guardians.

No name, email or school pupil number is stored in clear: each is encrypted (``*_ciphertext``, see
``consent.identity``) and, where it is looked up, has a keyed-hash blind index (``*_index``). Students
carry only what the status rules and the research need: country, school, stage, class, language and
birth year and month.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


def _uuid() -> str:
    return str(uuid.uuid4())


class Delivery(StrEnum):
    """How a guardian receives invitations."""

    email = "email"
    school = "school"
    """A printed letter handed out by the school."""


class Relation(StrEnum):
    """A guardian's relation to the student."""

    mother = "mother"
    father = "father"
    parent = "parent"
    legal_guardian = "legal_guardian"
    other = "other"


class Student(Base):
    """A student on a roster. ``subject_id`` is the id used everywhere outside this table."""

    __tablename__ = "consent_student"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(36), unique=True, default=_uuid)
    ref_index: Mapped[str] = mapped_column(String(64), unique=True)
    """Blind index of (country, school, the school's pupil reference): finds a student on re-import."""
    ref_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    country_code: Mapped[str] = mapped_column(String(2), index=True)
    school_code: Mapped[str] = mapped_column(String(32), index=True)
    stage: Mapped[int] = mapped_column(SmallInteger)
    """School stage 1-4 of the project."""
    class_name: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(2))
    birth_year: Mapped[int] = mapped_column(SmallInteger)
    birth_month: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    restricted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Processing restricted (Art. 18): the subject counts as not consenting while this is set."""
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Identity erased (Art. 17): the ciphertexts are emptied and the subject never consents again."""


class Guardian(Base):
    """A parent or legal guardian. One guardian may be linked to several students (siblings)."""

    __tablename__ = "consent_guardian"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guardian_id: Mapped[str] = mapped_column(String(36), unique=True, default=_uuid)
    country_code: Mapped[str] = mapped_column(String(2), index=True)
    name_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    email_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    email_index: Mapped[str | None] = mapped_column(String(64), index=True)
    """Blind index of the normalised email address."""
    delivery: Mapped[str] = mapped_column(String(8))
    language: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Guardianship(Base):
    """A guardian listed for a student; the country rule says whether one or all must consent."""

    __tablename__ = "consent_guardianship"

    student_id: Mapped[int] = mapped_column(
        ForeignKey("consent_student.id", ondelete="CASCADE"), primary_key=True
    )
    guardian_id: Mapped[int] = mapped_column(
        ForeignKey("consent_guardian.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    relation: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Teacher(Base):
    """A teacher: an adult who consents for themselves."""

    __tablename__ = "consent_teacher"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(36), unique=True, default=_uuid)
    email_index: Mapped[str] = mapped_column(String(64), unique=True)
    """Blind index of the normalised email address: a teacher is found by it on re-import."""
    name_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    email_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    country_code: Mapped[str] = mapped_column(String(2), index=True)
    school_code: Mapped[str] = mapped_column(String(32), index=True)
    language: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    restricted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdentityKey(Base):
    """A data key for identities (encryption or blind index), wrapped by the key-management backend."""

    __tablename__ = "consent_identity_key"

    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    """``cipher`` (AES-256-GCM for names, emails, references) or ``index`` (HMAC-SHA256 blind index)."""
    wrapped: Mapped[str] = mapped_column(String(1000))
    """The wrapped key token; rotation of the wrapping key rewraps it without touching rows."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
