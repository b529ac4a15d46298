"""Tables of decisions, withdrawals, re-consent marks, rule impacts and pseudonyms.

``consent_decision`` is append-only: on PostgreSQL a trigger refuses UPDATE and DELETE, so the
history from which every status is derived cannot be rewritten.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from infra.db import Base


def _now() -> datetime:
    return datetime.now(UTC)


class Choice(StrEnum):
    """What a person decided for one purpose."""

    granted = "granted"
    declined = "declined"
    withdrawn = "withdrawn"


class DecidedBy(StrEnum):
    """Who decided."""

    guardian = "guardian"
    student = "student"
    teacher = "teacher"


class Capacity(StrEnum):
    """In what capacity a student decided, fixed by the rule and their age on the day."""

    consent = "consent"
    """Their own consent (alone or jointly with the guardians), or an adult's (teacher, guardian)."""
    assent = "assent"
    """A child's assent, asked in addition to the guardians' consent."""


class Channel(StrEnum):
    """How the decision reached the project."""

    web = "web"
    paper = "paper"
    """A signed paper form entered by a data steward."""
    school_session = "school_session"
    api = "api"


class Status(StrEnum):
    """Effective consent status of a subject for a purpose at an instant."""

    granted = "granted"
    declined = "declined"
    withdrawn = "withdrawn"
    pending = "pending"
    expired = "expired"
    reconsent_required = "reconsent_required"


BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class Decision(Base):
    """One person's decision on one purpose; the purposes of one submission share ``event_id``."""

    __tablename__ = "consent_decision"
    __table_args__ = (
        CheckConstraint("(student_id IS NULL) <> (teacher_id IS NULL)", name="one_subject"),
        CheckConstraint(
            "(decided_by = 'guardian') = (guardian_id IS NOT NULL)", name="guardian_named_when_deciding"
        ),
        UniqueConstraint("idempotency_key", "purpose", name="uq_consent_decision_idempotency"),
        Index("ix_consent_decision_student_latest", "student_id", "purpose", "recorded_at", "id"),
        Index("ix_consent_decision_teacher_latest", "teacher_id", "purpose", "recorded_at", "id"),
    )

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), index=True)
    student_id: Mapped[int | None] = mapped_column(ForeignKey("consent_student.id", ondelete="RESTRICT"))
    teacher_id: Mapped[int | None] = mapped_column(ForeignKey("consent_teacher.id", ondelete="RESTRICT"))
    decided_by: Mapped[str] = mapped_column(String(8))
    guardian_id: Mapped[int | None] = mapped_column(ForeignKey("consent_guardian.id", ondelete="RESTRICT"))
    capacity: Mapped[str] = mapped_column(String(8))
    form_id: Mapped[int] = mapped_column(ForeignKey("consent_form.id", ondelete="RESTRICT"))
    text_sha256: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the exact rendered text the person was shown."""
    purpose: Mapped[str] = mapped_column(ForeignKey("consent_purpose.code"))
    choice: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    """When the decision took effect. Decisions on one subject are recorded one at a time (the
    subject's row is locked), so (recorded_at, id) is the order in which they happened."""
    recorded_by: Mapped[str] = mapped_column(String(36))
    """The staff account that entered it, or ``family-link`` for the family pages."""
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """From the form version's ``valid_until``: a grant stops counting then (``expired``)."""
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    """The client's key for the submission: the same submission twice is recorded once."""


class Withdrawal(Base):
    """A withdrawal to act on downstream: the enclave erases the subject's rows for these purposes.

    Written in the same transaction as the withdrawing decision, then handed to every registered
    consumer by the ``consent.withdrawal_notify`` task (see ``consent.decisions.withdrawals``).
    """

    __tablename__ = "consent_withdrawal"

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    subject_kind: Mapped[str] = mapped_column(String(8))
    """``student`` or ``teacher``."""
    purposes: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(16))
    """``withdrawn`` (a decision), ``erasure`` or ``restriction`` (a data-subject request)."""
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    handled: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Consumer name -> ISO time it confirmed; a consumer that has confirmed is not called again."""


class ReconsentReason(StrEnum):
    """Why a subject must be asked again."""

    self_consent_age = "self_consent_age"
    rule_change = "rule_change"
    form_change = "form_change"


class ReconsentMark(Base):
    """A student to invite again, found by the daily job or by a rule or form change."""

    __tablename__ = "consent_reconsent_mark"
    __table_args__ = (UniqueConstraint("student_id", "reason", "due_on", name="uq_consent_reconsent_mark"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("consent_student.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(20))
    due_on: Mapped[date] = mapped_column(Date)
    """The day the current consent stops counting without a new decision."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    invited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set by the invitation service when the invitation has gone out."""
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Set when the subject has decided again."""


class RuleImpact(Base):
    """A subject whose status changed because a country rule version was recorded, for the DPO."""

    __tablename__ = "consent_rule_impact"
    __table_args__ = (UniqueConstraint("rule_id", "student_id", name="uq_consent_rule_impact"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(Integer, index=True)
    """The rule version (no foreign key: a withdrawn future version leaves its impacts on record)."""
    country_code: Mapped[str] = mapped_column(String(2))
    student_id: Mapped[int] = mapped_column(ForeignKey("consent_student.id", ondelete="CASCADE"))
    effective_from: Mapped[date] = mapped_column(Date)
    changes: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    """Purpose -> [status before, status after] on ``effective_from``."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Pseudonym(Base):
    """A subject's keyed pseudonym in one project domain (HMAC; the key stays in key management)."""

    __tablename__ = "consent_pseudonym"
    __table_args__ = (UniqueConstraint("domain", "subject_id", name="uq_consent_pseudonym_subject"),)

    domain: Mapped[str] = mapped_column(String(64), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(36))
    """Looked up with the domain, through the unique constraint's index."""


class StatusCache(Base):
    """A student's statuses computed at ``valid_from`` and unchanged until ``valid_until``.

    Only a shortcut for the status engine: a row answers for instants in ``[valid_from,
    valid_until)`` when its ``purposes`` list is the current one; otherwise the engine derives the
    statuses from the decisions. Every write that can change a status (a decision, a roster change, a
    new rule or form version, an erasure or restriction) refreshes or deletes the student's row.
    """

    __tablename__ = "consent_status_cache"

    student_id: Mapped[int] = mapped_column(
        ForeignKey("consent_student.id", ondelete="CASCADE"), primary_key=True
    )
    codes: Mapped[str] = mapped_column(String(32))
    """One digit per purpose, in ``purposes`` order (0 pending ... 5 withdrawn, see ``status.CODES``)."""
    purposes: Mapped[str] = mapped_column(String(400))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
