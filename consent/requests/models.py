"""Table of data-subject requests (Art. 12, 15-21)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Date, DateTime, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class RequestKind(StrEnum):
    """The right exercised."""

    access = "access"
    rectification = "rectification"
    erasure = "erasure"
    restriction = "restriction"
    objection = "objection"


class RequestState(StrEnum):
    """Where a request stands; ``completed`` and ``refused`` are final."""

    open = "open"
    in_progress = "in_progress"
    completed = "completed"
    refused = "refused"


class SubjectKind(StrEnum):
    """Whose data the request is about."""

    student = "student"
    guardian = "guardian"
    teacher = "teacher"


class DataSubjectRequest(Base):
    """A request with its legal deadline: one calendar month, extendable once by two months."""

    __tablename__ = "consent_dsr"
    __table_args__ = (
        CheckConstraint(
            "(extended_due_on IS NULL) = (extension_reason IS NULL)", name="extension_has_reason"
        ),
        Index("ix_consent_dsr_queue", "state", "due_on"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    kind: Mapped[str] = mapped_column(String(16))
    subject_kind: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    """The student's or teacher's ``subject_id``, or the guardian's ``guardian_id``."""
    requested_by: Mapped[str] = mapped_column(String(8))
    """``guardian``, ``student`` or ``teacher``: who exercised the right."""
    language: Mapped[str] = mapped_column(String(2))
    """The requester's language: the answer is given in it (Art. 12)."""
    received_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    extended_due_on: Mapped[date | None] = mapped_column(Date)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(12), default=RequestState.open.value)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """What is asked (for rectification: the fields and new values, encrypted at rest elsewhere)."""
    outcome: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str | None] = mapped_column(String(36))
