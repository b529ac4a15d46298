"""What the rosters API accepts and answers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from consent.rosters.csv_format import RosterKind
from consent.rosters.models import Delivery, Relation


class ImportReport(BaseModel):
    """What an import did (or, for a dry run, would do). Rows for someone already on the roster
    update them: ``updated`` when a value changed, ``unchanged`` otherwise."""

    kind: RosterKind
    rows: int = Field(description="Data rows read.")
    created: int
    updated: int
    unchanged: int
    links_created: int | None = Field(default=None, description="Guardians only: new guardian-student links.")
    file_sha256: str
    dry_run: bool


class StudentRead(BaseModel):
    """A student as stewards see them: no pupil reference unless revealed (an audited read)."""

    model_config = ConfigDict(from_attributes=True)

    subject_id: str
    country_code: str
    school_code: str
    stage: int
    class_name: str
    language: str
    birth_year: int
    birth_month: int
    restricted: bool = False
    erased: bool = False
    student_ref: str | None = Field(default=None, description="Only with ?reveal=true.")


class StudentPage(BaseModel):
    """A page of students in the caller's scope."""

    items: list[StudentRead]
    total: int
    limit: int
    offset: int


class GuardianRead(BaseModel):
    """A guardian of a student, decrypted (an audited read)."""

    guardian_id: str
    name: str
    email: str | None
    delivery: Delivery
    language: str
    relation: Relation | None = None


class StudentDetail(StudentRead):
    """A student with their guardians."""

    guardians: list[GuardianRead]


class TeacherRead(BaseModel):
    """A teacher; name and email only with ?reveal=true (an audited read)."""

    subject_id: str
    country_code: str
    school_code: str
    language: str
    restricted: bool = False
    erased: bool = False
    name: str | None = None
    email: str | None = None


class TeacherPage(BaseModel):
    """A page of teachers in the caller's scope."""

    items: list[TeacherRead]
    total: int
    limit: int
    offset: int


class StudentRectify(BaseModel):
    """Corrections to a student; only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    student_ref: str | None = Field(default=None, min_length=1, max_length=64)
    stage: int | None = Field(default=None, ge=1, le=4)
    class_name: str | None = Field(default=None, min_length=1, max_length=32)
    language: str | None = Field(default=None, min_length=2, max_length=2)
    birth_year: int | None = Field(default=None, ge=1900, le=2999)
    birth_month: int | None = Field(default=None, ge=1, le=12)


class GuardianRectify(BaseModel):
    """Corrections to a guardian; only the fields given change (``email: null`` removes it)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    delivery: Delivery | None = None
    language: str | None = Field(default=None, min_length=2, max_length=2)


class TeacherRectify(BaseModel):
    """Corrections to a teacher; only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, min_length=3, max_length=254)
    school_code: str | None = Field(default=None, min_length=2, max_length=32)
    language: str | None = Field(default=None, min_length=2, max_length=2)


class Rectified(BaseModel):
    """The result of a rectification: the names of the fields that changed."""

    id: str
    changed: list[str]
