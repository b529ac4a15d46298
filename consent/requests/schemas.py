"""What the data-subject requests API accepts and answers."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from consent.requests.models import RequestKind, RequestState, SubjectKind

SubjectId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    ),
]
LanguageCode = Annotated[str, Field(min_length=2, max_length=2, description="An ISO 639-1 code.")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Requester(StrEnum):
    """Who exercised the right: the subject, or a guardian for a student."""

    guardian = "guardian"
    student = "student"
    teacher = "teacher"


class ExportFormat(StrEnum):
    """How an access export is delivered."""

    json = "json"
    csv = "csv"


class Rectification(BaseModel):
    """Corrected values (Art. 16). Which fields apply depends on the subject: a student's pupil
    reference, class, stage, language and birth year/month; a guardian's or teacher's name, email
    and language. Identity values are encrypted as soon as the request is stored and are removed
    from the request once applied."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="An email address."
    )
    language: LanguageCode | None = None
    student_ref: str | None = Field(default=None, min_length=1, max_length=64)
    class_name: str | None = Field(default=None, min_length=1, max_length=32)
    stage: int | None = Field(default=None, ge=1, le=4)
    birth_year: int | None = Field(default=None, ge=1940, le=2100)
    birth_month: int | None = Field(default=None, ge=1, le=12)


class RequestDetailsIn(BaseModel):
    """What is asked, beyond the kind of right."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(
        default="",
        max_length=2000,
        description="Free text for the DPO; kept in the request, never in the ledger.",
    )
    changes: Rectification | None = Field(
        default=None, description="Rectification only: the corrected values."
    )


class RequestCreate(BaseModel):
    """A data-subject request as received (by letter, email, at school or through the family pages)."""

    model_config = ConfigDict(extra="forbid")

    kind: RequestKind
    subject_kind: SubjectKind
    subject_id: SubjectId = Field(description="The student's or teacher's subject id, or the guardian id.")
    requested_by: Requester
    language: LanguageCode = Field(description="The requester's language: the answer is given in it.")
    received_on: date | None = Field(
        default=None,
        description="Day the request reached the project (default today, UTC); not in the future.",
    )
    details: RequestDetailsIn = Field(default_factory=RequestDetailsIn)


class ExtendBody(BaseModel):
    """An extension of the deadline (Art. 12(3)): once, by one or two months, with the reason."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(
        description="Why more time is needed; told to the subject, never put in the ledger."
    )
    months: int = Field(default=2, ge=1, le=2)


class RefuseBody(BaseModel):
    """A refusal (Art. 12(4) and (5)): the reason is told to the subject with their remedies."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


class CompleteBody(BaseModel):
    """Optional note on how the request was answered (kept in the request, not the ledger)."""

    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(default="", max_length=2000)


class RequestSummary(BaseModel):
    """One request in the DPO's queue."""

    id: str
    kind: RequestKind
    subject_kind: SubjectKind
    subject_id: str
    requested_by: Requester
    language: str
    state: RequestState
    received_on: date
    due_on: date = Field(description="The original due date: one calendar month after receipt.")
    extended_due_on: date | None
    effective_due_on: date = Field(description="The date that counts (the extended one when extended).")
    extended: bool
    overdue: bool
    days_left: int | None = Field(
        description="Days until the effective due date; negative when overdue; null once closed."
    )
    created_at: datetime
    closed_at: datetime | None


class RequestRead(RequestSummary):
    """A request with its texts: the extension reason, the outcome and what was asked."""

    extension_reason: str | None
    outcome: str | None
    details: dict[str, Any] = Field(
        description="The note, and for a rectification the names of the fields to correct (not their values)."
    )
    created_by: str
    closed_by: str | None
