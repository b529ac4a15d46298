"""Pydantic schemas of decisions, statuses, re-consent marks, rule impacts and withdrawals."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from consent.decisions.models import Channel, Choice, DecidedBy, Status

SubjectId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
"""A subject's id (UUID, lower-case)."""
PurposeCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,31}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
MAX_BATCH = 50_000


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("give a time zone (e.g. 2026-11-23T10:00:00Z)")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


class DecisionCreate(BaseModel):
    """One person's decision on one or more purposes of one form version."""

    model_config = ConfigDict(extra="forbid")

    subject_id: SubjectId = Field(description="The student or teacher the decision is about.")
    decided_by: DecidedBy
    guardian_id: SubjectId | None = Field(
        default=None, description="The deciding guardian; required exactly when decided_by is guardian."
    )
    form_id: int = Field(ge=1, le=2**31 - 1, description="The form version shown.")
    text_sha256: Sha256 = Field(description="SHA-256 of the exact rendered text shown (from the form).")
    choices: dict[PurposeCode, Choice] = Field(min_length=1, max_length=32)
    channel: Channel
    idempotency_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{8,100}$")] | None = Field(
        default=None, description="The same key again returns the first recording instead of a copy."
    )

    @model_validator(mode="after")
    def _guardian_named(self) -> DecisionCreate:
        if (self.decided_by is DecidedBy.guardian) != (self.guardian_id is not None):
            raise ValueError("guardian_id is required when decided_by is guardian, and only then")
        return self


class DecisionRead(BaseModel):
    """A recorded decision event."""

    event_id: str
    subject_id: str
    subject_kind: str
    decided_by: DecidedBy
    guardian_id: str | None
    capacity: str
    form_id: int
    text_sha256: str
    choices: dict[str, Choice]
    channel: Channel
    recorded_at: datetime
    replayed: bool = Field(description="True when this is the first recording of a repeated submission.")


class StatusBatchRequest(BaseModel):
    """Subjects to answer for, by id or by pseudonym in a project domain."""

    model_config = ConfigDict(extra="forbid")

    subject_ids: list[SubjectId] | None = Field(default=None, max_length=MAX_BATCH)
    domain: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")] | None = None
    pseudonyms: list[Sha256] | None = Field(default=None, max_length=MAX_BATCH)
    at: AwareDatetime | None = Field(default=None, description="The instant (default: now).")
    purposes: list[PurposeCode] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> StatusBatchRequest:
        by_id = self.subject_ids is not None
        by_pseudonym = self.pseudonyms is not None or self.domain is not None
        if by_id == by_pseudonym:
            raise ValueError("give either subject_ids, or domain with pseudonyms")
        if by_pseudonym and (self.domain is None or self.pseudonyms is None):
            raise ValueError("pseudonyms need their domain, and a domain needs pseudonyms")
        return self


class StatusBatch(BaseModel):
    """Statuses at one instant; subjects unknown (or outside the caller's scope) are listed apart."""

    at: datetime
    purposes: list[str]
    statuses: dict[str, dict[str, Status]]
    unknown: list[str]


class SubjectStatus(BaseModel):
    """One subject's statuses with what they were derived from."""

    subject_id: str
    subject_kind: str
    at: datetime
    statuses: dict[str, Status]
    country: str
    age: int | None = Field(description="Age in completed years on that day (students).")
    regime: str | None = Field(description="guardian, joint or self (students).")
    rule_id: int | None = Field(description="The country rule version in force that day (students).")


class ReconsentMarkRead(BaseModel):
    """A student to invite again."""

    subject_id: str
    reason: str
    due_on: date
    created_at: datetime
    invited_at: datetime | None
    resolved_at: datetime | None


class RuleImpactRead(BaseModel):
    """A student whose status changes when a rule version takes effect."""

    rule_id: int
    country: str
    subject_id: str
    effective_from: date
    changes: dict[str, list[str]]


class WithdrawalRead(BaseModel):
    """A withdrawal event and which consumers have acted on it."""

    id: int
    event_id: str
    subject_id: str
    subject_kind: str
    purposes: list[str]
    reason: str
    effective_at: datetime
    handled: dict[str, str]
